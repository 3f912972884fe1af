"""The output contract: the report a person (or a dashboard) reads at any time during or after a run."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

from abrollout.contracts.records import Checkpoint, DecisionState, ReceiptRecord
from abrollout.contracts.tools import ToolProposal

SUMMARY_MAX_WORDS = 100


def word_count(text: str) -> int:
    return len(text.split())


def clip_words(text: str, limit: int = SUMMARY_MAX_WORDS) -> str:
    """At most `limit` words; a clipped text ends with an ellipsis so it never reads as complete."""
    words = text.split()
    if len(words) <= limit:
        return " ".join(words)
    return " ".join(words[: limit - 1]) + " …"


class ReportModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Registration(ReportModel):
    exp_id: str | None = Field(description="Id the experiment registry returned; null until registered.")
    exp_key: str
    primary_metric: str
    metrics: list[str]
    hypothesis: str
    guardrails: list[str] = Field(description="Each guardrail's must-hold condition, e.g. `latency_p95 < 2.5`.")
    mde: str
    policy: str
    spec_hash: str


class AllocationReport(ReportModel):
    arms: list[str]
    traffic_split: dict[str, float]
    exposure_rules: list[str]
    population: str
    exposure_percent: float = Field(description="Current ramp exposure; 0 before allocation.")


class Monitoring(ReportModel):
    run_id: str | None
    dashboards: list[str]
    checkpoints: list[Checkpoint]


class DecisionReport(ReportModel):
    state: DecisionState
    rationale: str
    receipts: list[str] = Field(description="Refs of the receipts the decision rests on and was carried out with.")
    arm: str | None = None


class Report(ReportModel):
    summary: str
    registration: Registration
    allocation: AllocationReport
    monitoring: Monitoring
    decision: DecisionReport
    citations: list[str]
    tool_proposals: list[ToolProposal]
    receipts: list[ReceiptRecord] = Field(default_factory=list, description="Every tool call so far, in order.")

    @field_validator("summary")
    @classmethod
    def _at_most_100_words(cls, value: str) -> str:
        if word_count(value) > SUMMARY_MAX_WORDS:
            raise ValueError(f"summary has {word_count(value)} words; the contract allows {SUMMARY_MAX_WORDS}")
        return value
