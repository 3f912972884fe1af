"""Sufficient statistics per arm, and the per-arm summaries (mean, variance of the mean) every test uses.

Metrics arrive as sums (n, sum y, sum y^2, ...) so a warehouse aggregates them in one pass and periods merge with
`+`; the same formulas run on floats (one check) and numpy arrays (the bench), so nothing branches on values.
Ratio metrics (delta method) and CUPED, with references: docs/statistics.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from abrollout.contracts.verdicts import MetricStats

Values = float | NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class SufficientStats:
    """n, sum and sum of squares of one variable; frozen and mergeable (`a + b` pools two batches)."""

    n: Values
    sum: Values
    sum_sq: Values

    def __add__(self, other: SufficientStats) -> SufficientStats:
        return SufficientStats(self.n + other.n, self.sum + other.sum, self.sum_sq + other.sum_sq)

    @classmethod
    def of(cls, values: NDArray[np.float64]) -> SufficientStats:
        """From raw values (tests and examples)."""
        return cls(float(len(values)), float(np.sum(values)), float(np.sum(values * values)))

    @property
    def mean(self) -> Values:
        return self.sum / self.n

    @property
    def variance(self) -> Values:
        """Sample variance (n - 1 denominator), as Welch's test uses."""
        return (self.sum_sq - self.sum * self.sum / self.n) / (self.n - 1)


@dataclass(frozen=True, slots=True)
class JointStats:
    """Two variables of the same users and their cross product: y with a CUPED covariate or a ratio denominator."""

    y: SufficientStats
    x: SufficientStats
    sum_xy: Values

    def __add__(self, other: JointStats) -> JointStats:
        return JointStats(self.y + other.y, self.x + other.x, self.sum_xy + other.sum_xy)

    @classmethod
    def of(cls, y: NDArray[np.float64], x: NDArray[np.float64]) -> JointStats:
        return cls(SufficientStats.of(y), SufficientStats.of(x), float(np.sum(x * y)))

    @property
    def covariance(self) -> Values:
        return (self.sum_xy - self.x.sum * self.y.sum / self.y.n) / (self.y.n - 1)


@dataclass(frozen=True, slots=True)
class ArmSummary:
    """What the two-sample tests need from one arm: an estimate and the variance of that estimate."""

    n: Values
    mean: Values
    var_mean: Values


def mean_summary(stats: SufficientStats) -> ArmSummary:
    return ArmSummary(stats.n, stats.mean, stats.variance / stats.n)


def ratio_summary(stats: JointStats) -> ArmSummary:
    """sum(y)/sum(d) with delta-method variance (Deng et al. 2018, eq. 3): var(y - R d) / (n mean(d)^2)."""
    d_mean = stats.x.mean
    ratio = stats.y.sum / stats.x.sum
    var_linearised = stats.y.variance - 2.0 * ratio * stats.covariance + ratio * ratio * stats.x.variance
    return ArmSummary(stats.y.n, ratio, var_linearised / (stats.y.n * d_mean * d_mean))


def cuped_summaries(arms: tuple[JointStats, ...]) -> tuple[tuple[ArmSummary, ...], tuple[ArmSummary, ...]]:
    """CUPED-adjusted and raw summaries per arm, with theta pooled over all arms (Deng et al. 2013, sec. 3.3).

    Pooling theta keeps the adjustment identical for every arm, so the difference of adjusted means is
    diff(y) - theta diff(x): unbiased because x is measured before assignment.
    """
    pooled = arms[0]
    for arm in arms[1:]:
        pooled = pooled + arm
    x_variance = pooled.x.variance
    theta = np.where(x_variance > 0, pooled.covariance / np.where(x_variance > 0, x_variance, 1.0), 0.0)
    x_mean = pooled.x.mean
    adjusted = tuple(
        ArmSummary(
            arm.y.n,
            arm.y.mean - theta * (arm.x.mean - x_mean),
            (arm.y.variance - 2.0 * theta * arm.covariance + theta * theta * arm.x.variance) / arm.y.n,
        )
        for arm in arms
    )
    return adjusted, tuple(mean_summary(arm.y) for arm in arms)


def _joint(stats: MetricStats, denominator: bool) -> JointStats:
    y = SufficientStats(float(stats.n), stats.sum, stats.sum_sq)
    if denominator:
        x = SufficientStats(float(stats.n), stats.denom_sum or 0.0, stats.denom_sum_sq or 0.0)
        return JointStats(y, x, stats.denom_sum_product or 0.0)
    x = SufficientStats(float(stats.n), stats.pre_sum or 0.0, stats.pre_sum_sq or 0.0)
    return JointStats(y, x, stats.pre_sum_product or 0.0)


@dataclass(frozen=True, slots=True)
class MetricSummaries:
    """Per-arm summaries of one metric, control first, and the raw ones when CUPED adjusted them."""

    arms: tuple[ArmSummary, ...]
    unadjusted: tuple[ArmSummary, ...] | None


def summarise(by_arm: Mapping[str, MetricStats], arms: tuple[str, ...], *, ratio: bool) -> MetricSummaries:
    """Summaries for `arms` (control first): ratio metrics by the delta method, CUPED when every arm has a
    covariate, plain means otherwise. CUPED is not applied to ratio metrics (it would need the covariate's
    own delta-method terms, Deng et al. 2018 sec. 4; out of scope here)."""
    stats = [by_arm[a] for a in arms]
    if ratio:
        if not all(s.is_ratio for s in stats):
            raise ValueError("a ratio metric needs denominator sums in every arm")
        return MetricSummaries(tuple(ratio_summary(_joint(s, denominator=True)) for s in stats), None)
    if all(s.has_covariate for s in stats):
        adjusted, raw = cuped_summaries(tuple(_joint(s, denominator=False) for s in stats))
        return MetricSummaries(adjusted, raw)
    return MetricSummaries(tuple(mean_summary(_joint(s, denominator=False).y) for s in stats), None)
