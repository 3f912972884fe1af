"""The safety net: which experiments it repairs, and the tool calls that repair them.

Termination, a history over the server's limit and a workflow task that keeps failing run no workflow code (no
`finally`, no rollback), so a sweep outside every experiment (workflows/safety_net.py) compares the registry with
Temporal and returns each abandoned flag to control through the experiment's own idempotent tools and read-back.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from abrollout.contracts.records import ReceiptRecord
from abrollout.contracts.spec import CONTROL_ARM
from abrollout.contracts.tools import OpenTicketArgs, RollbackVariantArgs, ToolProposal
from abrollout.ids import idempotency_key
from abrollout.plan.planner import flag_key, propose
from abrollout.policy import PARAMS, cite

Closed = Literal["terminated", "failed", "timed_out", "canceled", "not_found", "stuck"]
DEFAULT_STUCK_AFTER_SECONDS = 15 * 60


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SweepInput(Model):
    stuck_after_seconds: int = Field(default=DEFAULT_STUCK_AFTER_SECONDS, ge=1, description="How long a workflow "
                                     "task may keep failing before the experiment counts as stuck.")


class Abandoned(Model):
    """A registered experiment whose workflow can no longer carry out a decision."""

    exp_key: str
    exp_id: str
    workflow_id: str
    status: Closed
    why: str
    owners: list[str] = Field(default_factory=list)


class Found(Model):
    checked: int = Field(description="Registered experiments still counted as running.")
    abandoned: list[Abandoned]


class Release(Model):
    """The registry's part: stop the experiment's run (or the experiment, if it never started one)."""

    exp_id: str
    reason: str
    idempotency_key: str


class Terminate(Model):
    workflow_id: str
    reason: str


class Repair(Model):
    """What the safety net did for one experiment: each step's receipt, in order."""

    exp_key: str
    workflow_id: str
    status: Closed
    why: str
    receipts: list[ReceiptRecord]

    @property
    def returned_to_control(self) -> bool:
        return any(r.step == ROLLBACK and r.ok for r in self.receipts)

    def ref(self, step: str) -> str | None:
        return next((r.ref for r in self.receipts if r.step == step and r.ok), None)


class SweepReport(Model):
    checked: int
    repaired: list[Repair]
    in_progress: list[str] = Field(description="Experiments another sweep's safety net is repairing now.")


TERMINATE, ROLLBACK, RELEASE, TICKET = "safety-net-terminate", "safety-net-rollback", "safety-net-release", \
    "safety-net-ticket"


def safety_net_workflow_id(experiment_workflow_id: str) -> str:
    """One safety net per experiment at a time: Temporal refuses a second start under the same id."""
    return f"safety-net-{experiment_workflow_id}"


def reason(a: Abandoned) -> str:
    return f"safety net: the experiment's workflow is {a.status.replace('_', ' ')} ({a.why})"


def rollback_proposal(a: Abandoned) -> ToolProposal:
    args = RollbackVariantArgs(flag_key=flag_key(a.exp_key), to_variant=CONTROL_ARM, reason=reason(a)[:4000])
    return propose(a.exp_key, ROLLBACK, args, [])


def release_request(a: Abandoned) -> Release:
    return Release(exp_id=a.exp_id, reason=reason(a)[:500],
                   idempotency_key=idempotency_key(a.exp_key, RELEASE, {"exp_id": a.exp_id}))


def ticket_proposal(a: Abandoned, done: list[ReceiptRecord]) -> ToolProposal:
    """A critical ticket that says what was found and what each repair step returned, so a person can finish."""
    steps = "; ".join(f"{r.step}: {'ok' if r.ok else 'NOT DONE'} {r.ref} {r.message[:300]}" for r in done)
    flag = "returned to control" if any(r.step == ROLLBACK and r.ok for r in done) else \
        "could NOT be returned to control: check what it serves and fix it by hand"
    args = OpenTicketArgs(
        exp_key=a.exp_key, title=f"Safety net: {a.exp_key}'s flag {flag}"[:200],
        severity=PARAMS.severity_unverified_change,
        owners=a.owners,
        description=(f"{reason(a)}. Its flag {flag_key(a.exp_key)} {flag}. {steps} "
                     f"[{cite('receipts.1')}]")[:4000])
    return propose(a.exp_key, TICKET, args, [])
