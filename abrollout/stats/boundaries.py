"""Group-sequential boundaries from an alpha-spending function, for arbitrary information fractions.

The schedule fixes when we look, not how many users arrive by each look: spending alpha as a function of the
information fraction (Lan & DeMets 1983) gives each look's boundary from the looks so far, computed by Jennison &
Turnbull's recursive integration (the scheme gsDesign uses). Design notes: docs/statistics.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from numpy.typing import NDArray
from scipy.optimize import brentq
from scipy.special import ndtr, ndtri

from abrollout.contracts.verdicts import SpendingName, spending_label, spending_shape

_GRID_R = 18  # points per standard deviation in Jennison & Turnbull's grid (gsDesign's default)
_GRID_R_MAX = 120  # resolution cap for looks that add a sliver of information (see _resolution)
_NEGLIGIBLE = 1e-15  # alpha increments below this are not spent: the boundary is +inf at that look


@dataclass(frozen=True, slots=True)
class Spending:
    """An alpha-spending function alpha(t): cumulative one-sided type I error allowed by information t.

    - lan_demets_obrien_fleming: 2 - 2 Phi(z_{1-alpha/2} / sqrt(t)) (Lan & DeMets 1983). Spends almost nothing
      early, so it barely costs power, but with hundreds of looks it cannot stop in the first day or two.
    - lan_demets_pocock: alpha log(1 + (e - 1) t) (Lan & DeMets 1983); near-constant boundaries, costly at the
      end.
    - power: alpha t^rho (Kim & DeMets 1987, Biometrika 74:149-154); Spotify's Confidence uses rho = 2.
    - hwang_shih_decani: alpha (1 - exp(-gamma t)) / (1 - exp(-gamma)) (Hwang, Shih & DeCani 1990, Stat. Med.
      9:1439-1445); gamma = -4 is gsDesign's default efficacy spending. It spends a little early (stops big
      effects within hours) and almost nothing in the middle, so its final boundary stays near OBF's.

    `parameter` is rho (power family, default 2) or gamma (Hwang-Shih-DeCani, default -4); others ignore it.
    """

    name: SpendingName = "lan_demets_obrien_fleming"
    parameter: float | None = None

    @property
    def shape(self) -> float:
        return spending_shape(self.name, self.parameter)

    @property
    def label(self) -> str:
        return spending_label(self.name, self.parameter)

    def spent(self, alpha: float, t: float) -> float:
        """Cumulative alpha spent by information fraction t (t is clipped to [0, 1])."""
        t = min(max(t, 0.0), 1.0)
        if t == 0.0:
            return 0.0
        if self.name == "lan_demets_obrien_fleming":
            return float(2.0 * ndtr(-ndtri(1.0 - alpha / 2.0) / math.sqrt(t)))
        if self.name == "lan_demets_pocock":
            return alpha * math.log1p((math.e - 1.0) * t)
        if self.name == "power":
            return float(alpha * t**self.shape)
        gamma = self.shape
        if gamma == 0.0:
            return alpha * t
        return alpha * math.expm1(-gamma * t) / math.expm1(-gamma)


def information_fractions(sizes: tuple[float, ...], planned_max: float | None, planned_looks: int) -> tuple[float, ...]:
    """Information fractions t_1..t_k for looks 1..k (k = len(sizes)) of a K-look plan.

    t_k = sizes[k] / planned_max (the observed effective sample size against the planned maximum), made
    non-decreasing, capped at 1 before the final look, and exactly 1 at the final planned look so that it
    spends what is left. Without a planned maximum the calendar fraction k/K is used (the schedule is
    pre-registered, so this is still a valid, traffic-independent choice; it just ignores traffic).
    """
    if planned_looks < 1 or len(sizes) > planned_looks:
        raise ValueError(f"{len(sizes)} looks do not fit a plan of {planned_looks}")
    fractions: list[float] = []
    previous = 0.0
    for look, size in enumerate(sizes, start=1):
        if look == planned_looks:
            t = 1.0
        elif planned_max is None or planned_max <= 0:
            t = look / planned_looks
        else:
            t = min(max(size / planned_max, previous), 1.0)
        fractions.append(t)
        previous = t
    return tuple(fractions)


def _resolution(t: float, next_t: float | None) -> int:
    """Grid resolution r for the density at information t that will be integrated against the next look.

    The transition kernel to the next look has standard deviation sqrt((next_t - t) / t) on the z-scale; J&T's
    r = 18 resolves it only when looks are a few percent of information apart. With hundreds of hourly looks
    the kernel is narrower than the grid, so r grows with the kernel (3 points per kernel sd keeps K = 336
    bounds within 1e-4 of a converged grid), capped for looks that add almost nothing.
    """
    if next_t is None or next_t <= t:
        return _GRID_R
    return min(_GRID_R_MAX, max(_GRID_R, math.ceil(3.0 * math.sqrt(t / (next_t - t)))))


@lru_cache(maxsize=64)
def _grid_offsets(r: int) -> NDArray[np.float64]:
    """Jennison & Turnbull (2000) eq. 19.1: 6r-1 points, dense within 3 sd of the mean, log-spaced tails."""
    i = np.arange(1, 6 * r, dtype=np.float64)
    inner = -3.0 + 3.0 * (i - r) / (2.0 * r)
    low = -3.0 - 4.0 * np.log(r / np.minimum(i, r))
    high = 3.0 + 4.0 * np.log(r / np.maximum(6 * r - i, 1.0))
    return np.where(i < r, low, np.where(i <= 5 * r, inner, high))


def _simpson_grid(mean: float, upper: float, r: int) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Grid points and Simpson weights on (-inf, upper) around `mean` (Jennison & Turnbull section 19.2)."""
    x = mean + _grid_offsets(r)
    if upper <= x[0]:
        empty = np.empty(0)
        return empty, empty
    if upper < x[-1]:
        x = np.append(x[x < upper], upper)
    z = np.empty(2 * len(x) - 1)
    z[0::2] = x
    z[1::2] = (x[:-1] + x[1:]) / 2.0
    width = np.diff(x)
    w = np.zeros_like(z)
    w[0:-1:2] += width / 6.0
    w[2::2] += width / 6.0
    w[1::2] = 4.0 * width / 6.0
    return z, w


