"""The output contract rendered from the run state: the report, and the data behind a dashboard snapshot."""

from __future__ import annotations

from abrollout.contracts.records import Checkpoint, DashboardData, DecisionState, GuardrailLine
from abrollout.contracts.report import (
    AllocationReport,
    DecisionReport,
    Monitoring,
    Registration,
    Report,
    clip_words,
)
from abrollout.policy import cite
from abrollout.run.state import RunState

_BASE_CITATIONS = ("prereg.1", "guardrail.2", "srm.1", "decision.1", "receipts.1", "receipts.2")


def _report_checkpoints(state: RunState) -> list[Checkpoint]:
    """Every analysis look, every check that breached or lacked data, and the latest check: the decision
    trail without 300 routine hourly rows (those are in the dashboard and the history)."""
    points = state.checkpoints
    keep = [c for c in points if c.kind == "analysis" or c.breaches or c.no_data]
    if points and points[-1] not in keep:
        keep.append(points[-1])
    return keep


def _citations(state: RunState) -> list[str]:
    plan = state.plan
    refs = [cite(c) for c in _BASE_CITATIONS]
    refs.append(f"primary_metric:{plan.primary_metric} (mde {state.spec.mde.describe()})")
    refs += [f"guardrail:{g.describe()}" for g in plan.guardrails]
    return list(dict.fromkeys([*refs, *state.citations]))


def _summary(state: RunState) -> str:
    plan = state.plan
    last = state.checkpoints[-1].summary if state.checkpoints else "no checks yet"
    arms = ", ".join(f"{arm} {share:g}%" for arm, share in plan.split.items())
    rationale = state.rationale.rstrip(". ") + "."
    text = (f"{plan.exp_key} ({plan.domain}) is {state.state.value}: {rationale} "
            f"Arms {arms} at {state.exposure_percent:g}% exposure; primary {plan.primary_metric}, "
            f"MDE {state.spec.mde.describe()}; {state.guardrail_checks} guardrail checks and {state.looks} of "
            f"{plan.planned_looks} analysis looks so far. Latest: {last}")
    return clip_words(text)


def render(state: RunState) -> Report:
    plan, spec = state.plan, state.spec
    return Report(
        summary=_summary(state),
        registration=Registration(
            exp_id=state.exp_id, exp_key=plan.exp_key, primary_metric=plan.primary_metric,
            metrics=[spec.primary_metric.name, *(m.name for m in spec.secondary_metrics),
                     *(g.name for g in plan.guardrails)],
            hypothesis=spec.hypothesis or "", guardrails=[g.describe() for g in plan.guardrails],
            mde=spec.mde.describe(), policy=plan.policy_id,
            spec_hash=plan.spec_hash),
        allocation=AllocationReport(arms=plan.arms, traffic_split=plan.split, exposure_rules=plan.exposure_rules,
                                    population=spec.allocation.population,
                                    exposure_percent=state.exposure_percent),
        monitoring=Monitoring(run_id=state.run_id, dashboards=state.dashboards,
                              checkpoints=_report_checkpoints(state)),
        decision=DecisionReport(state=state.state, rationale=state.rationale, arm=state.decided_arm,
                                receipts=state.decision_receipts or [r.ref for r in state.receipts if r.ok]),
        citations=_citations(state),
        tool_proposals=[*plan.setup, *plan.ramp_steps, *state.proposals],
        receipts=state.receipts,
    )


def dashboard_data(state: RunState, label: str) -> DashboardData:
    plan = state.plan
    return DashboardData(
        exp_key=plan.exp_key, label=label, state=state.state, rationale=state.rationale,
        primary_metric=plan.primary_metric, mde=state.spec.mde.describe(), mde_effect=state.spec.mde,
        arms=plan.arms, split=plan.split,
        exposure_percent=state.exposure_percent,
        guardrails=[GuardrailLine(name=g.name, direction=g.direction, threshold=g.threshold)
                    for g in plan.guardrails],
        checkpoints=state.checkpoints, receipts=state.receipts)


def is_terminal(state: DecisionState) -> bool:
    return state is not DecisionState.running
