"""Power planning: the fixed-sample textbook formula at K = 1, the group-sequential inflation, reachability."""

from __future__ import annotations

import math

import pytest
from scipy.special import ndtri

from abrollout.contracts.spec import Effect
from abrollout.contracts.verdicts import PowerPlan
from abrollout.stats.boundaries import Spending
from abrollout.stats.power import plan_sample_size

OBF = Spending("lan_demets_obrien_fleming")


def test_one_look_is_the_textbook_fixed_sample_size() -> None:
    plan = plan_sample_size(
        baseline_mean=4.0,
        baseline_sd=1.0,
        mde=Effect(kind="absolute", value=0.05),
        alpha=0.05,
        power=0.8,
        split=(50, 50),
        expected_daily_users=None,
        max_days=14,
        spending=OBF,
        looks=1,
    )
    per_arm = 2 * (float(ndtri(0.975)) + float(ndtri(0.8))) ** 2 / 0.05**2  # 6279.1
    assert plan.inflation_factor == pytest.approx(1.0, abs=1e-6)
    assert plan.users_per_arm == (math.ceil(per_arm), math.ceil(per_arm))
    assert plan.days_needed is None and plan.reachable is None


def test_group_sequential_inflation_grows_with_early_spending() -> None:
    def inflation(spending: Spending) -> float:
        return plan_sample_size(
            baseline_mean=0.1,
            baseline_sd=None,
            mde=Effect(kind="relative", value=5),
            alpha=0.05,
            power=0.8,
            split=(50, 50),
            expected_daily_users=None,
            max_days=14,
            spending=spending,
            looks=14,
        ).inflation_factor

    obf, hsd, pocock = (
        inflation(OBF),
        inflation(Spending("hwang_shih_decani")),
        inflation(Spending("lan_demets_pocock")),
    )
    assert min(obf, hsd) > 1.0 and max(obf, hsd) < pocock < 1.35
    assert obf == pytest.approx(1.04, abs=0.01)


def _binary_plan(relative_mde: float) -> PowerPlan:
    return plan_sample_size(
        baseline_mean=0.10,
        baseline_sd=None,
        mde=Effect(kind="relative", value=relative_mde),
        alpha=0.05,
        power=0.8,
        split=(50, 50),
        expected_daily_users=20_000,
        max_days=14,
        spending=OBF,
        looks=14,
    )


def test_reachability_and_the_mde_detectable_at_the_cap() -> None:
    small = _binary_plan(1.0)
    assert small.reachable is False and small.days_needed is not None and small.days_needed > 14
    assert small.users_at_cap == 280_000
    assert small.detectable_mde_at_cap is not None and 1.0 < small.detectable_mde_at_cap < 5.0
    at_cap = _binary_plan(small.detectable_mde_at_cap)
    assert at_cap.days_needed == pytest.approx(14.0, rel=0.03)  # treatment variance at p + MDE differs a little
    assert _binary_plan(10.0).reachable is True


def test_more_treatments_need_more_users_per_comparison() -> None:
    def total(split: tuple[float, ...]) -> int:
        return plan_sample_size(
            baseline_mean=0.1,
            baseline_sd=None,
            mde=Effect(kind="relative", value=5),
            alpha=0.05,
            power=0.8,
            split=split,
            expected_daily_users=None,
            max_days=14,
            spending=OBF,
            looks=5,
        ).users_per_arm[0]

    assert total((34, 33, 33)) > total((50, 50))
