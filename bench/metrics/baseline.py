"""The baseline: the window's rows pulled into Python and aggregated there per user and arm, in exact micro-unit
ints, as the generator's SQL defines the statistics. Every engine's answer must equal it."""

from __future__ import annotations

import gc
import math
import time
from collections.abc import Callable, Iterable
from typing import Any

from bench.metrics.data import EXP, METRICS
from bench.metrics.exact import Exact

Fetch = Callable[[str], Iterable[tuple[Any, ...]]]
"""The rows of a query, streamed into Python (each engine's own client)."""

SCALE = 1_000_000


def queries(until: int) -> tuple[str, str, str]:
    """The exposures and events of the window and the covariates, in SQL every engine reads the same."""
    metrics = ", ".join(f"'{name}'" for name in METRICS)
    return (f"SELECT user_id, arm, at_s FROM exposures WHERE exp_key = '{EXP}' AND at_s <= {until}",
            f"SELECT user_id, metric, value, at_s FROM metric_events WHERE exp_key = '{EXP}' AND at_s <= {until} "
            f"AND metric IN ({metrics})",
            f"SELECT user_id, metric, value FROM pre_period WHERE exp_key = '{EXP}' AND metric IN ({metrics})")


def baseline(fetch: Fetch, until: int) -> Exact:
    """The answer from the raw rows: a user's arm is the least of their exposures' arms, each metric's value the
    sum of their events' micro-units, the covariate the sum of their pre-period rows' (when they have any)."""
    exposures, events, covariates = queries(until)
    arm_of: dict[str, str] = {}
    latest: dict[str, int] = {}
    for user, arm, at_s in fetch(exposures):
        if user not in arm_of or arm < arm_of[user]:
            arm_of[user] = arm
        latest[""] = max(latest.get("", at_s), at_s)
    values: dict[str, dict[str, int]] = {name: {} for name in METRICS}
    for user, metric, value, at_s in fetch(events):
        sums = values[metric]
        sums[user] = sums.get(user, 0) + _micro(value)
        latest[metric] = max(latest.get(metric, at_s), at_s)
    pre: dict[str, dict[str, int]] = {name: {} for name in METRICS}
    rows: dict[str, int] = {}
    for user, metric, value in fetch(covariates):
        pre[metric][user] = pre[metric].get(user, 0) + _micro(value)
        rows[metric] = rows.get(metric, 0) + 1
    found: Exact = {("latest", metric): at for metric, at in latest.items()}
    found |= {("covariate_rows", metric): count for metric, count in rows.items()}
    for user, arm in arm_of.items():
        _add(found, ("n", arm), 1)
        for metric in METRICS:
            y = values[metric].get(user, 0)
            _add(found, ("sum", arm, metric), y)
            _add(found, ("sum_sq", arm, metric), y * y)
            x = pre[metric].get(user)
            if x is not None:
                _add(found, ("pre_n", arm, metric), 1)
                _add(found, ("pre_sum", arm, metric), x)
                _add(found, ("pre_sum_sq", arm, metric), x * x)
                _add(found, ("pre_sum_product", arm, metric), x * y)
    return {key: value for key, value in found.items() if value}


def _add(found: Exact, key: tuple[str, ...], value: int) -> None:
    found[key] = found.get(key, 0) + value


def _micro(value: float) -> int:
    """A value in whole micro-units as every engine computes it: floor(v * 1e6 + 0.5) in IEEE doubles."""
    return math.floor(value * SCALE + 0.5)


def timed_baseline(fetch: Fetch, until: int) -> tuple[float, Exact]:
    """One run, with the garbage collector off (it would otherwise rescan the millions of live dict entries again
    and again, and double the time at 10M rows: a fair baseline does not pay for that)."""
    gc.collect()
    gc.disable()
    try:
        started = time.perf_counter()
        result = baseline(fetch, until)
        return time.perf_counter() - started, result
    finally:
        gc.enable()

