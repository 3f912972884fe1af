"""The state of one experiment run, in one model: what the workflow carries across continue-as-new.

Pure data plus small pure transitions, so the workflow reads like a runbook and the bookkeeping is unit
tested without Temporal.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from abrollout.contracts.records import Checkpoint, DecisionState, ReceiptRecord
from abrollout.contracts.spec import ExperimentSpec
from abrollout.contracts.tools import ToolName, ToolProposal, ToolReceipt
from abrollout.plan.planner import ExperimentPlan

CommandKind = Literal["stop", "promote", "alert", "advance_ramp"]


class Command(BaseModel):
    """A manual or pushed instruction, queued by a signal or an accepted update."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: CommandKind
    reason: str
    arm: str | None = None
    ramp_step: int | None = None
    source: str = "manual"


CARRIED_ROUTINE_CHECKS = 48
"""Routine hourly checks a continued run keeps: two days of the dashboard's recent history."""


class RunState(BaseModel):
    model_config = ConfigDict(extra="forbid")

    spec: ExperimentSpec = Field(exclude=True, description="Carried by ExperimentInput, once.")
    plan: ExperimentPlan = Field(exclude=True, description="Carried by ExperimentInput, once.")
    started_at: datetime | None = Field(default=None, description="Workflow time the first allocation was applied.")
    refs: dict[str, str] = Field(default_factory=dict, description="Step -> ref of its ok receipt.")
    receipts: list[ReceiptRecord] = Field(default_factory=list)
    proposals: list[ToolProposal] = Field(default_factory=list, description="Proposals beyond the setup plan.")
    checkpoints: list[Checkpoint] = Field(default_factory=list)
    dashboards: list[str] = Field(default_factory=list)
    ramp_applied: int = -1
    guardrail_checks: int = 0
    looks: int = 0
    state: DecisionState = DecisionState.running
    rationale: str = "registered; waiting for the first check"
    decided_arm: str | None = None
    ticket_severity: str | None = Field(default=None, description="Overrides the policy's guardrail-stop severity.")
    citations: list[str] = Field(default_factory=list)
    decision_receipts: list[str] = Field(default_factory=list)
    breaches: list[str] = Field(default_factory=list, description="Guardrails breached at the latest check.")
    no_data_streak: int = 0
    commands: list[Command] = Field(default_factory=list)
    closing: bool = False
    finished: bool = False
    handled_commands: int = 0
    continued: int = 0
    alert_pending: bool = Field(default=False, description="An alert arrived during the cool-down after an alert "
                                "check: one more check runs when it ends.")
    ignored_signals: int = Field(default=0, description="Signals dropped because their payload was unusable.")
    last_ignored: str = Field(default="", description="Why the latest of them was dropped.")

    @property
    def exp_id(self) -> str | None:
        return self.refs.get("register")

    @property
    def run_id(self) -> str | None:
        return self.refs.get("run")

    @property
    def exposure_percent(self) -> float:
        return self.plan_ramp_percent(self.ramp_applied)

    def plan_ramp_percent(self, index: int) -> float:
        return self.plan.ramp[index].percent if index >= 0 else 0.0

    def prior_look_sizes(self) -> list[dict[str, int]]:
        """Primary n per arm at each analysis look so far; a look without data repeats the one before."""
        sizes: list[dict[str, int]] = []
        for checkpoint in self.checkpoints:
            if checkpoint.kind == "analysis":
                sizes.append(checkpoint.sizes or (sizes[-1] if sizes else {}))
        return sizes

    def carried(self) -> RunState:
        """The state a continued run starts from, bounded however long the experiment runs (Temporal refuses
        a payload over 2 MB): every receipt, every analysis look and every check that breached or lacked data
        (what the report shows), the latest routine checks for the dashboard's recent history, and no check
        proposals (the plan rebuilds them). Older routine checks stay in earlier runs' histories."""
        recent = len(self.checkpoints) - CARRIED_ROUTINE_CHECKS
        kept = [c for i, c in enumerate(self.checkpoints)
                if c.kind == "analysis" or c.breaches or c.no_data or i >= recent]
        proposals = [p for p in self.proposals if p.name != ToolName.CheckMetrics]
        return self.model_copy(update={"checkpoints": kept, "proposals": proposals})

    def record(self, proposal: ToolProposal, receipt: ToolReceipt) -> ReceiptRecord:
        """Add a receipt; an ok one makes its ref available to later placeholders and preconditions."""
        record = ReceiptRecord(step=proposal.step, tool=proposal.name, ok=receipt.ok, ref=receipt.ref,
                               message=receipt.message[:500], idempotency_key=proposal.idempotency_key)
        self.receipts.append(record)
        if receipt.ok:
            self.refs[proposal.step] = receipt.ref
        return record

    def decide(self, state: DecisionState, rationale: str, citations: list[str], arm: str | None = None,
               ticket_severity: str | None = None) -> None:
        self.state = state
        self.rationale = rationale
        self.citations = list(dict.fromkeys([*self.citations, *citations]))
        self.decided_arm = arm
        self.ticket_severity = ticket_severity
