"""The embedded metrics store: per-arm statistics computed in SQL equal a brute-force count in Python."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pytest
from numpy.typing import NDArray

from abrollout.contracts.verdicts import MetricStats
from abrollout.warehouse.catalog import BUILT_IN
from abrollout.warehouse.layout import VALUE_SCALE, Layout
from abrollout.warehouse.results import TERMS, ArmSums
from adapters.local_metrics import LocalMetrics
from adapters.simulator import Exposures, MetricEvents, PrePeriod, Rows, simulate_hour
from adapters.warehouse.aggregate import Aggregate
from tests.adapters.test_simulator import flag_state, registered, simulation

ARMS = ("control", "t1", "t2")  # t2 never gets a user
EXP = "store-test"


@dataclass(frozen=True)
class Data:
    """A small dataset as plain tuples: (user, arm, at_s), (user, metric, value, at_s), (user, metric, value)."""

    exposures: list[tuple[str, str, int]]
    events: list[tuple[str, str, float, int]]
    pre: list[tuple[str, str, float]]

    def rows(self) -> Rows:
        return Rows(
            exposures=Exposures(user_id=column(self.exposures, 0), arm=column(self.exposures, 1),
                                at_s=column(self.exposures, 2, np.int32)),
            metric_events=MetricEvents(user_id=column(self.events, 0), metric=column(self.events, 1),
                                       value=column(self.events, 2, np.float64), at_s=column(self.events, 3, np.int32)),
            pre_period=PrePeriod(user_id=column(self.pre, 0), metric=column(self.pre, 1),
                                 value=column(self.pre, 2, np.float64)),
        )


def column(table: Sequence[tuple[Any, ...]], index: int, dtype: type = object) -> NDArray[Any]:
    return np.array([row[index] for row in table], dtype=dtype)


def random_data(seed: int = 3, users: int = 300) -> Data:
    """Users in two arms, 0-3 events a metric at any time, values with 3 decimals (exact in micro-units), a
    covariate for every user on `revenue` and for 90% on `clicks`, and users with events but no exposure."""
    rng = np.random.default_rng(seed)
    ids = [f"u{i}" for i in range(users)]
    exposed = ids[: users - 20]
    exposures = [(user, str(rng.choice(ARMS[:2])), int(rng.integers(0, 7200))) for user in exposed]
    events = [
        (user, metric, int(rng.integers(-5000, 5000)) / 1000, int(rng.integers(0, 7200)))
        for user in ids for metric in ("revenue", "clicks") for _ in range(int(rng.integers(0, 4)))
    ]
    pre = [(user, "revenue", int(rng.integers(0, 9000)) / 1000) for user in exposed]
    pre += [(user, "clicks", float(rng.integers(0, 5))) for user in exposed if rng.random() < 0.9]
    return Data(exposures, events, pre)


def brute_force(data: Data, metric: str, until: int) -> dict[str, MetricStats]:
    """The definition, one user at a time."""
    arm_of = {user: arm for user, arm, at_s in data.exposures if at_s <= until}
    value: dict[str, float] = defaultdict(float)
    for user, name, v, at_s in data.events:
        if name == metric and at_s <= until:
            value[user] += v
    covariate = {user: v for user, name, v in data.pre if name == metric}
    cuped = bool(covariate) and all(user in covariate for user in arm_of)
    stats = {}
    for arm in ARMS:
        users = [user for user, a in arm_of.items() if a == arm]
        ys = [value[user] for user in users]
        xs = [covariate[user] for user in users] if cuped else []
        pre = {"pre_sum": sum(xs), "pre_sum_sq": sum(x * x for x in xs),
               "pre_sum_product": sum(x * y for x, y in zip(xs, ys, strict=True))} if cuped else {}
        stats[arm] = MetricStats(n=len(users), sum=sum(ys), sum_sq=sum(y * y for y in ys), **pre)
    return stats


def loaded(tmp_path: Path, data: Data, exp_key: str = EXP) -> LocalMetrics:
    metrics = LocalMetrics(tmp_path / "m.duckdb")
    metrics.write_rows(exp_key, data.rows())
    return metrics


def assert_stats_equal(actual: MetricStats, expected: MetricStats) -> None:
    assert actual.n == expected.n
    for field in ("sum", "sum_sq", "pre_sum", "pre_sum_sq", "pre_sum_product"):
        value = getattr(expected, field)
        assert getattr(actual, field) == (None if value is None else pytest.approx(value, rel=1e-12, abs=1e-9))


@pytest.mark.parametrize("until", [0, 1800, 3600, 7200])
def test_statistics_equal_a_brute_force_count(tmp_path: Path, until: int) -> None:
    data = random_data()
    metrics = loaded(tmp_path, data)
    metrics.write_rows("another-exp", data.rows())  # same users elsewhere: must not leak in
    result = metrics.aggregate(EXP, ["revenue", "clicks"], until, ARMS)
    for name in ("revenue", "clicks"):
        expected = brute_force(data, name, until)
        assert list(result.metrics[name]) == list(ARMS)
        for arm in ARMS:
            assert_stats_equal(result.metrics[name][arm], expected[arm])
    assert result.assignments == {arm: expected[arm].n for arm in ARMS}
    if until > 0:  # nobody is exposed at 0 yet
        assert result.metrics["revenue"]["control"].pre_sum is not None  # every user has a covariate
        assert result.metrics["clicks"]["control"].pre_sum is None  # 10% have none
    in_window = [at_s for *_, at_s in data.exposures + data.events if at_s <= until]
    assert result.freshest_event_seconds == (max(in_window) if in_window else None)


def awkward_data(seed: int) -> Data:
    """`random_data` plus what the SQL must still get right: users logged in two arms (they count once, in the
    arm first in name order) or twice in one, a duplicated covariate row (summed), an arm name that sorts first,
    a metric name with a quote, and rows exactly at a window's end."""
    data = random_data(seed)
    rng = np.random.default_rng(seed + 100)
    users = sorted({user for user, *_ in data.exposures})
    twice = [(user, str(rng.choice(["control", "t1", "a-first"])), int(rng.integers(0, 7200)))
             for user in rng.choice(users, 25, replace=False)]
    quoted = [(user, "it's", int(rng.integers(-900, 900)) / 1000, at_s) for user, _, _, at_s in data.events[::7]]
    doubled = [(user, "revenue", int(rng.integers(0, 9000)) / 1000) for user in rng.choice(users, 10, replace=False)]
    on_the_edge = [("edge", "revenue", 1.5, 1800), ("u2", "clicks", 4.0, 5000)]  # at a window's end: they count
    return Data(data.exposures + twice + [("edge", "t1", 1800)], data.events + quoted + on_the_edge,
                data.pre + doubled + [("u1", "it's", 2.5)])


