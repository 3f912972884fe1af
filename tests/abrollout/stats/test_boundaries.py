"""Group-sequential boundaries: gsDesign's published values, exact spending, arbitrary information fractions."""

from __future__ import annotations

import itertools
import math
import time

import pytest
from scipy.special import ndtri

from abrollout.stats.boundaries import (
    Spending,
    crossing_probabilities,
    efficacy_bounds,
    equally_spaced,
    information_fractions,
)

OBF = Spending("lan_demets_obrien_fleming")


def test_obrien_fleming_k5_matches_gsdesign() -> None:
    # gsDesign(k=5, test.type=1, alpha=0.025, sfu=sfLDOF)$upper$bound
    bounds = efficacy_bounds(equally_spaced(5), 0.025, OBF)
    assert [round(b, 3) for b in bounds] == [4.877, 3.357, 2.680, 2.290, 2.031]


@pytest.mark.parametrize(
    "spending",
    [OBF, Spending("lan_demets_pocock"), Spending("power", 2.0), Spending("power", 3.0), Spending("hwang_shih_decani")],
)
@pytest.mark.parametrize("fractions", [equally_spaced(5), (0.1, 0.35, 0.4, 0.8, 1.0), equally_spaced(40)])
def test_crossing_probabilities_spend_exactly_the_spending_function(
    spending: Spending, fractions: tuple[float, ...]
) -> None:
    bounds = efficacy_bounds(fractions, 0.025, spending)
    spent = crossing_probabilities(fractions, bounds, 0.0)
    cumulative = 0.0
    for t, increment in zip(fractions, spent, strict=True):
        cumulative += increment
        assert cumulative == pytest.approx(spending.spent(0.025, t), abs=1e-7)
    assert sum(spent) == pytest.approx(0.025, abs=1e-9)  # the final look spends what is left


def test_first_look_is_the_normal_quantile_of_its_spend() -> None:
    bounds = efficacy_bounds((0.3, 1.0), 0.025, OBF)
    assert bounds[0] == pytest.approx(float(-ndtri(OBF.spent(0.025, 0.3))), abs=1e-12)


def test_pocock_bounds_are_nearly_flat_and_obf_decreasing() -> None:
    pocock = efficacy_bounds(equally_spaced(5), 0.025, Spending("lan_demets_pocock"))
    assert max(pocock) - min(pocock) < 0.06
    assert pocock[0] == pytest.approx(2.438, abs=1e-3)  # gsDesign sfLDPocock, k=5
    obf = efficacy_bounds(equally_spaced(14), 0.025, OBF)
    assert all(a > b for a, b in itertools.pairwise(obf))


def test_bounds_at_look_k_depend_only_on_the_first_k_fractions() -> None:
    fractions = (0.05, 0.2, 0.21, 0.5, 0.77, 1.0)
    full = efficacy_bounds(fractions, 0.025, OBF)
    for k in range(1, len(fractions)):
        assert efficacy_bounds(fractions[:k], 0.025, OBF) == pytest.approx(full[:k], abs=1e-12)


def test_power_family_rho_is_a_parameter() -> None:
    assert Spending("power", 2.0).spent(0.025, 0.5) == pytest.approx(0.025 * 0.25)
    assert Spending("power", 3.0).spent(0.025, 0.5) == pytest.approx(0.025 * 0.125)
    assert Spending("hwang_shih_decani", 0.0).spent(0.025, 0.5) == pytest.approx(0.0125)


def test_information_fractions_from_observed_sizes() -> None:
    # traffic ahead of plan: capped at 1 before the final look, the final look is 1
    assert information_fractions((100.0, 250.0, 400.0), 300.0, 5) == pytest.approx((1 / 3, 5 / 6, 1.0))
    # behind plan: the final planned look still spends everything
    assert information_fractions((50.0, 100.0, 150.0), 300.0, 3) == pytest.approx((1 / 6, 1 / 3, 1.0))
    # no planned maximum: calendar fraction
    assert information_fractions((7.0, 9.0), None, 4) == pytest.approx((0.25, 0.5))
    with pytest.raises(ValueError):
        information_fractions((1.0, 2.0, 3.0), 10.0, 2)


def test_a_look_without_new_information_cannot_reject_and_spends_nothing() -> None:
    fractions = information_fractions((100.0, 100.0, 300.0), 300.0, 3)
    bounds = efficacy_bounds(fractions, 0.025, OBF)
    assert math.isinf(bounds[1])
    assert sum(crossing_probabilities(fractions, bounds, 0.0)) == pytest.approx(0.025, abs=1e-9)


def test_many_looks_are_fast_and_accurate() -> None:
    efficacy_bounds.cache_clear()
    started = time.thread_time()  # CPU time, so a busy machine does not fail it
    bounds = efficacy_bounds(equally_spaced(100), 0.025, OBF)
    assert time.thread_time() - started < 1.0
    assert sum(crossing_probabilities(equally_spaced(100), bounds, 0.0)) == pytest.approx(0.025, abs=1e-9)
    # with more looks the final boundary rises toward the continuous-monitoring limit z_{1-alpha/2} = 2.24
    assert efficacy_bounds(equally_spaced(5), 0.025, OBF)[-1] < bounds[-1] < 2.2414