def _normal_pdf(x: NDArray[np.float64]) -> NDArray[np.float64]:
    out: NDArray[np.float64] = np.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)
    return out


@dataclass(frozen=True, slots=True)
class _Stage:
    """Sub-density of Z_k on the continuation region, times Simpson weights (so integrals are sums)."""

    t: float
    z: NDArray[np.float64]
    h: NDArray[np.float64]


def _first_stage(t: float, bound: float, drift: float, r: int) -> _Stage:
    z, w = _simpson_grid(drift * math.sqrt(t), bound, r)
    return _Stage(t, z, w * _normal_pdf(z - drift * math.sqrt(t)))


def _crossing(prev: _Stage, t: float, bound: float, drift: float) -> float:
    """P(first crossing of `bound` at information t | continuation so far), as an unconditional mass."""
    if math.isinf(bound):
        return 0.0
    delta = t - prev.t
    x = (bound * math.sqrt(t) - prev.z * math.sqrt(prev.t) - drift * delta) / math.sqrt(delta)
    return float(np.dot(prev.h, ndtr(-x)))


def _next_stage(prev: _Stage, t: float, bound: float, drift: float, r: int) -> _Stage:
    delta = t - prev.t
    z, w = _simpson_grid(drift * math.sqrt(t), bound, r)
    if len(z) == 0 or len(prev.z) == 0:
        return _Stage(t, z, np.zeros_like(z))
    arg = (z[:, None] * math.sqrt(t) - prev.z[None, :] * math.sqrt(prev.t) - drift * delta) / math.sqrt(delta)
    density = _normal_pdf(arg) @ prev.h * math.sqrt(t / delta)
    return _Stage(t, z, w * density)