def exact_reference(data: Data, metrics: Sequence[str], until: int, arms: Sequence[str]) -> Aggregate:
    """The definition in whole micro-units, one user at a time in Python ints, turned into statistics by the same
    `ArmSums` as the stores: the SQL must give exactly this, not approximately."""
    arm_of: dict[str, str] = {}
    for user, arm, at_s in data.exposures:
        if at_s <= until and (user not in arm_of or arm < arm_of[user]):
            arm_of[user] = arm
    values: dict[str, dict[str, int]] = {name: defaultdict(int) for name in metrics}
    for user, name, value, at_s in data.events:
        if name in values and at_s <= until:
            values[name][user] += round(value * VALUE_SCALE)  # no value is half a micro-unit off
    covariates: dict[str, dict[str, int]] = {name: defaultdict(int) for name in metrics}
    for user, name, value in data.pre:
        if name in covariates:
            covariates[name][user] += round(value * VALUE_SCALE)
    n: dict[str, int] = defaultdict(int)
    pre_n: dict[tuple[str, str], int] = defaultdict(int)
    sums: dict[tuple[str, str], dict[str, int]] = defaultdict(lambda: dict.fromkeys(TERMS, 0))
    for user, arm in arm_of.items():
        n[arm] += 1
        for name in metrics:
            y, total = values[name].get(user, 0), sums[arm, name]
            total["sum"] += y
            total["sum_sq"] += y * y
            if user in covariates[name]:
                x = covariates[name][user]
                pre_n[arm, name] += 1
                total["pre_sum"] += x
                total["pre_sum_sq"] += x * x
                total["pre_sum_product"] += x * y
    latest: dict[str | None, int] = {}
    for key, times in [(None, [at_s for *_, at_s in data.exposures if at_s <= until]),
                       *((name, [at_s for _, m, _, at_s in data.events if m == name and at_s <= until])
                         for name in metrics)]:
        if times:
            latest[key] = max(times)
    covariate_rows = {name: len(rows) for name, rows in covariates.items()}
    found = ArmSums(n=dict(n), pre_n=dict(pre_n), sums=dict(sums), latest=latest, covariate_rows=covariate_rows)
    names = list(dict.fromkeys(metrics))
    return Aggregate(found.assignments(arms), found.metric_stats(Layout(BUILT_IN, tuple(sorted(set(names)))),
                                                                 names, arms), (), found.freshest(names))


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_statistics_are_exactly_the_definition_in_micro_units(tmp_path: Path, seed: int) -> None:
    """Exact equality with the Python definition (same integers, same conversion) over windows, metric lists and
    covariates; the SQL's rewrites for speed (arm numbers, one tagged value column) must not change a digit."""
    data = awkward_data(seed)
    metrics = loaded(tmp_path, data)
    metrics.write_rows("another-exp", random_data(seed + 1).rows())
    for until in (0, 1, 900, 1800, 5000, 7200):  # early windows: most covariate rows are of users not yet exposed
        for names in (["revenue", "clicks", "it's", "absent"], ["clicks"], ["absent", "revenue"], []):
            result = metrics.aggregate(EXP, names, until, ARMS)
            expected = exact_reference(data, names, until, ARMS)
            assert result.assignments == expected.assignments
            assert result.metrics == expected.metrics
            assert result.freshest_event_seconds == expected.freshest_event_seconds


