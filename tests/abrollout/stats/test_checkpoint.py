"""evaluate_check end to end: planned and unplanned looks, guardrails, SRM, CUPED, A/B/n, no data."""

from __future__ import annotations

import numpy as np
import pytest

from abrollout.contracts.spec import Effect, Guardrail
from abrollout.contracts.verdicts import CheckInput, CheckVerdict, MetricStats
from abrollout.stats.checkpoint import evaluate_check
from tests.abrollout.stats.conftest import from_values, make_plan, proportion

DAY = 48_000  # users per arm per daily look at 2,000/hour


def analysis(look: int, control: MetricStats, treatment: MetricStats, **extra: object) -> CheckInput:
    sizes = tuple({"control": DAY * k, "treatment": DAY * k} for k in range(1, look))
    return CheckInput(
        kind="analysis",
        look=look,
        primary={"control": control, "treatment": treatment},
        prior_look_sizes=sizes,
        **extra,
    )


def test_a_clear_lift_crosses_at_a_planned_look_with_estimates_and_intervals() -> None:
    n = 3 * DAY
    verdict = evaluate_check(make_plan(), analysis(3, proportion(n, 14_400), proportion(n, 15_600)))
    (arm,) = verdict.arms
    assert verdict.test == "group_sequential" and not verdict.no_data
    assert arm.diff == pytest.approx(1200 / n) and arm.rel_diff == pytest.approx(1200 / 14_400)
    assert arm.information_fraction == pytest.approx(3 / 14)
    assert arm.efficacy_bound is not None and arm.z > arm.efficacy_bound and arm.crossed_efficacy
    assert not arm.crossed_harm
    assert arm.diff_ci is not None and arm.diff_ci.low < arm.diff < arm.diff_ci.high
    # repeated CI: estimate +- boundary x se
    assert (arm.diff_ci.high - arm.diff) == pytest.approx(arm.efficacy_bound * arm.diff / arm.z)
    assert arm.rel_diff_ci is not None and arm.rel_diff_ci.low > 0
    assert arm.always_valid_p_value < 0.05


def test_swapping_arms_flips_the_sign() -> None:
    a, b = proportion(DAY, 4_800), proportion(DAY, 5_000)
    forward = evaluate_check(make_plan(), analysis(1, a, b)).arms[0]
    backward = evaluate_check(make_plan(), analysis(1, b, a)).arms[0]
    assert backward.z == pytest.approx(-forward.z) and backward.diff == pytest.approx(-forward.diff)


def test_a_decrease_goal_turns_a_drop_into_efficacy() -> None:
    n = 3 * DAY
    plan = make_plan(goal="decrease")
    (arm,) = evaluate_check(plan, analysis(3, proportion(n, 15_600), proportion(n, 14_400))).arms
    assert arm.z < 0 and arm.crossed_efficacy and not arm.crossed_harm


def test_empty_arm_is_no_data() -> None:
    verdict = evaluate_check(make_plan(), analysis(1, proportion(0, 0), proportion(10, 1)))
    assert verdict.no_data and verdict.arms == () and "control" in verdict.no_data_reason


def test_look_beyond_the_plan_is_refused() -> None:
    with pytest.raises(ValueError):
        evaluate_check(make_plan(planned_looks=2), analysis(3, proportion(DAY, 10), proportion(DAY, 10)))


@pytest.mark.parametrize(("observed", "breached"), [(2.6, True), (2.4, False), (2.5, True)])
def test_threshold_direction_is_the_condition_that_must_hold(observed: float, breached: bool) -> None:
    data = CheckInput(kind="guardrail", guardrail_values={"latency_p95": {"treatment": observed}})
    (guardrail,) = evaluate_check(make_plan(), data).guardrails
    assert guardrail.threshold_breached is breached and guardrail.evaluated


def test_control_only_breach_is_ignored_unless_the_scope_is_all_arms() -> None:
    data = CheckInput(kind="guardrail", guardrail_values={"latency_p95": {"control": 3.0, "treatment": 2.0}})
    assert not evaluate_check(make_plan(), data).guardrails[0].breached
    everyone = (Guardrail(name="latency_p95", threshold=2.5, direction="<", scope="all_arms"),)
    assert evaluate_check(make_plan(guardrails=everyone), data).guardrails[0].breached


def test_non_inferiority_detects_a_harm_beyond_the_margin() -> None:
    guard = (Guardrail(name="revenue", threshold=0.0, direction=">", margin=Effect(kind="relative", value=1)),)
    rng = np.random.default_rng(11)
    n = 40_000

    def check(drop: float) -> CheckVerdict:
        stats = {
            "control": from_values(rng.normal(4.0, 1.0, n)),
            "treatment": from_values(rng.normal(4.0 - drop, 1.0, n)),
        }
        return evaluate_check(
            make_plan(guardrails=guard), CheckInput(kind="guardrail", guardrail_stats={"revenue": stats})
        )

    harmed = check(0.2).guardrails[0]
    assert harmed.harm_detected and not harmed.threshold_breached
    (test,) = harmed.non_inferiority
    assert test.harm == pytest.approx(0.2, abs=0.03) and test.margin == pytest.approx(0.04, abs=0.002)
    assert test.z > test.bound and test.p_value <= 0.05
    fine = check(0.0).guardrails[0]
    assert not fine.breached and fine.non_inferiority[0].p_value == pytest.approx(1.0)