def _advance(prev: _Stage | None, t: float, bound: float, drift: float, next_t: float | None) -> _Stage:
    """Extend the recursion by one look; a look that adds no information leaves the density unchanged.

    `next_t` (the following look's fraction, if any) only sets the grid resolution; the density and thus
    every boundary up to this look depend on t_1..t_k alone.
    """
    r = _resolution(t, next_t)
    if prev is None:
        return _first_stage(t, bound, drift, r)
    if t <= prev.t:
        return prev
    return _next_stage(prev, t, bound, drift, r)


def _solve_bound(prev: _Stage | None, t: float, target: float) -> float:
    """The boundary b with P_0(first crossing at this look) = target."""
    if target <= _NEGLIGIBLE or (prev is not None and t <= prev.t):
        return math.inf
    upper = float(-ndtri(target))  # the unconditional tail spends `target`: the root is at or below it
    if prev is None:
        return upper

    def excess(b: float) -> float:
        return _crossing(prev, t, b, 0.0) - target

    while excess(upper) > 0.0:  # quadrature error on a tiny target can put the root just above
        upper += 0.25
    lower = upper - 1.0
    while excess(lower) < 0.0:
        lower -= 1.0
    return float(brentq(excess, lower, upper, xtol=1e-10))


def _following(fractions: tuple[float, ...], k: int) -> float | None:
    return fractions[k + 1] if k + 1 < len(fractions) else None


@lru_cache(maxsize=512)
def efficacy_bounds(fractions: tuple[float, ...], alpha: float, spending: Spending) -> tuple[float, ...]:
    """One-sided upper z-boundaries b_1..b_k at level `alpha` for the given information fractions.

    The spend at look k is alpha(t_k) - alpha(t_{k-1}); when t_k = 1 (the final planned look) that is
    everything left. A look with no new information (or a negligible increment) gets +inf: it cannot reject.
    Cached: the activity recomputes the same prefix at every checkpoint and the bench reuses schedules.
    """
    bounds: list[float] = []
    stage: _Stage | None = None
    spent_before = 0.0
    for k, t in enumerate(fractions):
        spent = spending.spent(alpha, t)
        bound = _solve_bound(stage, t, spent - spent_before)
        bounds.append(bound)
        stage = _advance(stage, t, bound, 0.0, _following(fractions, k))
        spent_before = spent if not math.isinf(bound) else spent_before
    return tuple(bounds)


def crossing_probabilities(fractions: tuple[float, ...], bounds: tuple[float, ...], drift: float) -> tuple[float, ...]:
    """P(first upward crossing at look k) when E[Z_k] = drift sqrt(t_k) (drift = theta sqrt(I_max)).

    With drift 0 these are the alpha increments actually spent; with drift > 0 their sum is the power.
    """
    probabilities: list[float] = []
    stage: _Stage | None = None
    for k, (t, bound) in enumerate(zip(fractions, bounds, strict=True)):
        if stage is None:
            probabilities.append(float(ndtr(drift * math.sqrt(t) - bound)))
        elif t <= stage.t:
            probabilities.append(0.0)
        else:
            probabilities.append(_crossing(stage, t, bound, drift))
        stage = _advance(stage, t, bound, drift, _following(fractions, k))
    return tuple(probabilities)


def drift_for_power(fractions: tuple[float, ...], bounds: tuple[float, ...], power: float) -> float:
    """The drift (z-scale effect at full information) at which the boundaries are crossed with `power`."""

    def shortfall(drift: float) -> float:
        return sum(crossing_probabilities(fractions, bounds, drift)) - power

    return float(brentq(shortfall, 0.0, 20.0, xtol=1e-8))


def equally_spaced(looks: int) -> tuple[float, ...]:
    """t_k = k/K, the planning assumption for constant traffic."""
    return tuple((k + 1) / looks for k in range(looks))
