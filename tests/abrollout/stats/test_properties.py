"""Properties over many seeds: sign symmetry, and the A/A error rate of the whole group-sequential test."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from abrollout.contracts.verdicts import CheckInput
from abrollout.stats.boundaries import Spending, efficacy_bounds, information_fractions
from abrollout.stats.checkpoint import evaluate_check
from abrollout.stats.effects import compare
from abrollout.stats.sufficient import SufficientStats, mean_summary
from tests.abrollout.stats.conftest import make_plan, proportion

counts = st.integers(min_value=2, max_value=5_000)


@settings(max_examples=40, deadline=None)
@given(counts, counts, st.floats(0.01, 0.99), st.floats(0.01, 0.99))
def test_swapping_arms_flips_the_estimate_and_z(n_a: int, n_b: int, p_a: float, p_b: float) -> None:
    a, b = proportion(n_a, max(1, round(n_a * p_a))), proportion(n_b, max(1, round(n_b * p_b)))
    plan = make_plan(planned_looks=1)
    forward = evaluate_check(plan, CheckInput(kind="analysis", look=1, primary={"control": a, "treatment": b}))
    backward = evaluate_check(plan, CheckInput(kind="analysis", look=1, primary={"control": b, "treatment": a}))
    if forward.no_data:
        assert backward.no_data
        return
    assert math.isclose(forward.arms[0].z, -backward.arms[0].z, rel_tol=1e-9, abs_tol=1e-12)
    assert math.isclose(forward.arms[0].diff, -backward.arms[0].diff, rel_tol=1e-9, abs_tol=1e-15)
    assert forward.arms[0].crossed_efficacy == backward.arms[0].crossed_harm


def test_a_a_streams_at_14_looks_reject_at_most_alpha() -> None:
    """2,000 seeded A/A experiments with uneven traffic, both sides, vectorised like the bench."""
    rng = np.random.default_rng(2024)
    runs, looks = 2_000, 14
    users = rng.integers(20_000, 60_000, size=looks)  # per arm per day, varies by day
    n = np.cumsum(users).astype(float)
    arms = []
    for _ in range(2):
        sums = np.cumsum(rng.binomial(users, 0.1, size=(runs, looks)), axis=1).astype(float)
        arms.append(mean_summary(SufficientStats(n, sums, sums)))
    z = np.asarray(compare(arms[1], arms[0]).z)
    planned = float(users.mean() * looks / 2)  # the plan expected average traffic
    fractions = information_fractions(tuple(n / 2), planned, looks)
    bounds = np.array(efficacy_bounds(fractions, 0.025, Spending("lan_demets_obrien_fleming")))
    rejected = (np.abs(z) >= bounds).any(axis=1).mean()
    assert rejected <= 0.05 + 2 * math.sqrt(0.05 * 0.95 / runs)
    assert (np.abs(z) >= 1.96).any(axis=1).mean() > 0.12  # the naive test at every look does not hold alpha
