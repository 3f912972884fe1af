"""The ten tools: their typed arguments, the proposal that asks for one, and the receipt it returns.

A tool call is only ever made from a verified `ToolProposal`; its result is a `ToolReceipt` whose `ref`
is the id the outside system returned (exp_id, run_id, change id, dashboard id, ticket id).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from abrollout.contracts.constraints import Constraint
from abrollout.contracts.records import DashboardData
from abrollout.contracts.spec import CONTROL_ARM, ArmName, Effect, Guardrail, MetricName, Simulation
from abrollout.contracts.verdicts import AnalysisPlan

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


class RegisterExperimentArgs(ToolArgs):
    """Everything pre-registered (prereg.1), including the analysis plan the statistics will follow and, for
    the embedded simulator only, the simulated traffic."""

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
    flag_key: str
    group_id: str
    variants: list[ArmName]
    stickiness: Literal["userId"] = "userId"
    description: Text = ""


class StartRunArgs(ToolArgs):
    exp_id: Ref
    run_name: str
    population: str


class AllocateTrafficArgs(ToolArgs):
    flag_key: str
    group_id: str
    exp_id: Ref
    split: dict[ArmName, float]
    exposure_rules: list[str]
    constraints: list[Constraint]
    rollout_percent: float = Field(gt=0, le=100)
    ramp_step: int = Field(ge=0)


class CheckMetricsArgs(ToolArgs):
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
    run_id: Ref
    reason: Text


class PromoteVariantArgs(ToolArgs):
    flag_key: str
    variant: ArmName
    reason: Text


class RollbackVariantArgs(ToolArgs):
    flag_key: str
    to_variant: ArmName = CONTROL_ARM
    reason: Text


class SnapshotDashboardArgs(ToolArgs):
    run_id: Ref
    exp_key: str
    label: str
    data: DashboardData


class OpenTicketArgs(ToolArgs):
    exp_key: str
    title: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    description: Text
    severity: Literal["low", "medium", "high", "critical"]
    owners: list[str]


ARGS_BY_TOOL: dict[ToolName, type[ToolArgs]] = {
    ToolName.RegisterExperiment: RegisterExperimentArgs,
    ToolName.CreateFlag: CreateFlagArgs,
    ToolName.StartRun: StartRunArgs,
    ToolName.AllocateTraffic: AllocateTrafficArgs,
    ToolName.CheckMetrics: CheckMetricsArgs,
    ToolName.StopRun: StopRunArgs,
    ToolName.PromoteVariant: PromoteVariantArgs,
    ToolName.RollbackVariant: RollbackVariantArgs,
    ToolName.SnapshotDashboard: SnapshotDashboardArgs,
    ToolName.OpenTicket: OpenTicketArgs,
}


class ToolProposal(BaseModel):
    """A planned tool call. `preconditions` are machine-checked before it runs (see abrollout.plan.verify):
    `done:<step>` (that step returned an ok receipt), `not_done:<step>`, `state:<decision state>`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: ToolName = Field(description="One of the ten tools.")
    step: str
    args: dict[str, Any]
    preconditions: list[str]
    idempotency_key: str


ArgsT = TypeVar("ArgsT", bound=ToolArgs)


class ToolCall(BaseModel, Generic[ArgsT]):
    """What an activity receives: the verified, resolved args and the key its side effect is stored under."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    step: str
    idempotency_key: str
    args: ArgsT


class ToolReceipt(BaseModel):
    """What a tool returned. `ok` only with an id from the outside system (and, for flag changes, a matching
    read-back). A blocked proposal is recorded with ok=false and ref `blocked`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tool: str
    ok: bool
    ref: str
    message: str = ""
    data: dict[str, Any] | None = None
    step: str = ""
    idempotency_key: str = ""
