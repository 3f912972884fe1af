"""Fixed-sample estimates against scipy, the delta method against resampling, CUPED, and merging."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats as sps

from abrollout.stats.effects import compare, two_sided_p
from abrollout.stats.sufficient import JointStats, SufficientStats, cuped_summaries, mean_summary, ratio_summary


def test_mean_z_is_welchs_statistic() -> None:
    rng = np.random.default_rng(1)
    treatment, control = rng.normal(4.1, 1.3, 5000), rng.normal(4.0, 1.0, 4000)
    result = compare(mean_summary(SufficientStats.of(treatment)), mean_summary(SufficientStats.of(control)))
    welch = sps.ttest_ind(treatment, control, equal_var=False)
    assert float(result.z) == pytest.approx(welch.statistic, rel=1e-10)
    assert float(two_sided_p(result.z)) == pytest.approx(welch.pvalue, abs=2e-4)  # normal vs t with df ~ 9000


def test_two_proportion_z_matches_scipy() -> None:
    n_t, x_t, n_c, x_c = 20_000, 2_150, 20_000, 2_000
    t = np.r_[np.ones(x_t), np.zeros(n_t - x_t)]
    c = np.r_[np.ones(x_c), np.zeros(n_c - x_c)]
    result = compare(mean_summary(SufficientStats.of(t)), mean_summary(SufficientStats.of(c)))
    assert float(result.z) == pytest.approx(sps.ttest_ind(t, c, equal_var=False).statistic, rel=1e-10)
    pooled = sps.chi2_contingency([[x_t, n_t - x_t], [x_c, n_c - x_c]], correction=False)
    assert float(result.z) ** 2 == pytest.approx(pooled.statistic, rel=2e-3)  # unpooled vs pooled variance
    assert float(result.diff) == pytest.approx(0.0075)
    assert float(result.rel_diff) == pytest.approx(0.075)


def test_relative_standard_error_matches_the_sampling_spread() -> None:
    rng = np.random.default_rng(2)
    n, runs = 2000, 4000
    t = SufficientStats(float(n), rng.binomial(n, 0.12, runs).astype(float), 0.0)
    c = SufficientStats(float(n), rng.binomial(n, 0.10, runs).astype(float), 0.0)
    t = SufficientStats(t.n, t.sum, t.sum)
    c = SufficientStats(c.n, c.sum, c.sum)
    result = compare(mean_summary(t), mean_summary(c))
    assert float(np.mean(result.rel_se)) == pytest.approx(float(np.std(result.rel_diff)), rel=0.05)


def test_ratio_metric_delta_method() -> None:
    rng = np.random.default_rng(3)
    sessions = (rng.poisson(3.0, 3000) + 1.0).astype(np.float64)
    revenue = sessions * rng.gamma(2.0, 0.5, 3000)
    summary = ratio_summary(JointStats.of(revenue, sessions))
    ratio = revenue.sum() / sessions.sum()
    known = np.var(revenue - ratio * sessions, ddof=1) / (len(revenue) * sessions.mean() ** 2)
    assert float(summary.mean) == pytest.approx(ratio)
    assert float(summary.var_mean) == pytest.approx(known, rel=1e-9)
    picks = rng.integers(0, len(revenue), size=(2000, len(revenue)))
    boot = revenue[picks].sum(axis=1) / sessions[picks].sum(axis=1)
    assert float(np.sqrt(summary.var_mean)) == pytest.approx(float(np.std(boot)), rel=0.08)


def _cuped_reduction(correlation: float, seed: int) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    arms = []
    for lift in (0.0, 0.1):
        x = rng.normal(0.0, 1.0, 20_000)
        y = 4.0 + lift + correlation * x + np.sqrt(1 - correlation**2) * rng.normal(0.0, 1.0, 20_000)
        arms.append(JointStats.of(y, x))
    adjusted, raw = cuped_summaries(tuple(arms))
    cuped, plain = compare(adjusted[1], adjusted[0]), compare(raw[1], raw[0])
    return 1.0 - float(cuped.se) ** 2 / float(plain.se) ** 2, float(cuped.diff)


def test_cuped_reduces_variance_by_about_rho_squared_and_stays_unbiased() -> None:
    reduction, diff = _cuped_reduction(0.7, seed=4)
    assert reduction == pytest.approx(0.49, abs=0.02)
    assert diff == pytest.approx(0.1, abs=0.02)


def test_cuped_does_nothing_with_an_uncorrelated_covariate() -> None:
    reduction, _ = _cuped_reduction(0.0, seed=5)
    assert abs(reduction) < 0.005


finite = st.floats(-1e3, 1e3, allow_nan=False)


@settings(max_examples=60, deadline=None)
@given(st.lists(finite, min_size=2, max_size=40), st.lists(finite, min_size=2, max_size=40))
def test_merging_equals_computing_on_the_concatenation(a: list[float], b: list[float]) -> None:
    merged = SufficientStats.of(np.array(a)) + SufficientStats.of(np.array(b))
    whole = SufficientStats.of(np.array(a + b))
    assert merged.n == whole.n
    assert float(merged.mean) == pytest.approx(float(whole.mean), abs=1e-9)
    assert float(merged.variance) == pytest.approx(float(whole.variance), rel=1e-6, abs=1e-6)
    pairs = JointStats.of(np.array(a[:2]), np.array(a[:2])) + JointStats.of(np.array(b[:2]), np.array(b[:2]))
    assert float(pairs.sum_xy) == pytest.approx(sum(v * v for v in a[:2] + b[:2]), rel=1e-9, abs=1e-9)
