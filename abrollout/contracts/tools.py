"""The ten tools: their typed arguments, the proposal that asks for one, and the receipt it returns.

A tool call is only ever made from a verified `ToolProposal`; its result is a `ToolReceipt` whose `ref`
is the id the outside system returned (exp_id, run_id, change id, dashboard id, ticket id).
"""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum
from typing import Annotated, Any, ClassVar, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, SerializeAsAny, StringConstraints, field_serializer, model_validator

from abrollout.contracts.constraints import Constraint
from abrollout.contracts.records import DashboardData
from abrollout.contracts.spec import CONTROL_ARM, ArmName, Effect, Guardrail, MetricName, Simulation
from abrollout.contracts.verdicts import AnalysisPlan, CheckVerdict, MetricStats

Text = Annotated[str, StringConstraints(max_length=4000)]
Ref = Annotated[str, StringConstraints(min_length=1, max_length=200)]


class ToolName(StrEnum):
    RegisterExperiment = "RegisterExperiment"
    CreateFlag = "CreateFlag"
    StartRun = "StartRun"
    AllocateTraffic = "AllocateTraffic"
    CheckMetrics = "CheckMetrics"
    StopRun = "StopRun"
    PromoteVariant = "PromoteVariant"
    RollbackVariant = "RollbackVariant"
    SnapshotDashboard = "SnapshotDashboard"
    OpenTicket = "OpenTicket"


class ToolArgs(BaseModel):
    """Base for tool arguments: strict shape, immutable. `${Step.ref}` strings are filled in at execution."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    tool: ClassVar[ToolName]


class RegisterExperimentArgs(ToolArgs):
    """Everything pre-registered (prereg.1), including the analysis plan the statistics will follow and, for
    the embedded simulator only, the simulated traffic."""

    tool = ToolName.RegisterExperiment

    exp_key: str
    domain: str
    primary_metric: MetricName
    goal: Literal["increase", "decrease"]
    metrics: list[MetricName]
    guardrails: list[Guardrail]
    hypothesis: Text
    mde: Effect
    arms: list[ArmName]
    max_duration_days: int
    max_concurrent: int
    guardrail_check_every_seconds: int
    analysis_every_seconds: int
    hour_seconds: float = Field(description="Real seconds per experiment hour; < 3600 only on embedded adapters.")
    planned_looks: int
    decision_rule: Text
    analysis: AnalysisPlan
    policy_id: str
    spec_hash: str
    simulation: Simulation | None = None


class CreateFlagArgs(ToolArgs):
    tool = ToolName.CreateFlag

    flag_key: str
    group_id: str
    variants: list[ArmName]
    stickiness: Literal["userId"] = "userId"
    description: Text = ""


class StartRunArgs(ToolArgs):
    tool = ToolName.StartRun

    exp_id: Ref
    run_name: str
    population: str


class AllocateTrafficArgs(ToolArgs):
    tool = ToolName.AllocateTraffic

    flag_key: str
    group_id: str
    exp_id: Ref
    split: dict[ArmName, float]
    exposure_rules: list[str]
    constraints: list[Constraint]
    rollout_percent: float = Field(gt=0, le=100)
    ramp_step: int = Field(ge=0)


class CheckMetricsArgs(ToolArgs):
    tool = ToolName.CheckMetrics

    exp_id: Ref
    run_id: Ref
    kind: Literal["guardrail", "analysis", "status"]
    check_index: int = Field(ge=0, description="Index of this check in its series (hourly or planned look).")
    at_seconds: int = Field(ge=0, description="Experiment time of the check, seconds after the run started.")
    primary_metric: MetricName
    guardrails: list[Guardrail]
    lookback_hours: int = Field(gt=0)
    prior_look_sizes: list[dict[str, int]] = Field(
        default_factory=list, description="Primary n per arm at analysis looks 1..k-1 (group-sequential info).")


class StopRunArgs(ToolArgs):
    tool = ToolName.StopRun

    run_id: Ref
    reason: Text


class PromoteVariantArgs(ToolArgs):
    tool = ToolName.PromoteVariant

    flag_key: str
    variant: ArmName
    reason: Text


class RollbackVariantArgs(ToolArgs):
    tool = ToolName.RollbackVariant

    flag_key: str
    to_variant: ArmName = CONTROL_ARM
    reason: Text


class PayloadDigest(BaseModel):
    """What the run state keeps of a dashboard's data: its digest (the data itself is in the history)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    digest: str


class SnapshotDashboardArgs(ToolArgs):
    tool = ToolName.SnapshotDashboard

    run_id: Ref
    exp_key: str
    label: str
    data: DashboardData | PayloadDigest


class OpenTicketArgs(ToolArgs):
    tool = ToolName.OpenTicket

    exp_key: str
    title: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    description: Text
    severity: Literal["low", "medium", "high", "critical"]
    owners: list[str]


ArgsT = TypeVar("ArgsT", bound=ToolArgs)


