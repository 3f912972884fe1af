"""Several treatments against one control: Holm's step-down on top of the group-sequential boundaries.

Holm (1979, "A simple sequentially rejective multiple test procedure", Scand. J. Statist. 6:65-70) tests the
m hypotheses at alpha/m, and each rejection passes its alpha on to the rest (alpha/(m-1), ...). Maurer & Bretz
(2013, "Multiple testing in group sequential trials using graphical approaches", Statist. Biopharm. Res.
5:311-320) show that this carries over to group-sequential designs: give each hypothesis its own
alpha-spending boundary at its current level and, when one is rejected, recompute the others' boundaries at
the level they inherit (same spending function and information fractions); the familywise error stays at
alpha. We run that step-down afresh at each planned look. A rejection promotes or rolls back and ends the run,
and re-starting from alpha/m at the next look can only test at a lower level than Maurer & Bretz allow, so
the procedure is valid (and slightly conservative when a rejected arm is held back by the promote floor).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from abrollout.stats.boundaries import Spending, efficacy_bounds


@dataclass(frozen=True, slots=True)
class HolmOutcome:
    crossed: bool
    alpha: float
    bound: float


def holm_group_sequential(
    z: Sequence[float], fractions: Sequence[tuple[float, ...]], alpha: float, spending: Spending
) -> tuple[HolmOutcome, ...]:
    """One-sided step-down at the current (last) look of each comparison.

    z[i] is oriented so that large is the direction tested; fractions[i] are comparison i's information
    fractions at looks 1..k. Returns, per comparison, whether it crossed and the level and bound it was
    tested at last.
    """
    results: dict[int, HolmOutcome] = {}
    open_ = list(range(len(z)))
    while open_:
        level = alpha / len(open_)
        for i in open_:
            bound = efficacy_bounds(tuple(fractions[i]), level, spending)[-1]
            results[i] = HolmOutcome(z[i] >= bound, level, bound)
        still_open = [i for i in open_ if not results[i].crossed]
        if len(still_open) == len(open_):
            break
        open_ = still_open
    return tuple(results[i] for i in range(len(z)))


def holm_p_values(p: Sequence[float], alpha: float) -> tuple[tuple[bool, float], ...]:
    """Holm's step-down on p-values (used with always-valid p-values at unplanned looks).

    Returns (rejected, level it was compared with) per hypothesis, in input order.
    """
    order = sorted(range(len(p)), key=lambda i: p[i])
    result: dict[int, tuple[bool, float]] = {}
    still_rejecting = True
    for rank, i in enumerate(order):
        level = alpha / (len(p) - rank)
        still_rejecting = still_rejecting and p[i] <= level
        result[i] = (still_rejecting, level)
    return tuple(result[i] for i in range(len(p)))
