"""Always-valid tests: normal-mixture sequential probability ratio tests and confidence sequences.

For unplanned looks (manual `status` queries) and the hourly guardrail harm tests, nobody fixes the number
of looks in advance, so the guarantee must hold at any data-dependent stopping time. The mixture likelihood
ratio of Robbins (1970, "Statistical methods related to the law of the iterated logarithm", Ann. Math.
Statist. 41:1397-1409) is a nonnegative martingale under the null, so by Ville's inequality it exceeds 1/alpha
with probability at most alpha, ever. Johari, Koomen, Pekelis & Walsh (2017, "Peeking at A/B tests", KDD;
Optimizely's mSPRT) use it for A/B tests; Howard, Ramdas, McAuliffe & Sekhon (2021, "Time-uniform,
nonparametric, nonasymptotic confidence sequences", Ann. Statist. 49:1055-1080) give the matching confidence
sequence and its tuning; GrowthBook's sequential intervals are that confidence sequence.

Everything is written on the z-scale. With an estimate of variance se^2 and a N(0, tau^2) mixture over the
effect, let r = tau^2 / se^2 (it grows with the sample). Then

- two-sided: log Lambda = z^2 r / (2 (1 + r)) - log(1 + r) / 2;
- one-sided (half-normal mixture over harmful effects only, Howard et al. 2021 sec. 3.4 style):
  log M = log 2 - log(1 + r) / 2 + z^2 r / (2 (1 + r)) + log Phi(z sqrt(r / (1 + r))),
  which rejects earlier than the two-sided mixture for effects in the tested direction.

Tuning from the pre-registered MDE: the boundary is tightest when r = r*, where r* minimises the rejection z
(r* = L + log(1 + r*) with L = 2 log(1/alpha) for the two-sided mixture, about 8.2 at alpha = 0.05). We put
that point at the information where a fixed test would detect the MDE with the planned power:
tau^2 = r* (MDE / (z_{1-alpha'} + z_power))^2. That is within a few percent of Johari et al.'s tau = MDE; the
tuning is what it is because an always-valid test pays for its anytime guarantee with power at every other
sample size (the reason the primary decision uses the group-sequential boundary at the planned looks).
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
