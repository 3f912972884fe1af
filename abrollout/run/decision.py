"""The decision rule of exp_policy.v5, as plain Python over a recorded `CheckVerdict`.

No numpy, no scipy and no new floating-point statistics: every number compared here was computed by the
CheckMetrics activity and recorded in its receipt, so a Temporal replay of the workflow takes the same decision.
The order of the rules is `decide`'s; design notes: docs/statistics.md.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from abrollout.contracts.records import DecisionState
from abrollout.contracts.spec import EffectKind
from abrollout.contracts.verdicts import AnalysisPlan, ArmResult, CheckVerdict, Interval
from abrollout.policy import cite


class Decision(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    state: DecisionState
    arm: str | None = None
    rationale: str
    citations: tuple[str, ...]


def _benefit(plan: AnalysisPlan, arm: ArmResult) -> float:
    """The estimate in the hypothesised direction, in the MDE's units (percent when the MDE is relative)."""
    if plan.mde.kind is EffectKind.relative:
        return plan.benefit_sign * arm.rel_diff * 100.0
    return plan.benefit_sign * arm.diff


def _estimate_text(plan: AnalysisPlan, verdict: CheckVerdict, arm: ArmResult) -> str:
    relative = plan.mde.kind is EffectKind.relative
    value, ci = (arm.rel_diff, arm.rel_diff_ci) if relative else (arm.diff, arm.diff_ci)

    def fmt(x: float) -> str:
        return f"{x:+.1%}" if relative else f"{x:+.4g}"

    kind = "repeated" if verdict.test == "group_sequential" else "always-valid"
    level = f"{1.0 - plan.alpha:.0%} {kind} CI"
    interval = "unbounded at this look" if ci is None else f"{fmt(ci.low)} to {fmt(ci.high)}"
    return f"{plan.primary_metric} {arm.arm} {fmt(value)} ({level} {interval})"


def _signed(bound: float | None, sign: int) -> float | None:
    """A boundary on the z-scale of treatment minus control (negative for a decrease)."""
    return None if bound is None else sign * bound


def _look_text(verdict: CheckVerdict, label: str, arm: ArmResult, bound: float | None, word: str) -> str:
    info = "" if arm.information_fraction is None else f" (info {arm.information_fraction:.2f})"
    where = f"at look {verdict.look}/{verdict.planned_looks}{info}"
    if bound is None:
        return f"z={arm.z:.2f}, no boundary yet {where} (no alpha spent)"
    return f"z={arm.z:.2f} {word} the {label} boundary {bound:.2f} {where}"


def _facts(plan: AnalysisPlan, verdict: CheckVerdict, arm: ArmResult, bound: float | None) -> tuple[str, ...]:
    return (
        f"metric={plan.primary_metric}",
        f"arm={arm.arm}",
        f"test=group_sequential {plan.spending_label}, Holm over {len(verdict.arms)} treatment(s)",
        f"look={verdict.look}/{verdict.planned_looks}",
        f"z={arm.z:.3f}",
        f"boundary={'none' if bound is None else f'{bound:.3f}'}",
        f"information_fraction={'none' if arm.information_fraction is None else f'{arm.information_fraction:.3f}'}",
    )


def _guardrail_stop(plan: AnalysisPlan, verdict: CheckVerdict) -> Decision | None:
    reasons: list[str] = []
    citations: list[str] = []
    srm = verdict.srm
    if srm is not None and srm.flagged:
        split = " / ".join(f"{arm} {share:g}%" for arm, share in plan.split.items())
        reasons.append(
            f"sample ratio mismatch: chi2={srm.chi2:.2f} (df {srm.df}), p={srm.p_value:.2g} < {srm.threshold:g} "
            f"against the split {split}"
        )
        citations += [cite("srm.1"), "test=chi-square", f"srm_p={srm.p_value:.3g}", f"threshold=p<{srm.threshold:g}"]
    for g in verdict.guardrails:
        if not g.breached:
            continue
        reasons.append(g.reason)
        if g.threshold_breached:
            citations += [cite("guardrail.2"), f"metric={g.name}", f"threshold={g.direction} {g.threshold:g}"]
            citations += [f"observed[{key}]={value:g}" for key, value in g.observed.items()]
        if g.harm_detected:
            citations += [cite("guardrail.3"), f"metric={g.name}", "test=one-sided always-valid mixture"]
            citations += [f"p[{t.arm}]={t.p_value:.3g}" for t in g.non_inferiority if t.harmful]
    if not reasons:
        return None
    return Decision(
        state=DecisionState.guardrail_stop,
        rationale="; ".join(reasons) + "; stop and roll back to control",
        citations=tuple(dict.fromkeys(citations)),
    )


