"""The bench's rows: one seeded numpy draw per size, loaded as a pipeline loads them (one `loaded_at` per simulated
hour), and the hours after it, one fixed-size batch per check.

Every user has one exposure (uniform over the 14 days) and on average 3.6 metric events at the exposure time plus
an exponential delay; ids are time-ordered like the simulator's (`u{hour:05d}{rank:06d}`). The data is the same
whichever engine reads it, so every engine's integers must be the same.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from adapters.simulator import Exposures, MetricEvents, PrePeriod, Rows

EXP = "bench-exp"
EARLIER = "earlier-exp"  # an experiment that ran before, a tenth the size: the tables are shared
ARMS = ("control", "treatment")
METRICS = ("sessions", "revenue", "converted")
EVENTS_PER_USER = {"sessions": 2.0, "revenue": 1.5, "converted": 0.1}
COVARIATE = "revenue"
DAYS = 14
HOURS = DAYS * 24
HOUR = 3600
HORIZON = HOURS * HOUR

CHECK_USERS = 650  # one hour of traffic at 1M rows: 217k users over 336 hours
CHECK_EVENTS = 2_300  # and 783k events over 336 hours
CHECK_LATE = 30  # events that arrive late: an old time, loaded now
RECENT = 86_400  # a check's events are of users exposed in the last day

Ints = NDArray[np.int32]
Floats = NDArray[np.float64]
Codes = NDArray[np.int8]


@dataclass(frozen=True)
class Data:
    """The rows as numpy columns: users by index, sorted by exposure time; events sorted by time."""

    exposure_hour: Ints
    exposure_rank: Ints  # the user's index within the exposure hour
    arm: Codes
    exposure_at: Ints
    event_user: Ints
    event_metric: Codes
    event_value: Floats
    event_at: Ints
    pre_value: Floats

    @property
    def users(self) -> int:
        return len(self.arm)

    @property
    def rows(self) -> int:
        """Exposure and event rows (pre-period rows are not counted)."""
        return self.users + len(self.event_user)


def generate(rows: int, seed: int) -> Data:
    """`rows` exposure and event rows (exactly), deterministic for the seed; compact dtypes (100M rows fit in a few
    GB), drawn as the previous bench drew them."""
    rng = np.random.default_rng([seed, rows])
    users = round(rows / (1 + sum(EVENTS_PER_USER.values())))
    exposure_at = np.sort(rng.integers(0, HORIZON, users)).astype(np.int32)
    hour = exposure_at // HOUR
    first_of_hour = np.searchsorted(hour, hour, side="left").astype(np.int32)
    events = rows - users
    event_user = rng.integers(0, users, events).astype(np.int32)
    shares = np.array(list(EVENTS_PER_USER.values()))
    event_metric = rng.choice(len(METRICS), size=events, p=shares / shares.sum()).astype(np.int8)
    event_at = _delayed(rng, exposure_at[event_user], HORIZON)
    value = _values(rng, event_metric)
    order = np.argsort(event_at, kind="stable")
    return Data(exposure_hour=hour, exposure_rank=np.arange(users, dtype=np.int32) - first_of_hour,
                arm=rng.integers(0, len(ARMS), users).astype(np.int8), exposure_at=exposure_at,
                event_user=event_user[order], event_metric=event_metric[order], event_value=value[order],
                event_at=event_at[order], pre_value=_pre_values(rng, users))


def _delayed(rng: np.random.Generator, exposed_at: Ints, end: int) -> Ints:
    """An event time per exposure: a delay after it, exponential with mean 1 day truncated to `end`."""
    left = (end - 1 - exposed_at).astype(np.float64)
    mean = 86_400.0
    delay = -mean * np.log1p(-rng.random(len(exposed_at)) * -np.expm1(-left / mean))
    return (exposed_at + np.minimum(delay.astype(np.int64), left.astype(np.int64))).astype(np.int32)


def _values(rng: np.random.Generator, metric: Codes) -> Floats:
    """revenue: a purchase in cents (gamma); sessions and converted: 1."""
    revenue = METRICS.index("revenue")
    return np.where(metric == revenue, np.round(rng.gamma(2.0, 10.0, len(metric)), 2), 1.0)


def _pre_values(rng: np.random.Generator, users: int) -> Floats:
    return np.round(rng.gamma(2.0, 15.0, users), 2)


def user_ids(hour: Ints, rank: Ints) -> NDArray[np.object_]:
    """The simulator's ids for (exposure hour, rank in the hour), for a few thousand users."""
    return np.array([f"u{h:05d}{r:06d}" for h, r in zip(hour.tolist(), rank.tolist(), strict=True)], dtype=object)


