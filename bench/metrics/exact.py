"""The answer as exact integers, whoever computed it: the rollup, the full statement or the Python baseline. Two
answers agree when these are equal, key for key (floats in `MetricStats` would hide the last digits of sums of
squares past 2**53)."""

from __future__ import annotations

from abrollout.warehouse.results import TERMS, ArmSums

Key = tuple[str, ...]
Exact = dict[Key, int]

COUNTED = TERMS[:5]
"""The sums a check reads for a mean metric with a covariate: sum and sum_sq, the CUPED terms."""


def exact(sums: ArmSums) -> Exact:
    """Users per arm, each (arm, metric)'s covariate count and sums, the latest times and the covariate rows, in
    micro-units; zeros left out, so an absent term and a zero sum are the same answer."""
    found: Exact = {("n", arm): n for arm, n in sums.n.items()}
    found |= {("pre_n", arm, metric): n for (arm, metric), n in sums.pre_n.items()}
    found |= {(term, arm, metric): value for (arm, metric), terms in sums.sums.items()
              for term, value in terms.items()}
    found |= {("latest", metric or ""): at for metric, at in sums.latest.items()}
    found |= {("covariate_rows", metric): rows for metric, rows in sums.covariate_rows.items()}
    return {key: value for key, value in found.items() if value}


def difference(ours: Exact, theirs: Exact, limit: int = 3) -> str:
    """The first keys where two answers differ, for a failure message."""
    keys = sorted(key for key in ours.keys() | theirs.keys() if ours.get(key) != theirs.get(key))
    shown = "; ".join(f"{'/'.join(key)}: {ours.get(key, 0)} vs {theirs.get(key, 0)}" for key in keys[:limit])
    return f"{len(keys)} differ ({shown})"
