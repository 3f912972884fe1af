"""Simulated traffic for the embedded metrics store, configured by a spec's `simulation` block (demo and tests).

Experiment hour h is generated whole, from its own random streams, so the data depends only on the seed, the hour
and the flag as it stood when the hour was generated (the traffic model: docs/adapters.md). `Rows` is also the
store's bulk-load format, kept here so that the store, which drives the simulator, depends on this module.
"""

from __future__ import annotations

import asyncio
import math
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from abrollout.contracts.spec import EffectKind, Shift, Simulation
from abrollout.flags.evaluate import NOT_EXPOSED, FlagState, assign_many, variant_names
from abrollout.plan.planner import flag_key
from adapters.protocols import Registered

HOUR_SECONDS = 3600
EPOCH = datetime(2026, 1, 1, tzinfo=UTC)
"""The simulated calendar's hour 0: assignment never reads the wall clock."""

Strings = NDArray[np.object_]
Seconds = NDArray[np.int32]
Floats = NDArray[np.float64]
Indices = NDArray[np.int64]


@dataclass(frozen=True)
class Exposures:
    """Rows of the `exposures` table (one per exposed user), column by column."""

    user_id: Strings
    arm: Strings
    at_s: Seconds


@dataclass(frozen=True)
class MetricEvents:
    """Rows of the `metric_events` table, column by column; a user's value is the sum of their events."""

    user_id: Strings
    metric: Strings
    value: Floats
    at_s: Seconds


@dataclass(frozen=True)
class PrePeriod:
    """Rows of the `pre_period` table: at most one covariate value per user and metric."""

    user_id: Strings
    metric: Strings
    value: Floats


@dataclass(frozen=True)
class Rows:
    """A batch for the metrics store, all of one experiment (the store adds exp_key)."""

    exposures: Exposures
    metric_events: MetricEvents
    pre_period: PrePeriod


class FlagReader(Protocol):
    """The part of a `FlagProvider` the simulator needs: the flag as it is served now."""

    async def read(self, flag_key: str) -> FlagState | None: ...


class HourStore(Protocol):
    """Where simulated hours go: the store keeps the progress, so an hour is written exactly once."""

    def hours_done(self, exp_key: str) -> int: ...

    def write_hour(self, exp_key: str, hour: int, rows: Rows) -> int:
        """Write `rows` as hour `hour` and count it done, atomically, unless it is done already; the hours done."""
        ...


