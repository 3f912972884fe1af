"""The output contract rendered from a run state: `render` (the report) and `dashboard_data` (the snapshot's data),
for a run still going and for each way a run ends."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from abrollout.contracts.records import (
    ArmEffect,
    Checkpoint,
    DashboardData,
    DecisionState,
    GuardrailLine,
    ReceiptRecord,
)
from abrollout.contracts.report import SUMMARY_MAX_WORDS, word_count
from abrollout.contracts.spec import Effect, EffectKind
from abrollout.policy import cite
from abrollout.report.dashboard import render_dashboard
from abrollout.report.render import dashboard_data, is_terminal, render
from abrollout.run.state import RunState
from abrollout.spec.loader import validate_raw
from tests.conftest import BASE_SPEC

BASE_CITATIONS = [cite(c) for c in ("prereg.1", "guardrail.2", "srm.1", "decision.1", "receipts.1", "receipts.2")]
RAMP = [{"percent": 20, "at": "0h"}, {"percent": 100, "at": "24h"}]


def _started(**changes: Any) -> RunState:
    """A run through its setup (registered, flag created, run started, first ramp step applied), from a spec
    normalised and planned the way `start` does it."""
    raw = {**copy.deepcopy(BASE_SPEC), "ramp": RAMP, "secondary_metrics": ["basket_size"], **changes}
    checked = validate_raw(raw)
    assert checked.spec is not None and checked.plan is not None, checked.problems
    receipts = [ReceiptRecord(step=p.step, tool=p.name, ok=True, ref=f"ref-{p.step}",
                              idempotency_key=p.idempotency_key) for p in checked.plan.setup]
    return RunState(spec=checked.spec, plan=checked.plan, receipts=receipts,
                    refs={r.step: r.ref for r in receipts}, ramp_applied=0, dashboards=["dash-start"])


def _check(index: int, hours: float, kind: str = "guardrail", **fields: Any) -> Checkpoint:
    summary = fields.pop("summary", f"{kind} check {index} ok")
    return Checkpoint(kind=kind, index=index, at_hours=hours, ref=f"chk-{kind[0]}-{index}",
                      state=fields.pop("state", DecisionState.running), summary=summary, **fields)


def _effect(estimate: float) -> dict[str, ArmEffect]:
    return {"treatment": ArmEffect(estimate=estimate, ci_low=estimate - 0.01, ci_high=estimate + 0.01)}


def _checked(state: RunState, hours: int, looks: int = 0, last: Checkpoint | None = None) -> RunState:
    """Hourly guardrail checks up to `hours` and daily analysis looks up to `looks`, in time order, then `last`
    (the check a decision came from), each with its CheckMetrics receipt."""
    points = [_check(h, float(h)) for h in range(1, hours + 1)]
    points += [_check(day, 24.0 * day, "analysis", effects=_effect(0.02)) for day in range(1, looks + 1)]
    points = [*sorted(points, key=lambda c: c.at_hours), *([last] if last else [])]
    receipts = [ReceiptRecord(step=f"check-{c.kind}-{c.index}", tool="CheckMetrics", ok=True, ref=c.ref)
                for c in points]
    return state.model_copy(update={
        "checkpoints": points, "receipts": [*state.receipts, *receipts],
        "guardrail_checks": sum(c.kind == "guardrail" for c in points),
        "looks": sum(c.kind == "analysis" for c in points)})


def test_a_fresh_run_reports_its_registration_and_plan() -> None:
    state = _started()
    report = render(state)
    assert report.summary == (
        "ui-test-exp (ui) is running: registered; waiting for the first check. Arms control 50%, treatment 50% at "
        "20% exposure; primary checkout_conv, MDE 5% relative; 0 guardrail checks and 0 of 14 analysis looks so "
        "far. Latest: no checks yet")
    reg = report.registration
    assert (reg.exp_id, reg.exp_key, reg.policy, reg.spec_hash) == (
        "ref-register", "ui-test-exp", "exp_policy.v5", state.plan.spec_hash)
    assert reg.metrics == ["checkout_conv", "basket_size", "error_rate"]
    assert (reg.mde, reg.guardrails) == ("5% relative", ["error_rate < 0.01"])
    assert reg.hypothesis == state.spec.hypothesis
    assert report.allocation.model_dump() == {"arms": ["control", "treatment"],
                                              "traffic_split": {"control": 50.0, "treatment": 50.0},
                                              "exposure_rules": [], "population": "all_users",
                                              "exposure_percent": 20.0}
    assert (report.monitoring.run_id, report.monitoring.dashboards) == ("ref-run", ["dash-start"])
    assert report.citations == [*BASE_CITATIONS, "primary_metric:checkout_conv (mde 5% relative)",
                                "guardrail:error_rate < 0.01"]
    assert report.tool_proposals == [*state.plan.setup, *state.plan.ramp_steps]
    assert [p.step for p in report.tool_proposals] == ["register", "flag", "run", "allocate-0", "allocate-1"]
    assert report.receipts == state.receipts


def test_a_running_report_keeps_the_decision_trail_not_every_routine_check() -> None:
    no_data = _check(3, 3.0, no_data=True, summary="no data yet")
    state = _checked(_started(), hours=50, looks=2)
    state.checkpoints[2] = no_data  # a check without data stays in the trail
    report = render(state)
    kept = [(c.kind, c.index) for c in report.monitoring.checkpoints]
    assert kept == [("guardrail", 3), ("analysis", 1), ("analysis", 2), ("guardrail", 50)]
    assert report.decision.state is DecisionState.running and report.decision.arm is None
    assert report.decision.receipts == [r.ref for r in state.receipts]
    assert report.summary.endswith("50 guardrail checks and 2 of 14 analysis looks so far. Latest: guardrail check "
                                   "50 ok")


def _promoted() -> RunState:
    look = _check(3, 72.0, "analysis", effects=_effect(0.04), state=DecisionState.promote, summary="look 3: promote")
    state = _checked(_started(), hours=71, looks=2, last=look)
    state.decide(DecisionState.promote, "treatment beat control at look 3", [cite("decision.1"), cite("decision.2")],
                 arm="treatment")
    state.decision_receipts = ["chk-a-3", "ref-promote"]
    return state


def _rolled_back() -> RunState:
    state = _checked(_started(), hours=5)
    state.receipts.append(ReceiptRecord(step="promote", tool="PromoteVariant", ok=False, ref="blocked",
                                        message="refused"))
    state.decide(DecisionState.rollback, "manual stop: bad copy", [cite("manual.1")])
    return state


def _stopped() -> RunState:
    breach = _check(30, 30.0, breaches=["error_rate"], state=DecisionState.guardrail_stop,
                    summary="error_rate BREACH", guardrails={"error_rate": {"treatment": 0.02}})
    state = _checked(_started(), hours=29, looks=1, last=breach)
    state.decide(DecisionState.guardrail_stop, "error_rate breached for treatment", [cite("guardrail.1")])
    state.decision_receipts = ["chk-g-30"]
    return state


def _inconclusive() -> RunState:
    look = _check(14, 336.0, "analysis", effects=_effect(0.0), state=DecisionState.inconclusive,
                  summary="look 14: no effect at the cap")
    state = _checked(_started(), hours=335, looks=13, last=look)
    state.decide(DecisionState.inconclusive, "no effect of 5% relative by the duration cap", [cite("decision.3")])
    state.decision_receipts = ["chk-a-14"]
    return state


ENDINGS = {
    DecisionState.promote: (_promoted, "treatment", ["chk-a-3", "ref-promote"], [cite("decision.2")]),
    DecisionState.rollback: (_rolled_back, None, None, [cite("manual.1")]),
    DecisionState.guardrail_stop: (_stopped, None, ["chk-g-30"], [cite("guardrail.1")]),
    DecisionState.inconclusive: (_inconclusive, None, ["chk-a-14"], [cite("decision.3")]),
}


@pytest.mark.parametrize("ending", ENDINGS, ids=str)
def test_an_ended_run_reports_its_decision_and_what_it_rests_on(ending: DecisionState) -> None:
    build, arm, receipts, new_citations = ENDINGS[ending]
    state = build()
    report = render(state)
    assert is_terminal(report.decision.state) and report.decision.state is ending
    assert (report.decision.rationale, report.decision.arm) == (state.rationale, arm)
    ok_refs = [r.ref for r in state.receipts if r.ok]
    assert report.decision.receipts == (receipts if receipts is not None else ok_refs)
    assert report.summary.startswith(f"ui-test-exp (ui) is {ending.value}: {state.rationale}. Arms")
    assert report.summary.endswith(f"{state.guardrail_checks} guardrail checks and {state.looks} of 14 analysis "
                                   f"looks so far. Latest: {state.checkpoints[-1].summary}")
    assert report.citations[:len(BASE_CITATIONS)] == BASE_CITATIONS
    assert report.citations[-len(new_citations):] == new_citations
    assert len(report.citations) == len(set(report.citations))
    assert report.monitoring.checkpoints[-1] == state.checkpoints[-1]


def test_a_guardrail_stop_keeps_its_breach_in_the_report_and_on_the_page() -> None:
    state = _stopped()
    assert [c.breaches for c in render(state).monitoring.checkpoints] == [[], ["error_rate"]]
    page = render_dashboard(dashboard_data(state, "guardrail_stop"))
    assert "error_rate</b> first breached at guardrail #30" in page


def test_the_rollback_rests_on_the_calls_that_went_through() -> None:
    assert "blocked" not in render(_rolled_back()).decision.receipts


def test_a_long_rationale_is_clipped_to_the_summary_limit() -> None:
    state = _started()
    state.decide(DecisionState.rollback, " ".join(["because"] * 150), [cite("manual.1")])
    summary = render(state).summary
    assert word_count(summary) == SUMMARY_MAX_WORDS and summary.endswith("…")


def test_dashboard_data_carries_the_whole_trail_and_the_typed_mde() -> None:
    state = _stopped()
    data = dashboard_data(state, "guardrail_stop")
    assert (data.exp_key, data.label, data.state, data.rationale) == (
        "ui-test-exp", "guardrail_stop", DecisionState.guardrail_stop, state.rationale)
    assert (data.primary_metric, data.arms, data.split, data.exposure_percent) == (
        "checkout_conv", ["control", "treatment"], {"control": 50.0, "treatment": 50.0}, 20.0)
    assert data.guardrails == [GuardrailLine(name="error_rate", direction="<", threshold=0.01)]
    assert (data.mde, data.mde_effect) == ("5% relative", Effect(kind=EffectKind.relative, value=5))
    assert data.checkpoints == state.checkpoints and data.receipts == state.receipts
    assert DashboardData.model_validate_json(data.model_dump_json()) == data


def test_an_absolute_mde_reaches_the_page_as_lines() -> None:
    state = _checked(_started(mde={"kind": "absolute", "value": 0.01}), hours=30, looks=1)
    page = render_dashboard(dashboard_data(state, "running"))
    assert ">+MDE 0.01</text>" in page and ">-MDE 0.01</text>" in page
