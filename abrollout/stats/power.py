"""Power planning: users and days to detect the MDE with the group-sequential design, before the run starts.

A group-sequential test spends some alpha early, so it needs the fixed horizon's information times the inflation
factor (drift_K / (z_{1-a} + z_power))^2 (Jennison & Turnbull 2000, sec. 2.7 and 7.2). Notes: docs/statistics.md.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache
from typing import Literal

from scipy.special import ndtri

from abrollout.contracts.spec import Effect, EffectKind
from abrollout.contracts.verdicts import PowerPlan
from abrollout.stats.boundaries import Spending, drift_for_power, efficacy_bounds, equally_spaced

PowerArgument = Literal["baseline_mean", "baseline_sd", "mde"]


class PowerInputError(ValueError):
    """Inputs that admit no finite, positive sample size: `argument` names the input to change, `found` what it
    led to and `fix` what to write instead, so a caller can point at the field that holds it."""

    def __init__(self, argument: PowerArgument, found: str, fix: str) -> None:
        super().__init__(f"{argument}: {found}; {fix}")
        self.argument = argument
        self.found = found
        self.fix = fix


@lru_cache(maxsize=64)
def design_drift(looks: int, side_alpha: float, power: float, spending: Spending) -> float:
    """drift_K for equally spaced looks (the planning assumption); cached because `validate` asks often."""
    fractions = equally_spaced(looks)
    return drift_for_power(fractions, efficacy_bounds(fractions, side_alpha, spending), power)


def _unit_variance(mean: float, sd: float | None) -> float:
    if sd is None:
        if not 0.0 < mean < 1.0:
            raise PowerInputError("baseline_mean", f"a proportion's baseline of {mean:g}",
                                  "a rate strictly between 0 and 1")
        return mean * (1.0 - mean)
    variance = sd * sd
    if not 0.0 < variance < math.inf:
        raise PowerInputError("baseline_sd", f"baseline_sd {sd:g}, whose square (the variance) is {variance:g}",
                              "a per-user standard deviation in the metric's units whose square is a finite, "
                              "positive number (from about 1e-150 to 1e150)")
    return variance


def plan_sample_size(
    *,
    baseline_mean: float,
    baseline_sd: float | None,
    mde: Effect,
    alpha: float,
    power: float,
    split: Sequence[float],
    expected_daily_users: float | None,
    max_days: float,
    spending: Spending,
    looks: int,
) -> PowerPlan:
    """Users per arm and days needed to detect `mde` (two-sided `alpha`, `power`) with K = `looks`.

    `baseline_sd` None means a proportion (variance p(1-p), evaluated at the worse of p +- MDE for the
    treatment). `split` holds the percent per arm, control first. `expected_daily_users` counts users entering
    the experiment (all arms) per day; without it the days, reachability and MDE at the cap are None. With
    several treatments each comparison is planned at alpha / (2 m), Holm's first step (conservative), and the
    smallest treatment arm sets the size.
    """
    if len(split) < 2:
        raise ValueError("a split needs a control and at least one treatment")
    delta = _mde_in_units(mde, baseline_mean)
    var_control = _unit_variance(baseline_mean, baseline_sd)
    var_treatment = var_control if baseline_sd is not None else _shifted_variance(var_control, baseline_mean, delta)
    side_alpha = alpha / 2.0 / (len(split) - 1)
    drift = design_drift(looks, side_alpha, power, spending)
    inflation = (drift / float(ndtri(1.0 - side_alpha) + ndtri(power))) ** 2
    total_share = float(sum(split))
    shares = [s / total_share for s in split]
    smallest_treatment = min(shares[1:])
    squared = delta * delta  # underflows to 0 for an MDE below about 1e-154
    total = (var_control / shares[0] + var_treatment / smallest_treatment) * drift * drift / squared \
        if squared > 0.0 else math.inf
    per_arm = _users_per_arm(total, shares, mde, var_control, baseline_sd)
    if expected_daily_users is None or expected_daily_users <= 0:
        return PowerPlan(users_per_arm=per_arm, total_users=math.ceil(total), inflation_factor=inflation,
                         days_needed=None, users_at_cap=None, reachable=None, detectable_mde_at_cap=None)
    at_cap = expected_daily_users * max_days
    detectable = drift * math.sqrt((var_control / shares[0] + var_control / smallest_treatment) / at_cap)
    return PowerPlan(users_per_arm=per_arm, total_users=math.ceil(total), inflation_factor=inflation,
                     days_needed=total / expected_daily_users, users_at_cap=math.floor(at_cap),
                     reachable=total <= at_cap, detectable_mde_at_cap=_in_kind(detectable, mde, baseline_mean))


def _mde_in_units(mde: Effect, baseline_mean: float) -> float:
    delta = mde.in_units(baseline_mean)
    if not 0.0 < delta < math.inf:
        raise PowerInputError("mde", f"{mde.describe()} is {delta:g} in metric units",
                              "an MDE that is a positive number in metric units (an absolute one if the baseline "
                              "is near 0)")
    return delta


def _shifted_variance(variance: float, mean: float, delta: float) -> float:
    """A proportion's variance in the treatment: the worse of p(1-p) at the baseline and at p +- MDE, so the plan
    holds whichever way the effect goes."""
    shifted = [p for p in (mean - delta, mean + delta) if 0.0 < p < 1.0]
    return max([variance, *(p * (1.0 - p) for p in shifted)])


def _users_per_arm(total: float, shares: list[float], mde: Effect, variance: float, sd: float | None
                   ) -> tuple[int, ...]:
    """`total` split by `shares`, rounded up; an error naming the MDE where the total is infinite or zero."""
    units = "" if sd is None else ", or a baseline_sd in the same units as the MDE"
    if not math.isfinite(total):
        raise PowerInputError("mde", f"{mde.describe()} needs an infinite sample against a variance of "
                              f"{variance:g}", f"a larger MDE{units}")
    per_arm = tuple(math.ceil(total * s) for s in shares)
    if min(per_arm) < 1:
        raise PowerInputError("mde", f"{mde.describe()} needs no users at all against a variance of "
                              f"{variance:g}", f"a smaller MDE{units}")
    return per_arm


def _in_kind(detectable: float, mde: Effect, baseline_mean: float) -> float:
    """An effect in metric units as the MDE states it: percent of the baseline for a relative MDE."""
    return detectable / abs(baseline_mean) * 100.0 if mde.kind is EffectKind.relative else detectable
