"""Always-valid tests: normal-mixture sequential probability ratio tests and confidence sequences.

Unplanned looks (`status`) and the hourly guardrail harm tests have no number of looks fixed in advance, so their
guarantee must hold at any data-dependent stopping time; the mixture is tuned from the pre-registered MDE.
Formulas and references (Robbins 1970, Johari et al. 2017, Howard et al. 2021): docs/statistics.md.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
from scipy.optimize import brentq, minimize_scalar
from scipy.special import log_ndtr, ndtri

from abrollout.stats.sufficient import Values

_LOG2 = math.log(2.0)


def log_evidence(z: Values, r: Values, *, one_sided: bool) -> Values:
    """log of the mixture likelihood ratio; `one_sided` tests z > 0 (the harmful direction, by convention)."""
    shrink = r / (1.0 + r)
    log_lr: Values = 0.5 * z * z * shrink - 0.5 * np.log1p(r)
    if one_sided:
        log_lr = log_lr + _LOG2 + log_ndtr(z * np.sqrt(shrink))
    return log_lr


def p_value(z: Values, r: Values, *, one_sided: bool) -> Values:
    """Always-valid p-value min(1, 1/Lambda): P(ever <= alpha) <= alpha under the null."""
    p: Values = np.minimum(1.0, np.exp(-log_evidence(z, r, one_sided=one_sided)))
    return p


def two_sided_threshold(r: Values, alpha: float) -> Values:
    """|z| at which the two-sided mixture reaches 1/alpha; the confidence-sequence half-width in se units."""
    t: Values = np.sqrt((1.0 + r) / r * (2.0 * math.log(1.0 / alpha) + np.log1p(r)))
    return t


def one_sided_threshold(r: float, alpha: float) -> float:
    """z at which the one-sided (half-normal) mixture reaches 1/alpha."""
    target = math.log(1.0 / alpha)
    upper = float(two_sided_threshold(r, alpha))  # the one-sided mixture is at least as large there
    return float(brentq(lambda z: float(log_evidence(z, r, one_sided=True)) - target, 0.0, upper, xtol=1e-10))


@lru_cache(maxsize=32)
def optimal_ratio(alpha: float, one_sided: bool) -> float:
    """r* = tau^2 / se^2 at which the rejection threshold is smallest (Howard et al. 2021, sec. 3.5)."""
    if not one_sided:
        level = 2.0 * math.log(1.0 / alpha)
        r = level
        for _ in range(100):  # r = L + log(1 + r) is a contraction; converges in a few dozen steps
            r = level + math.log1p(r)
        return r
    found = minimize_scalar(
        lambda log_r: one_sided_threshold(math.exp(log_r), alpha), bounds=(-3.0, 8.0), method="bounded"
    )
    return math.exp(float(found.x))


def tuned_mixture_variance(effect: float, alpha: float, power: float, *, one_sided: bool) -> float:
    """tau^2 such that the test is tightest where a fixed test detects `effect` with `power`."""
    side_alpha = alpha if one_sided else alpha / 2.0
    detect_se = effect / (float(ndtri(1.0 - side_alpha)) + float(ndtri(power)))
    return optimal_ratio(alpha, one_sided) * detect_se * detect_se