def _promote(plan: AnalysisPlan, verdict: CheckVerdict) -> tuple[Decision | None, list[str]]:
    """The promote decision, or None and notes on arms that crossed but fell short of the floor."""
    floor = plan.promote_min_effect_fraction_of_mde * plan.mde.value
    unit = "%" if plan.mde.kind is EffectKind.relative else ""
    crossed = [a for a in verdict.arms if a.crossed_efficacy]
    eligible = [a for a in crossed if _benefit(plan, a) >= floor]
    notes = [
        f"{a.arm} crossed the boundary but its estimate {_benefit(plan, a):.3g}{unit} is below the promote floor "
        f"{floor:g}{unit} ({plan.promote_min_effect_fraction_of_mde:g} x MDE)"
        for a in crossed
        if a not in eligible
    ]
    if not eligible:
        return None, notes
    best = max(eligible, key=lambda a: _benefit(plan, a))
    bound = _signed(best.efficacy_bound, plan.benefit_sign)
    rationale = (
        f"{_estimate_text(plan, verdict, best)}, "
        f"{_look_text(verdict, plan.spending_label, best, bound, 'crossed')}"
        f" at Holm level {best.efficacy_alpha:.4g}; estimate >= {floor:g}{unit}; promote {best.arm}"
    )
    citations = (
        cite("decision.1"),
        cite("decision.2"),
        *_facts(plan, verdict, best, bound),
        f"promote_floor={floor:g}{unit}",
    )
    return Decision(state=DecisionState.promote, arm=best.arm, rationale=rationale, citations=citations), notes


def _rollback(plan: AnalysisPlan, verdict: CheckVerdict) -> Decision | None:
    harmful = [a for a in verdict.arms if a.crossed_harm]
    if not harmful:
        return None
    worst = min(harmful, key=lambda a: _benefit(plan, a))
    bound = _signed(worst.harm_bound, -plan.benefit_sign)
    rationale = (
        f"{_estimate_text(plan, verdict, worst)} against the hypothesised {plan.goal.value}, "
        f"{_look_text(verdict, plan.spending_label, worst, bound, 'crossed')}; roll back to control"
    )
    citations = (cite("decision.1"), cite("decision.3"), *_facts(plan, verdict, worst, bound))
    return Decision(state=DecisionState.rollback, arm=worst.arm, rationale=rationale, citations=citations)


def _interval_text(ci: Interval) -> str:
    return f"{ci.low:+.1%} to {ci.high:+.1%}"


def _summary(plan: AnalysisPlan, verdict: CheckVerdict) -> str:
    """Where the primary stands, per treatment."""
    if verdict.test == "group_sequential":
        parts = [
            f"{_estimate_text(plan, verdict, a)}, "
            f"{_look_text(verdict, plan.spending_label, a, _signed(a.efficacy_bound, plan.benefit_sign), 'short of')}"
            for a in verdict.arms
        ]
        return "; ".join(parts)
    parts = [
        f"{plan.primary_metric} {a.arm} {a.rel_diff:+.1%} ({1.0 - plan.alpha:.0%} always-valid CI "
        f"{_interval_text(a.always_valid_rel_diff_ci)}, always-valid p={a.always_valid_p_value:.2g})"
        for a in verdict.arms
    ]
    return (
        "unplanned look: "
        + "; ".join(parts)
        + "; the primary decides only at planned looks, and if the run stops now this always-valid interval "
        "is the valid conclusion"
    )


def decide(plan: AnalysisPlan, verdict: CheckVerdict, *, at_cap: bool) -> Decision:
    """The decision for one recorded verdict; `at_cap` is true at the duration cap (the last planned look).

    Guardrails first (guardrail.2: "before lift is considered"): a guardrail or SRM breach stops; without usable
    primary data nothing is decided (data.1); only a planned look promotes (decision.2, an estimate of at least
    the promote floor x MDE) or rolls back (decision.3), since the design spends its alpha there (decision.1);
    the cap ends inconclusive (decision.4).
    """
    stop = _guardrail_stop(plan, verdict)
    if stop is not None:
        return stop
    if verdict.no_data and at_cap:  # nothing is concluded from the data; the cap still ends the experiment
        return Decision(
            state=DecisionState.inconclusive,
            rationale=f"duration cap reached with no usable data ({verdict.no_data_reason or 'no data'}); "
            "nothing is concluded; roll back to control",
            citations=(cite("data.1"), cite("decision.4"), f"metric={plan.primary_metric}"),
        )
    if verdict.no_data:
        return Decision(
            state=DecisionState.running,
            rationale=f"no decision: {verdict.no_data_reason or 'no data'}",
            citations=(cite("data.1"), f"metric={plan.primary_metric}"),
        )
    notes: list[str] = []
    if verdict.kind == "analysis":
        promote, notes = _promote(plan, verdict)
        if promote is not None:
            return promote
        rollback = _rollback(plan, verdict)
        if rollback is not None:
            return rollback
    status = "; ".join([_summary(plan, verdict), *notes]) if verdict.arms else "guardrails and SRM hold"
    if at_cap:
        return Decision(
            state=DecisionState.inconclusive,
            rationale=f"duration cap reached without a decision: {status}; roll back to control",
            citations=(
                cite("decision.4"),
                f"metric={plan.primary_metric}",
                f"look={verdict.look}/{verdict.planned_looks}",
            ),
        )
    return Decision(state=DecisionState.running, rationale=status,
                    citations=(cite("decision.1"), f"metric={plan.primary_metric}"))
