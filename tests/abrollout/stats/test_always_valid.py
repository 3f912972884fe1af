"""The normal-mixture tests: closed forms, tuning, and the anytime guarantee over many seeds."""

from __future__ import annotations

import math

import numpy as np
import pytest

from abrollout.stats import always_valid


def test_two_sided_threshold_is_where_the_evidence_reaches_one_over_alpha() -> None:
    for r in (0.5, 8.0, 300.0):
        z = float(always_valid.two_sided_threshold(r, 0.05))
        assert float(always_valid.log_evidence(z, r, one_sided=False)) == pytest.approx(math.log(20.0))
        assert float(always_valid.p_value(z, r, one_sided=False)) == pytest.approx(0.05)


def test_one_sided_mixture_rejects_sooner_than_the_two_sided_one_at_the_same_alpha() -> None:
    for r in (1.0, 8.0, 100.0):
        one = always_valid.one_sided_threshold(r, 0.05)
        assert float(always_valid.log_evidence(one, r, one_sided=True)) == pytest.approx(math.log(20.0))
        assert one < float(always_valid.two_sided_threshold(r, 0.05))


def test_optimal_ratio_solves_howards_fixed_point() -> None:
    r = always_valid.optimal_ratio(0.05, one_sided=False)
    assert r == pytest.approx(2 * math.log(20) + math.log1p(r))
    nearby = [float(always_valid.two_sided_threshold(r * f, 0.05)) for f in (0.8, 1.0, 1.25)]
    assert nearby[1] == min(nearby)
    one = always_valid.optimal_ratio(0.05, one_sided=True)
    assert always_valid.one_sided_threshold(one, 0.05) <= always_valid.one_sided_threshold(one * 1.3, 0.05)


def test_tuned_mixture_is_close_to_tau_equals_mde() -> None:
    tau2 = always_valid.tuned_mixture_variance(0.005, 0.05, 0.8, one_sided=False)
    assert math.sqrt(tau2) == pytest.approx(0.005, rel=0.05)


def test_a_a_streams_cross_at_most_alpha_of_the_time_whenever_we_look() -> None:
    rng = np.random.default_rng(7)
    runs, looks = 4000, 500
    s = np.cumsum(rng.standard_normal((runs, looks)), axis=1)  # score of a null Brownian motion
    n = np.arange(1, looks + 1, dtype=np.float64)
    z = s / np.sqrt(n)
    r = 0.05 * n  # tau^2 / se^2 grows with the sample
    two = (np.asarray(always_valid.log_evidence(z, r, one_sided=False)) >= math.log(20)).any(axis=1).mean()
    one = (np.asarray(always_valid.log_evidence(z, r, one_sided=True)) >= math.log(20)).any(axis=1).mean()
    naive = (np.abs(z) >= 1.96).any(axis=1).mean()
    assert two <= 0.05 and one <= 0.05 + 2 * math.sqrt(0.05 * 0.95 / runs)
    assert naive > 0.3
