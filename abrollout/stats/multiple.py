"""Several treatments against one control: Holm's step-down on top of the group-sequential boundaries.

Each rejection passes its alpha on to the rest; with a spending boundary per hypothesis the familywise error stays
at alpha in a group-sequential design (Holm 1979; Maurer & Bretz 2013). Design notes: docs/statistics.md.
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
    tested at last. Run afresh at each planned look: a rejection ends the run, so starting again from alpha/m
    can only test at a lower level than Maurer & Bretz (2013) allow.
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