def test_freshness_counts_exposures_and_the_checked_metrics_events_only(tmp_path: Path) -> None:
    """A pipeline that still delivers another metric must not hide that the checked one stopped: the freshest time
    is the latest exposure or event of a checked metric, from the running aggregate and from the query alike (as
    PostgreSQL counts it)."""
    data = Data(exposures=[("a", "control", 10), ("b", "treatment", 50)],
                events=[("a", "checked", 1.0, 20), ("b", "other", 1.0, 3000)], pre=[])
    metrics = loaded(tmp_path, data)
    assert metrics.aggregate(EXP, ["checked"], 3600).freshest_event_seconds == 50  # the running aggregate
    assert metrics.aggregate(EXP, ["checked"], 2999).freshest_event_seconds == 50  # an earlier window: the query
    assert metrics.aggregate(EXP, ["checked", "other"], 3600).freshest_event_seconds == 3000
    assert metrics.aggregate(EXP, ["other"], 2999).freshest_event_seconds == 50
    assert metrics.aggregate(EXP, [], 3600).freshest_event_seconds == 50
    assert metrics.aggregate(EXP, ["checked"], 5).freshest_event_seconds is None


def test_exposed_users_without_events_count_as_zero_and_late_rows_do_not_count(tmp_path: Path) -> None:
    data = Data(
        exposures=[("a", "control", 10), ("b", "control", 20), ("c", "control", 30), ("late", "control", 4000)],
        events=[("a", "m", 2.0, 15), ("a", "m", 1.0, 3000), ("a", "m", 5.0, 3601), ("late", "m", 7.0, 100)],
        pre=[],
    )
    stats = loaded(tmp_path, data).aggregate(EXP, ["m"], 3600).metrics["m"]["control"]
    assert stats == MetricStats(n=3, sum=3.0, sum_sq=9.0)


def test_sums_are_exact_whatever_the_order(tmp_path: Path) -> None:
    data = Data(exposures=[("a", "control", 0), ("b", "control", 0)],
                events=[("a", "m", 0.1, 0), ("a", "m", 0.2, 0), ("b", "m", 0.3, 0)], pre=[])
    stats = loaded(tmp_path, data).aggregate(EXP, ["m"], 10).metrics["m"]["control"]
    assert stats.sum == 0.6  # 0.1 + 0.2 + 0.3 is 0.6000000000000001 in floats
    assert stats.sum_sq == 0.18


