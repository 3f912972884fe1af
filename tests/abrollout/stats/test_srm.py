"""SRM: hand-computed chi-square cases, checked against scipy.stats.chisquare."""

from __future__ import annotations

import pytest
from scipy import stats as sps

from abrollout.stats.srm import srm_test

EVEN = {"control": 50.0, "treatment": 50.0}


def test_balanced_counts_are_not_flagged() -> None:
    result = srm_test({"control": 5000, "treatment": 5000}, EVEN, 0.001)
    assert result is not None
    assert (result.chi2, result.p_value, result.flagged) == (0.0, 1.0, False)


def test_5000_vs_5300_is_suspicious_but_not_flagged() -> None:
    # expected 5150 each: chi2 = 2 * 150^2 / 5150 = 8.738, p = 0.0031 > 0.001
    result = srm_test({"control": 5000, "treatment": 5300}, EVEN, 0.001)
    assert result is not None
    assert result.chi2 == pytest.approx(2 * 150**2 / 5150)
    assert result.p_value == pytest.approx(0.003117, abs=1e-5)
    assert result.p_value == pytest.approx(sps.chisquare([5000, 5300]).pvalue)
    assert not result.flagged


def test_5000_vs_5400_is_flagged() -> None:
    # expected 5200 each: chi2 = 2 * 200^2 / 5200 = 15.385, p = 8.8e-5 < 0.001
    result = srm_test({"control": 5000, "treatment": 5400}, EVEN, 0.001)
    assert result is not None
    assert result.chi2 == pytest.approx(15.3846, abs=1e-4)
    assert result.p_value == pytest.approx(8.77e-5, rel=0.01)
    assert result.flagged


def test_uneven_split_with_three_arms() -> None:
    split = {"control": 50.0, "a": 25.0, "b": 25.0}
    observed = {"control": 10_000, "a": 5_200, "b": 4_800}
    result = srm_test(observed, split, 0.001)
    reference = sps.chisquare([10_000, 5_200, 4_800], f_exp=[10_000, 5_000, 5_000])
    assert result is not None
    assert result.df == 2
    assert result.chi2 == pytest.approx(reference.statistic)
    assert result.p_value == pytest.approx(reference.pvalue)


def test_nobody_assigned_is_not_a_test() -> None:
    assert srm_test({"control": 0, "treatment": 0}, EVEN, 0.001) is None