USER_ID_SQL = "'u' || lpad(CAST(hour AS VARCHAR), 5, '0') || lpad(CAST(rank AS VARCHAR), 6, '0')"
"""`user_ids` in DuckDB, over columns hour and rank: for the bulk load."""


class Traffic:
    """The hours after the loaded 14 days: hour `HOURS + k` is one batch of a fixed size whatever the size loaded
    (one hour at 1M rows): new users' exposures and covariates, events of users exposed in the last day, and a
    few (`late`) late events of older users with old times. Deterministic for the seed and k, so every engine gets
    the same batches."""

    def __init__(self, data: Data, seed: int, late: int = CHECK_LATE) -> None:
        self._data, self._seed, self._late = data, seed, late
        self._recent = int(np.searchsorted(data.exposure_at, HORIZON - RECENT))

    @property
    def rows(self) -> int:
        """The rows loaded before the first of these hours."""
        return self._data.rows

    def hour(self, k: int) -> Rows:
        data = self._data
        rng = np.random.default_rng([self._seed, data.rows, k])
        number, start = HOURS + k, (HOURS + k) * HOUR
        new_at = np.sort(rng.integers(start, start + HOUR, CHECK_USERS)).astype(np.int32)
        new_ids = user_ids(np.full(CHECK_USERS, number, np.int32), np.arange(CHECK_USERS, dtype=np.int32))
        # events: users of the last day and of this hour, at a time in the hour after their exposure
        recent = rng.integers(self._recent, data.users + CHECK_USERS, CHECK_EVENTS)
        is_new = recent >= data.users
        old = np.where(is_new, 0, recent).astype(np.int64)
        exposed = np.where(is_new, new_at[np.maximum(recent - data.users, 0)], start)
        ids = np.where(is_new, new_ids[np.maximum(recent - data.users, 0)],
                       user_ids(data.exposure_hour[old], data.exposure_rank[old]))
        at = _delayed(rng, exposed.astype(np.int32), start + HOUR)
        # late events: users exposed any time before, with a time between their exposure and now
        late = rng.integers(0, data.users, self._late)
        late_at = _delayed(rng, data.exposure_at[late], start)
        metric = rng.choice(len(METRICS), size=CHECK_EVENTS + self._late,
                            p=np.array(list(EVENTS_PER_USER.values())) / sum(EVENTS_PER_USER.values())).astype(np.int8)
        names = np.array(METRICS, dtype=object)
        arm = rng.integers(0, len(ARMS), CHECK_USERS)
        return Rows(
            exposures=Exposures(user_id=new_ids, arm=np.array(ARMS, dtype=object)[arm], at_s=new_at),
            metric_events=MetricEvents(
                user_id=np.concatenate([ids, user_ids(data.exposure_hour[late], data.exposure_rank[late])]),
                metric=names[metric], value=_values(rng, metric), at_s=np.concatenate([at, late_at])),
            pre_period=PrePeriod(user_id=new_ids, metric=np.full(CHECK_USERS, COVARIATE, dtype=object),
                                 value=_pre_values(rng, CHECK_USERS)))

    @staticmethod
    def until(k: int) -> int:
        """The check's window after hour `HOURS + k`: from the start to the end of that hour, every row in it."""
        return (HOURS + k + 1) * HOUR - 1