def test_the_recorded_query_names_its_tables_and_reruns_as_it_stands(tmp_path: Path) -> None:
    metrics = loaded(tmp_path, random_data(), exp_key="it's")  # a quote must not break the literal
    result = metrics.aggregate("it's", ["revenue"], 3600)
    [query] = result.queries
    for table in ("exposures", "metric_events", "pre_period"):
        assert f'"{table}"' in query
    with duckdb.connect(str(tmp_path / "m.duckdb")) as con:
        rows = con.execute(query).fetchall()
    assert {row[0]: row[1] for row in rows if row[0] is not None} == result.assignments
    latest = [time for row in rows for time in row[2:4] if time is not None]  # the exposures' and revenue's
    assert max(latest) == result.freshest_event_seconds


async def test_snapshot_id_is_stable_and_follows_the_data(tmp_path: Path) -> None:
    metrics = loaded(tmp_path, random_data())
    exp = registered(arms=ARMS, exp_key=EXP)
    first = await metrics.snapshot(exp, "run-1", 3600, ["revenue"])
    again = await metrics.snapshot(exp, "run-1", 3600, ["revenue"])
    assert first == again
    assert first.snapshot_id.startswith("snap-") and len(first.snapshot_id) == 21
    assert first.assignments["t2"] == 0 and first.metrics["revenue"]["t2"] == MetricStats(
        n=0, sum=0.0, sum_sq=0.0, pre_sum=0.0, pre_sum_sq=0.0, pre_sum_product=0.0)
    metrics.write_rows(EXP, Data(exposures=[], events=[("u0", "revenue", 1.0, 0)], pre=[]).rows())
    assert (await metrics.snapshot(exp, "run-1", 3600, ["revenue"])).snapshot_id != first.snapshot_id


async def test_without_a_flag_provider_nothing_is_simulated(tmp_path: Path) -> None:
    metrics = LocalMetrics(tmp_path / "m.duckdb")
    snapshot = await metrics.snapshot(registered(simulation()), "run-1", 7200, ["conv"])
    assert snapshot.assignments == {"control": 0, "treatment": 0}
    assert metrics.hours_done(registered().args.exp_key) == 0


def test_an_hour_is_written_only_in_its_turn(tmp_path: Path) -> None:
    metrics = LocalMetrics(tmp_path / "m.duckdb")
    rows = Data(exposures=[("a", "control", 0)], events=[], pre=[]).rows()
    assert metrics.write_hour(EXP, 1, rows) == 0  # hour 0 is not done yet: nothing written
    assert metrics.write_hour(EXP, 0, rows) == 1
    assert metrics.write_hour(EXP, 0, rows) == 1  # a retry of hour 0: nothing written
    assert metrics.aggregate(EXP, [], 3600).assignments == {"control": 1}
    with duckdb.connect(str(tmp_path / "m.duckdb")) as con:
        assert con.execute("SELECT count(*) FROM exposures").fetchall() == [(1,)]


def test_writers_racing_on_one_file_write_every_hour_once(tmp_path: Path) -> None:
    stores = [LocalMetrics(tmp_path / "m.duckdb") for _ in range(2)]
    hours = [simulate_hour(simulation(users_per_hour=200), flag_state(), hour) for hour in range(6)]

    def write_all(metrics: LocalMetrics) -> None:
        done = metrics.hours_done(EXP)
        while done < len(hours):
            try:
                done = metrics.write_hour(EXP, done, hours[done])
            except (duckdb.TransactionException, duckdb.ConstraintException):  # lost the race: nothing written
                done = metrics.hours_done(EXP)

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(write_all, stores * 2))
    with duckdb.connect(str(tmp_path / "m.duckdb")) as con:
        [(rows, users)] = con.execute("SELECT count(*), count(DISTINCT user_id) FROM exposures").fetchall()
    assert rows == users == sum(len(hour.exposures.user_id) for hour in hours)
