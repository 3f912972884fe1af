"""From a CheckMetrics receipt to a checkpoint and a decision, using only the recorded verdict.

The statistics ran inside the activity and their numbers are in the receipt, so replaying the workflow
re-reads them instead of recomputing floating point; `decide` is plain Python over those numbers.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from abrollout.contracts.records import ArmEffect, Checkpoint, DecisionState
from abrollout.contracts.tools import ToolReceipt
from abrollout.contracts.verdicts import CheckVerdict, GuardrailVerdict
from abrollout.policy import cite
from abrollout.run.decision import decide
from abrollout.run.state import RunState


class Assessment(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    checkpoint: Checkpoint
    state: DecisionState
    rationale: str
    citations: list[str]
    arm: str | None = None


def _effects(verdict: CheckVerdict) -> dict[str, ArmEffect]:
    return {a.arm: ArmEffect(estimate=a.diff, ci_low=a.always_valid_diff_ci.low, ci_high=a.always_valid_diff_ci.high,
                             relative=a.rel_diff, p_value=a.always_valid_p_value, boundary=a.efficacy_bound)
            for a in verdict.arms}


def _sizes(verdict: CheckVerdict) -> dict[str, int]:
    sizes = {a.arm: a.n for a in verdict.arms}
    if verdict.arms:
        sizes = {"control": verdict.arms[0].control_n, **sizes}
    return sizes


def _guardrail_text(g: GuardrailVerdict) -> str:
    values = ", ".join(f"{arm} {value:.4g}" for arm, value in g.observed.items())
    status = "BREACH" if g.breached else "ok"
    return f"{g.name} {status} ({values}; must stay {g.direction} {g.threshold:g})"


def _summary(verdict: CheckVerdict, rationale: str) -> str:
    if verdict.no_data:
        return f"no data: {verdict.no_data_reason or rationale}"
    parts = []
    if verdict.kind == "analysis":
        for a in verdict.arms:
            ci = a.always_valid_rel_diff_ci
            parts.append(f"{a.arm} {a.rel_diff:+.2%} (CS {ci.low:+.2%} to {ci.high:+.2%}), z={a.z:.2f}"
                         + (f" vs bound {a.efficacy_bound:.2f}" if a.efficacy_bound is not None else ""))
    parts += [_guardrail_text(g) for g in verdict.guardrails]
    if verdict.srm is not None:
        parts.append(f"SRM p={verdict.srm.p_value:.3g}" + (" FLAGGED" if verdict.srm.flagged else ""))
    head = f"look {verdict.look}/{verdict.planned_looks}: " if verdict.kind == "analysis" else ""
    return head + "; ".join(parts)


def _failed(kind: str, index: int, at_seconds: int, receipt: ToolReceipt, at_cap: bool, why: str) -> Assessment:
    state = DecisionState.inconclusive if at_cap else DecisionState.running
    rationale = f"{kind} check {index} returned no usable verdict ({why}); nothing is decided on it"
    if at_cap:
        rationale += "; the cap is reached, so the experiment is inconclusive"
    citations = [cite("data.1")] + ([cite("decision.4")] if at_cap else [])
    checkpoint = Checkpoint(kind=kind, index=index, at_hours=at_seconds / 3600, ref=receipt.ref, state=state,
                            summary=f"no verdict: {why}", no_data=True)
    return Assessment(checkpoint=checkpoint, state=state, rationale=rationale, citations=citations)


def assess_check(state: RunState, kind: str, index: int, at_seconds: int, receipt: ToolReceipt, *,
                 at_cap: bool) -> Assessment:
    """The checkpoint to record and the decision the pre-registered rule makes on this check's verdict."""
    if not receipt.ok or receipt.check is None:
        return _failed(kind, index, at_seconds, receipt, at_cap, receipt.message or "the check failed")
    verdict = receipt.check.verdict
    decision = decide(state.plan.analysis, verdict, at_cap=at_cap)
    breaches = [g.name for g in verdict.guardrails if g.breached]
    if verdict.srm is not None and verdict.srm.flagged:
        breaches.append("srm")
    checkpoint = Checkpoint(
        kind=kind, index=index, at_hours=at_seconds / 3600, ref=receipt.ref, state=decision.state,
        summary=_summary(verdict, decision.rationale)[:600], no_data=verdict.no_data, breaches=breaches,
        srm_p=verdict.srm.p_value if verdict.srm else None,
        assignments=dict(verdict.srm.observed) if verdict.srm else {}, sizes=_sizes(verdict),
        guardrails={g.name: dict(g.observed) for g in verdict.guardrails if g.evaluated},
        effects=_effects(verdict) if kind == "analysis" else {})
    return Assessment(checkpoint=checkpoint, state=decision.state, rationale=decision.rationale,
                      citations=list(decision.citations), arm=decision.arm)
