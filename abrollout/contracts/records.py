"""Compact records of what happened in a run: decision states, receipts and checks.

They are small on purpose: the workflow carries them across continue-as-new (a 90-day experiment has
2,000+ checks) while the full receipts stay in the workflow history, which is the receipt trail.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from abrollout.contracts.spec import Effect


class DecisionState(StrEnum):
    running = "running"
    guardrail_stop = "guardrail_stop"
    promote = "promote"
    rollback = "rollback"
    inconclusive = "inconclusive"


TERMINAL_STATES = frozenset(
    {DecisionState.guardrail_stop, DecisionState.promote, DecisionState.rollback, DecisionState.inconclusive}
)


class Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ReceiptRecord(Record):
    """One tool call as it ended: the step, the outside system's id (or `blocked`), and its key."""

    step: str
    tool: str
    ok: bool
    ref: str
    message: str = ""
    idempotency_key: str = ""


class ArmEffect(Record):
    """A treatment arm against control at an analysis look (absolute difference with its interval)."""

    estimate: float
    ci_low: float
    ci_high: float
    relative: float | None = None
    p_value: float | None = None
    boundary: float | None = None


class Checkpoint(Record):
    """One recorded check: an hourly guardrail check or a planned analysis look."""

    kind: str
    index: int
    at_hours: float
    ref: str = Field(description="The CheckMetrics receipt this record summarises.")
    state: DecisionState
    summary: str
    no_data: bool = False
    breaches: list[str] = Field(default_factory=list)
    srm_p: float | None = None
    assignments: dict[str, int] = Field(default_factory=dict)
    sizes: dict[str, int] = Field(default_factory=dict, description="Primary-metric n per arm (analysis looks).")
    guardrails: dict[str, dict[str, float]] = Field(default_factory=dict)
    effects: dict[str, ArmEffect] = Field(default_factory=dict)


class GuardrailLine(Record):
    name: str
    direction: str
    threshold: float


class DashboardData(Record):
    """Everything a dashboard snapshot shows; rendered to self-contained HTML by `abrollout.report.dashboard`.

    It travels inside the SnapshotDashboard activity input saved in workflow histories, so a field added later
    has a default: a payload recorded before it still decodes and still renders."""

    exp_key: str
    label: str
    state: DecisionState
    rationale: str
    primary_metric: str
    mde: str = Field(description="The registered MDE as people read it, e.g. `5% relative`.")
    mde_effect: Effect | None = Field(default=None, description="The same MDE typed, for drawing it; None in "
                                      "snapshots recorded before it was carried (the page then draws no MDE line).")
    arms: list[str]
    split: dict[str, float]
    exposure_percent: float
    guardrails: list[GuardrailLine]
    checkpoints: list[Checkpoint]
    receipts: list[ReceiptRecord]
