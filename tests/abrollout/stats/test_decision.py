"""The decision rule: every state reachable, guardrail-first, floor, no data, rationales and citations."""

from __future__ import annotations

import pytest

from abrollout.contracts.spec import Effect, Guardrail
from abrollout.contracts.verdicts import AnalysisPlan, CheckInput, MetricStats
from abrollout.run.decision import Decision, decide
from abrollout.stats.checkpoint import evaluate_check
from tests.abrollout.stats.conftest import make_plan, proportion

DAY = 48_000


def check(plan: AnalysisPlan, control: int, treatment: int, look: int = 3, **extra: object) -> CheckInput:
    n = DAY * look
    return CheckInput(
        kind="analysis",
        look=look,
        primary={"control": proportion(n, control), "treatment": proportion(n, treatment)},
        prior_look_sizes=tuple({"control": DAY * k, "treatment": DAY * k} for k in range(1, look)),
        **extra,
    )


def run(plan: AnalysisPlan, data: CheckInput, at_cap: bool = False) -> Decision:
    return decide(plan, evaluate_check(plan, data), at_cap=at_cap)


def test_promote_with_rationale_and_citations() -> None:
    plan = make_plan()
    decision = run(plan, check(plan, 14_400, 15_600))
    assert decision.state == "promote" and decision.arm == "treatment"
    assert "signup_conv treatment +8.3%" in decision.rationale
    assert f"{plan.spending_label} boundary" in decision.rationale
    assert "look 3/14" in decision.rationale and "repeated CI" in decision.rationale
    assert "exp_policy.v5#decision.2" in decision.citations and "metric=signup_conv" in decision.citations
    assert any(c.startswith("boundary=") for c in decision.citations)


def test_a_guardrail_breach_wins_over_a_significant_lift() -> None:
    plan = make_plan()
    data = check(plan, 14_400, 15_600, guardrail_values={"latency_p95": {"treatment": 2.6}})
    decision = run(plan, data)
    assert decision.state == "guardrail_stop"
    assert "latency_p95 = 2.6 on treatment breaks the must-hold condition < 2.5" in decision.rationale
    assert "exp_policy.v5#guardrail.2" in decision.citations and "threshold=< 2.5" in decision.citations


def test_srm_stops_the_run() -> None:
    plan = make_plan()
    decision = run(plan, check(plan, 14_400, 14_500, assignments={"control": 5000, "treatment": 5400}))
    assert decision.state == "guardrail_stop" and "sample ratio mismatch" in decision.rationale
    assert "exp_policy.v5#srm.1" in decision.citations


def test_non_inferiority_breach_cites_guardrail_3() -> None:
    guard = (Guardrail(name="conv_guard", threshold=0.0, direction=">", margin=Effect(kind="relative", value=1)),)
    plan = make_plan(guardrails=guard)
    n = 100_000
    stats = {"control": proportion(n, 10_000), "treatment": proportion(n, 9_000)}
    decision = run(plan, CheckInput(kind="guardrail", guardrail_stats={"conv_guard": stats}))
    assert decision.state == "guardrail_stop" and "exp_policy.v5#guardrail.3" in decision.citations


def test_significant_harm_rolls_back() -> None:
    plan = make_plan()
    decision = run(plan, check(plan, 15_600, 14_400))
    assert decision.state == "rollback" and decision.arm == "treatment"
    assert "against the hypothesised increase" in decision.rationale
    assert "exp_policy.v5#decision.3" in decision.citations


def test_crossing_below_the_floor_keeps_running() -> None:
    plan = make_plan(mde=Effect(kind="relative", value=20))  # floor: +10%
    decision = run(plan, check(plan, 14_400, 15_600))  # +8.3%, crossed
    assert decision.state == "running" and "below the promote floor 10%" in decision.rationale


def test_cap_without_a_decision_is_inconclusive() -> None:
    plan = make_plan(planned_looks=3)
    decision = run(plan, check(plan, 14_400, 14_450), at_cap=True)
    assert decision.state == "inconclusive" and "exp_policy.v5#decision.4" in decision.citations
    assert "duration cap" in decision.rationale


def test_still_running_says_where_it_stands() -> None:
    plan = make_plan()
    decision = run(plan, check(plan, 14_400, 14_450))
    assert decision.state == "running" and f"short of the {plan.spending_label} boundary" in decision.rationale


def test_no_data_decides_nothing_and_at_the_cap_ends_inconclusive() -> None:
    plan = make_plan()
    data = CheckInput(kind="analysis", look=1, primary={"control": MetricStats(n=0, sum=0, sum_sq=0)})
    decision = run(plan, data)
    assert decision.state == "running" and decision.citations[0] == "exp_policy.v5#data.1"
    at_cap = run(plan, data, at_cap=True)
    assert at_cap.state == "inconclusive" and "no usable data" in at_cap.rationale
    assert at_cap.citations[:2] == ("exp_policy.v5#data.1", "exp_policy.v5#decision.4")


def test_status_look_never_decides_on_the_primary_and_states_the_valid_conclusion() -> None:
    plan = make_plan()
    data = CheckInput(kind="status", primary={"control": proportion(DAY, 4_000), "treatment": proportion(DAY, 6_000)})
    decision = run(plan, data)
    assert decision.state == "running"
    assert "always-valid CI" in decision.rationale and "valid conclusion" in decision.rationale


@pytest.mark.parametrize("spending", ["power", "hwang_shih_decani", "lan_demets_pocock"])
def test_spending_function_is_a_design_parameter(spending: str) -> None:
    plan = make_plan(spending=spending)
    assert run(plan, check(plan, 14_400, 15_600)).state == "promote"