class Proposal(BaseModel):
    """A planned tool call. `preconditions` are machine-checked before it runs (abrollout.plan.verify):
    `done:<step>` (that step returned an ok receipt), `not_done:<step>`, `state:<decision state>`, `no_breach`.
    One subclass per tool pins `name` to the type of `args`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: ToolName = Field(description="One of the ten tools.")
    step: str
    args: ToolArgs
    preconditions: list[str]
    idempotency_key: str


class RegisterExperimentProposal(Proposal):
    name: Literal[ToolName.RegisterExperiment] = ToolName.RegisterExperiment
    args: RegisterExperimentArgs


class CreateFlagProposal(Proposal):
    name: Literal[ToolName.CreateFlag] = ToolName.CreateFlag
    args: CreateFlagArgs


class StartRunProposal(Proposal):
    name: Literal[ToolName.StartRun] = ToolName.StartRun
    args: StartRunArgs


class AllocateTrafficProposal(Proposal):
    name: Literal[ToolName.AllocateTraffic] = ToolName.AllocateTraffic
    args: AllocateTrafficArgs


class CheckMetricsProposal(Proposal):
    name: Literal[ToolName.CheckMetrics] = ToolName.CheckMetrics
    args: CheckMetricsArgs


class StopRunProposal(Proposal):
    name: Literal[ToolName.StopRun] = ToolName.StopRun
    args: StopRunArgs


class PromoteVariantProposal(Proposal):
    name: Literal[ToolName.PromoteVariant] = ToolName.PromoteVariant
    args: PromoteVariantArgs


class RollbackVariantProposal(Proposal):
    name: Literal[ToolName.RollbackVariant] = ToolName.RollbackVariant
    args: RollbackVariantArgs


class SnapshotDashboardProposal(Proposal):
    name: Literal[ToolName.SnapshotDashboard] = ToolName.SnapshotDashboard
    args: SnapshotDashboardArgs


class OpenTicketProposal(Proposal):
    name: Literal[ToolName.OpenTicket] = ToolName.OpenTicket
    args: OpenTicketArgs


ToolProposal = Annotated[
    RegisterExperimentProposal | CreateFlagProposal | StartRunProposal | AllocateTrafficProposal
    | CheckMetricsProposal | StopRunProposal | PromoteVariantProposal | RollbackVariantProposal
    | SnapshotDashboardProposal | OpenTicketProposal,
    Field(discriminator="name")]
"""Any of the ten proposals, told apart by the tool's name; its JSON is {name, step, args, preconditions, key}."""

PROPOSAL_OF: dict[ToolName, Callable[..., ToolProposal]] = {
    ToolName.RegisterExperiment: RegisterExperimentProposal,
    ToolName.CreateFlag: CreateFlagProposal,
    ToolName.StartRun: StartRunProposal,
    ToolName.AllocateTraffic: AllocateTrafficProposal,
    ToolName.CheckMetrics: CheckMetricsProposal,
    ToolName.StopRun: StopRunProposal,
    ToolName.PromoteVariant: PromoteVariantProposal,
    ToolName.RollbackVariant: RollbackVariantProposal,
    ToolName.SnapshotDashboard: SnapshotDashboardProposal,
    ToolName.OpenTicket: OpenTicketProposal,
}


class MetricsReading(BaseModel):
    """The per-arm statistics a check read, kept in its receipt so every decision can be re-derived."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    assignments: dict[str, int]
    metrics: dict[str, dict[str, MetricStats]]
    observed: dict[str, dict[str, float]] = Field(default_factory=dict)
    freshest_event_seconds: float | None = None

    @field_serializer("metrics")
    def _without_absent_sums(self, metrics: dict[str, dict[str, MetricStats]]) -> dict[str, dict[str, Any]]:
        """Most metrics have no covariate or denominator: their empty sums would double the receipt."""
        return {name: {arm: stats.model_dump(mode="json", exclude_none=True) for arm, stats in arms.items()}
                for name, arms in metrics.items()}


class CheckResult(BaseModel):
    """What CheckMetrics found: the verdict the decision rule reads, the reading it came from, and the queries."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    verdict: CheckVerdict
    snapshot: MetricsReading
    queries: list[str] = Field(default_factory=list)


class ToolReceipt(BaseModel):
    """What a tool returned. `ok` only with an id from the outside system (and, for flag changes, a matching
    read-back). A blocked proposal is recorded with ok=false and ref `blocked`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tool: str
    ok: bool
    ref: str
    message: str = ""
    data: dict[str, Any] | None = None
    check: CheckResult | None = None
    step: str = ""
    idempotency_key: str = ""

    @model_validator(mode="before")
    @classmethod
    def _check_from_data(cls, value: Any) -> Any:
        """Receipts recorded before `check` existed carried the check's result inside `data`."""
        if isinstance(value, dict) and isinstance(data := value.get("data"), dict) and "verdict" in data:
            return {**value, "data": None, "check": data}
        return value


class ToolCall(BaseModel, Generic[ArgsT]):
    """What an activity receives: the tool, the verified and resolved args, and the key its effect is stored under."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tool: ToolName | None = Field(default=None, description="None only in calls scheduled by workflows of the "
                                  "release before: the activity fills in its own name (activities/tools.py).")
    step: str
    idempotency_key: str
    args: SerializeAsAny[ArgsT]

    @classmethod
    def answering(cls, proposal: ToolProposal, args: ToolArgs) -> ToolCall[Any]:
        """The call that carries out `proposal` with its verified, resolved `args`."""
        return cls(tool=proposal.name, step=proposal.step, idempotency_key=proposal.idempotency_key, args=args)

    def receipt(self, ok: bool, ref: str, message: str, data: dict[str, Any] | None = None,
                check: CheckResult | None = None) -> ToolReceipt:
        return ToolReceipt(tool=self.tool.value if self.tool else "", ok=ok, ref=ref, message=message, data=data,
                           check=check, step=self.step, idempotency_key=self.idempotency_key)