def hours_until(until_seconds: int) -> int:
    """Hours to generate so that every arrival up to `until_seconds` exists: whole hours, rounded up."""
    return -(-until_seconds // HOUR_SECONDS)


class Simulator:
    """Advances each experiment's simulated traffic, hour by hour, into a store."""

    def __init__(self, store: HourStore, flags: FlagReader) -> None:
        self._store = store
        self._flags = flags
        self._locks: dict[str, threading.Lock] = {}
        self._done: dict[str, int] = {}  # hours done as the store last said: a hint, the store decides

    async def advance(self, registered: Registered, until_seconds: int) -> None:
        """Generate the experiment's hours up to `until_seconds`, assigning by the flag as it is now (so ramp
        steps and rollbacks apply from the next hour generated). Does nothing without a `simulation` block."""
        simulation = registered.args.simulation
        if simulation is None:
            return
        exp_key = registered.args.exp_key
        flag = await self._flags.read(flag_key(exp_key))
        await asyncio.to_thread(self._advance, exp_key, simulation, flag, hours_until(until_seconds))

    def _advance(self, exp_key: str, simulation: Simulation, flag: FlagState | None, until_hour: int) -> None:
        # The store's transaction makes each hour exactly-once; the lock only spares concurrent checks of the
        # same experiment from generating the same hour and losing the write race. The progress is read from the
        # store once, then taken from what write_hour answers: if another writer moved it meanwhile, write_hour
        # writes nothing and answers the store's count, so a stale hint costs one hour generated in vain.
        with self._locks.setdefault(exp_key, threading.Lock()):
            done = self._done.get(exp_key)
            if done is None:
                done = self._store.hours_done(exp_key)
            while done < until_hour:
                done = self._store.write_hour(exp_key, done, simulate_hour(simulation, flag, done))
            self._done[exp_key] = done


def simulate_hour(simulation: Simulation, flag: FlagState | None, hour: int) -> Rows:
    """The rows of one experiment hour: a pure function of its arguments. Arrivals are Poisson; each user gets the
    id `u{h:05d}{i:06d}`, an arrival second uniform within the hour (when their events are logged) and `context`
    drawn by weight. `exposure_loss[arm]` drops that share of the arm's users, events included: logging that
    silently breaks, which shows up as a sample ratio mismatch."""
    rng = np.random.default_rng([simulation.seed, hour])
    n = int(rng.poisson(arrival_rate(simulation, hour)))
    user_ids = np.strings.add(f"u{hour:05d}", np.strings.zfill(np.arange(n).astype(np.str_), 6)).astype(object)
    at_s = (hour * HOUR_SECONDS + rng.integers(0, HOUR_SECONDS, n)).astype(np.int32)
    properties = {field: _categorical(rng, weights, n) for field, weights in simulation.context.items()}
    arm_names = variant_names(flag) if flag is not None else ()
    arm_index = _assign(flag, user_ids, properties, hour)
    # One loss rate per variant, and 1.0 last so that NOT_EXPOSED (-1) is never kept.
    loss = np.array([simulation.exposure_loss.get(arm, 0.0) for arm in arm_names] + [1.0])
    kept = np.flatnonzero(rng.random(n) >= loss[arm_index])
    arm_of_kept = arm_index[kept]
    users, seconds = user_ids[kept], at_s[kept]
    draws = {
        name: _draw(simulation, name, hour, n, kept, _arm_means(simulation, name, arm_names, hour)[arm_of_kept])
        for name in simulation.metrics
    }
    return Rows(
        exposures=Exposures(user_id=users, arm=np.array(arm_names, dtype=object)[arm_of_kept], at_s=seconds),
        metric_events=_events(users, seconds, draws),
        pre_period=_pre_period(users, draws),
    )


def arrival_rate(simulation: Simulation, hour: int) -> float:
    """Expected arrivals in the hour: `users_per_hour`, times 1 + 0.6 sin(2 pi (h mod 24 - 6) / 24) with
    `daily_cycle` (a trough of 0.4x at midnight, a peak of 1.6x at noon, the same daily mean)."""
    if not simulation.daily_cycle:
        return float(simulation.users_per_hour)
    return simulation.users_per_hour * (1 + 0.6 * math.sin(2 * math.pi * (hour % 24 - 6) / 24))


def arm_mean(simulation: Simulation, metric: str, arm: str, hour: int) -> float:
    """The metric's true mean for the arm in this hour: the baseline plus every shift that applies (effects always,
    degradations from their hour on; a relative shift v adds mean * v / 100, an absolute one v)."""
    base = simulation.metrics[metric].mean
    shifts = [simulation.effects[arm][metric]] if metric in simulation.effects.get(arm, {}) else []
    shifts += [d.shift for d in simulation.degradations if d.metric == metric and d.arm == arm and hour >= d.from_hour]
    return base + sum(_delta(base, shift) for shift in shifts)


def _arm_means(simulation: Simulation, metric: str, arm_names: tuple[str, ...], hour: int) -> Floats:
    return np.array([arm_mean(simulation, metric, arm, hour) for arm in arm_names], dtype=np.float64)


def _delta(base: float, shift: Shift) -> float:
    return base * shift.value / 100 if shift.kind is EffectKind.relative else shift.value


def _categorical(rng: np.random.Generator, weights: dict[str, float], n: int) -> list[str]:
    values = np.array(list(weights), dtype=object)
    p = np.array(list(weights.values()))
    chosen: list[str] = values[rng.choice(len(values), size=n, p=p / p.sum())].tolist()
    return chosen


def _assign(flag: FlagState | None, user_ids: Strings, properties: dict[str, list[str]], hour: int) -> Indices:
    """Variant indices from the flag provider's own evaluator, at EPOCH plus `hour` hours, so exposure rules,
    rollout and sticky bucketing are Unleash's; NOT_EXPOSED for everyone without a flag."""
    if flag is None:
        return np.full(len(user_ids), NOT_EXPOSED, dtype=np.int64)
    return assign_many(flag, user_ids.tolist(), properties, EPOCH + timedelta(hours=hour))


@dataclass(frozen=True)
class _Draw:
    """One metric for the kept users: which of them log an event, its value, and the pre-period covariate."""

    event_rows: Indices
    event_values: Floats
    pre: Floats | None


def _draw(simulation: Simulation, name: str, hour: int, n: int, kept: Indices, mean: Floats) -> _Draw:
    """Draw the noise for all n arrivals (so a user's noise does not depend on who else is exposed), then keep
    the logged users. The stream is keyed by the metric's name, byte by byte (never 0, so never the hour's own
    stream [seed, hour]): adding a metric to the spec does not move the others. Common random numbers: a user
    draws the same noise whatever their arm, which only shifts the mean. A Bernoulli metric (no `sd`) logs one
    event of 1 per converting user; a normal one every user's value, mean' + sd (rho z + sqrt(1 - rho^2) e), with
    the pre-period covariate mean + sd z when rho > 0."""
    rng = np.random.default_rng([simulation.seed, hour, *name.encode()])
    metric = simulation.metrics[name]
    if metric.sd is None:
        converted = np.flatnonzero(rng.random(n)[kept] < np.clip(mean, 0.0, 1.0))
        return _Draw(event_rows=converted, event_values=np.ones(converted.size), pre=None)
    z, e = rng.standard_normal(n)[kept], rng.standard_normal(n)[kept]
    rho = metric.pre_period_correlation
    values = mean + metric.sd * (rho * z + math.sqrt(1 - rho * rho) * e)
    pre = metric.mean + metric.sd * z if rho > 0 else None
    return _Draw(event_rows=np.arange(kept.size), event_values=values, pre=pre)


def _events(users: Strings, seconds: Seconds, draws: dict[str, _Draw]) -> MetricEvents:
    return MetricEvents(
        user_id=_strings([users[d.event_rows] for d in draws.values()]),
        metric=_strings([np.full(d.event_rows.size, name, dtype=object) for name, d in draws.items()]),
        value=np.concatenate([np.empty(0), *(d.event_values for d in draws.values())]),
        at_s=np.concatenate([np.empty(0, np.int32), *(seconds[d.event_rows] for d in draws.values())]),
    )


def _pre_period(users: Strings, draws: dict[str, _Draw]) -> PrePeriod:
    covariates = {name: d.pre for name, d in draws.items() if d.pre is not None}
    return PrePeriod(
        user_id=_strings([users for _ in covariates]),
        metric=_strings([np.full(users.size, name, dtype=object) for name in covariates]),
        value=np.concatenate([np.empty(0), *covariates.values()]),
    )


def _strings(parts: list[Strings]) -> Strings:
    return np.concatenate([np.empty(0, dtype=object), *parts])