def test_srm_is_recorded_on_every_check() -> None:
    data = CheckInput(kind="guardrail", assignments={"control": 5000, "treatment": 5400})
    verdict = evaluate_check(make_plan(), data)
    assert verdict.srm is not None and verdict.srm.flagged and not verdict.no_data


def test_guardrail_check_with_nothing_at_all_is_no_data() -> None:
    assert evaluate_check(make_plan(), CheckInput(kind="guardrail")).no_data


def test_stale_data_decides_nothing_but_harm_in_it_still_counts() -> None:
    n = 3 * DAY
    crossing = analysis(3, proportion(n, 14_400), proportion(n, 15_600), data_age_seconds=5 * 3600)
    stale = evaluate_check(make_plan(), crossing)
    assert stale.no_data and "stale data: the newest event is 5.0 h older" in stale.no_data_reason
    assert stale.arms and stale.arms[0].crossed_efficacy, "the numbers are recorded, the rule decides nothing"
    fresh = evaluate_check(make_plan(), crossing.model_copy(update={"data_age_seconds": 3 * 3600}))
    assert not fresh.no_data
    srm = CheckInput(kind="guardrail", assignments={"control": 5000, "treatment": 5400}, data_age_seconds=86_400)
    late = evaluate_check(make_plan(), srm)
    assert late.no_data and late.srm is not None and late.srm.flagged


def test_status_look_uses_the_always_valid_test() -> None:
    n = DAY
    data = CheckInput(kind="status", primary={"control": proportion(n, 4_800), "treatment": proportion(n, 5_300)})
    (arm,) = evaluate_check(make_plan(), data).arms
    assert arm.efficacy_bound is None and arm.information_fraction is None
    assert arm.diff_ci == arm.always_valid_diff_ci
    assert arm.crossed_efficacy is (arm.always_valid_p_value <= 0.05)


def test_cuped_variance_reduction_is_reported() -> None:
    rng = np.random.default_rng(12)
    stats = {}
    for name, lift in (("control", 0.0), ("treatment", 0.05)):
        x = rng.normal(0.0, 1.0, 30_000)
        y = 4.0 + lift + 0.8 * x + 0.6 * rng.normal(0.0, 1.0, 30_000)
        stats[name] = from_values(y, covariate=x)
    plan = make_plan(metric_kind="mean")
    data = CheckInput(kind="analysis", look=1, primary=stats)
    (arm,) = evaluate_check(plan, data).arms
    assert arm.cuped_variance_reduction == pytest.approx(0.64, abs=0.02)


def test_abn_holm_promotes_through_step_down() -> None:
    plan = make_plan(
        arms=("control", "a", "b"),
        split={"control": 40.0, "a": 30.0, "b": 30.0},
        planned_looks=1,
        planned_max_users=None,
    )
    data = CheckInput(
        kind="analysis",
        look=1,
        primary={"control": proportion(40_000, 4_000), "a": proportion(30_000, 3_400), "b": proportion(30_000, 3_147)},
    )
    a, b = evaluate_check(plan, data).arms
    assert a.crossed_efficacy and a.efficacy_alpha == pytest.approx(0.0125)
    # b: z ~ 2.0, between the alpha/2 (2.24) and alpha (1.96) one-look bounds: rejected only after a is
    assert 1.96 < b.z < 2.24 and b.crossed_efficacy and b.efficacy_alpha == pytest.approx(0.025)


def test_verdict_round_trips_through_json() -> None:
    verdict = evaluate_check(make_plan(), analysis(1, proportion(DAY, 4_800), proportion(DAY, 4_900)))
    assert CheckVerdict.model_validate_json(verdict.model_dump_json()) == verdict


def test_ratio_primary_uses_the_delta_method_and_needs_denominators() -> None:
    rng = np.random.default_rng(13)
    stats = {}
    for name, scale in (("control", 1.0), ("treatment", 1.1)):
        sessions = (rng.poisson(3.0, 20_000) + 1).astype(np.float64)
        revenue = sessions * rng.gamma(2.0, 0.5 * scale, 20_000)
        plain = from_values(revenue)
        stats[name] = plain.model_copy(
            update={
                "denom_sum": float(sessions.sum()),
                "denom_sum_sq": float((sessions**2).sum()),
                "denom_sum_product": float((sessions * revenue).sum()),
            }
        )
    plan = make_plan(metric_kind="ratio", planned_looks=1)
    (arm,) = evaluate_check(plan, CheckInput(kind="analysis", look=1, primary=stats)).arms
    assert arm.control_mean == pytest.approx(stats["control"].sum / float(stats["control"].denom_sum or 1))
    assert arm.rel_diff == pytest.approx(0.1, abs=0.03) and arm.crossed_efficacy
    with pytest.raises(ValueError, match="denominator"):
        evaluate_check(plan, CheckInput(kind="analysis", look=1, primary={a: from_values(np.ones(5)) for a in stats}))
