"""The embedded store's incremental rollup answers exactly as the full statement, however the rows arrive: in
batches out of time order (late rows), users moving arm, covariates and events before exposures, refreshes that
die half-way or race."""

from __future__ import annotations

from pathlib import Path

import duckdb
import numpy as np
import pytest

from abrollout.warehouse.dialects import Value
from adapters.local_metrics import LocalMetrics
from adapters.warehouse.aggregate import Aggregate
from adapters.warehouse.metrics import WarehouseMetrics
from tests.adapters.test_local_metrics import ARMS, EXP, Data, awkward_data, exact_reference, random_data

METRICS = ["revenue", "clicks", "it's", "absent"]


def split(data: Data, parts: int, seed: int) -> list[Data]:
    """The rows dealt at random into `parts` batches: each batch mixes times, so later batches bring late rows,
    exposures after a user's events, and second exposures that move a user to an arm first in name order."""
    rng = np.random.default_rng(seed)

    def deal(table: list[tuple]) -> list[list[tuple]]:  # type: ignore[type-arg]
        which = rng.integers(0, parts, len(table))
        return [[row for row, part in zip(table, which, strict=True) if part == p] for p in range(parts)]

    return [Data(*batch) for batch in zip(deal(data.exposures), deal(data.events), deal(data.pre), strict=True)]


def joined(batches: list[Data]) -> Data:
    """Batches as one dataset (what the store holds once they are all written)."""
    return Data([row for b in batches for row in b.exposures], [row for b in batches for row in b.events],
                [row for b in batches for row in b.pre])


def full_statement(metrics: LocalMetrics, names: list[str], until: int) -> Aggregate:
    """The same window from the full statement alone (no rollup)."""
    return WarehouseMetrics(metrics.warehouse.engine, incremental=False).aggregate(EXP, names, until, ARMS)


def assert_same(a: Aggregate, b: Aggregate) -> None:
    assert (a.assignments, a.metrics, a.freshest_event_seconds) == (b.assignments, b.metrics, b.freshest_event_seconds)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_every_refresh_equals_the_full_statement_and_the_definition(tmp_path: Path, seed: int) -> None:
    metrics = LocalMetrics(tmp_path / "m.duckdb")
    metrics.write_rows("another-exp", random_data(seed + 7).rows())  # same users elsewhere: must not leak in
    batches = split(awkward_data(seed), 5, seed)
    for done in range(1, len(batches) + 1):
        metrics.write_rows(EXP, batches[done - 1].rows())
        until = 10_000  # every row written is in the window: the rollup answers
        folded = metrics.aggregate(EXP, METRICS, until, ARMS)
        assert_same(folded, full_statement(metrics, METRICS, until))
        assert_same(folded, exact_reference(joined(batches[:done]), METRICS, until, ARMS))


def test_an_earlier_window_is_answered_by_the_full_statement(tmp_path: Path) -> None:
    metrics = LocalMetrics(tmp_path / "m.duckdb")
    data = random_data(4)
    metrics.write_rows(EXP, data.rows())
    for until in (0, 900, 3600):  # rows past the window are folded in: the rollup cannot answer
        assert_same(metrics.aggregate(EXP, METRICS, until, ARMS), exact_reference(data, METRICS, until, ARMS))


def next_refresh(warehouse: WarehouseMetrics) -> dict[str, Value]:
    statements = warehouse.statements(METRICS)
    values = warehouse.next_refresh(statements, warehouse.rollup_key(EXP, statements))
    assert values is not None, "rows were written since the last refresh"
    return values


def test_a_refresh_that_dies_before_its_mark_is_never_counted(tmp_path: Path) -> None:
    metrics = LocalMetrics(tmp_path / "m.duckdb")
    batches = split(awkward_data(5), 3, 5)
    metrics.write_rows(EXP, batches[0].rows())
    metrics.aggregate(EXP, METRICS, 10_000, ARMS)
    metrics.write_rows(EXP, batches[1].rows())
    warehouse = metrics.warehouse
    warehouse.fold(warehouse.statements(METRICS), next_refresh(warehouse), commit=False)  # dies before the mark
    metrics.write_rows(EXP, batches[2].rows())
    assert_same(metrics.aggregate(EXP, METRICS, 10_000, ARMS),
                exact_reference(joined(batches), METRICS, 10_000, ARMS))


def test_two_refreshes_that_race_count_once(tmp_path: Path) -> None:
    """Both attempts fold the same rows under the same number and both commit: every read takes one of them (the
    least attempt id), and the next refresh builds on that one."""
    metrics = LocalMetrics(tmp_path / "m.duckdb")
    batches = split(awkward_data(6), 3, 6)
    metrics.write_rows(EXP, batches[0].rows())
    metrics.aggregate(EXP, METRICS, 10_000, ARMS)
    metrics.write_rows(EXP, batches[1].rows())
    warehouse = metrics.warehouse
    values = next_refresh(warehouse)
    for attempt in ("b" * 32, "a" * 32):
        warehouse.fold(warehouse.statements(METRICS), values | {"abr_attempt": attempt})
    assert_same(metrics.aggregate(EXP, METRICS, 10_000, ARMS),
                exact_reference(joined(batches[:2]), METRICS, 10_000, ARMS))
    metrics.write_rows(EXP, batches[2].rows())
    assert_same(metrics.aggregate(EXP, METRICS, 10_000, ARMS),
                exact_reference(joined(batches), METRICS, 10_000, ARMS))


def test_each_set_of_metrics_keeps_its_own_rollup(tmp_path: Path) -> None:
    metrics = LocalMetrics(tmp_path / "m.duckdb")
    batches = split(random_data(8), 2, 8)
    metrics.write_rows(EXP, batches[0].rows())
    metrics.aggregate(EXP, ["revenue"], 10_000, ARMS)
    metrics.write_rows(EXP, batches[1].rows())
    for names in (["clicks", "revenue"], ["revenue"], ["revenue", "clicks"]):  # the order does not matter
        assert_same(metrics.aggregate(EXP, names, 10_000, ARMS),
                    exact_reference(joined(batches), names, 10_000, ARMS))


def test_a_file_written_before_the_generator_opens_and_answers(tmp_path: Path) -> None:
    """The store's tables from before `loaded_at` (and the hand-written aggregate's tables): the rows count from
    the first refresh, the old aggregate is dropped."""
    path = tmp_path / "m.duckdb"
    data = random_data(9)
    with duckdb.connect(str(path)) as con:
        con.execute("CREATE TABLE exposures (exp_key VARCHAR, user_id VARCHAR, arm VARCHAR, at_s INTEGER);"
                    "CREATE TABLE metric_events (exp_key VARCHAR, user_id VARCHAR, metric VARCHAR, value DOUBLE, "
                    "at_s INTEGER);"
                    "CREATE TABLE pre_period (exp_key VARCHAR, user_id VARCHAR, metric VARCHAR, value DOUBLE);"
                    "CREATE TABLE rollup_marks (exp_key VARCHAR PRIMARY KEY, exposure_rows BIGINT, max_at_s INTEGER)")
        con.executemany("INSERT INTO exposures VALUES (?, ?, ?, ?)", [(EXP, *row) for row in data.exposures])
        con.executemany("INSERT INTO metric_events VALUES (?, ?, ?, ?, ?)", [(EXP, *row) for row in data.events])
        con.executemany("INSERT INTO pre_period VALUES (?, ?, ?, ?)", [(EXP, *row) for row in data.pre])
    metrics = LocalMetrics(path)
    assert_same(metrics.aggregate(EXP, METRICS, 10_000, ARMS), exact_reference(data, METRICS, 10_000, ARMS))
    more = random_data(10, users=40)
    metrics.write_rows(EXP, more.rows())
    assert_same(metrics.aggregate(EXP, METRICS, 10_000, ARMS),
                exact_reference(joined([data, more]), METRICS, 10_000, ARMS))
    with duckdb.connect(str(path)) as con:
        assert not con.execute("SELECT 1 FROM information_schema.tables WHERE table_name = 'rollup_marks'"
                               ).fetchall()


def test_a_late_rival_of_a_refresh_already_built_on_does_not_count(tmp_path: Path) -> None:
    """Attempt b commits refresh 2 and refresh 3 builds on it; attempt a, which raced b for refresh 2 from the same
    state, commits only then. Its lesser id does not make it count: the chain runs from the newest refresh back."""
    metrics = LocalMetrics(tmp_path / "m.duckdb")
    batches = split(awkward_data(7), 3, 7)
    metrics.write_rows(EXP, batches[0].rows())
    metrics.aggregate(EXP, METRICS, 10_000, ARMS)
    metrics.write_rows(EXP, batches[1].rows())
    warehouse, statements = metrics.warehouse, metrics.warehouse.statements(METRICS)
    raced = next_refresh(warehouse)
    warehouse.fold(statements, raced | {"abr_attempt": f"{raced['abr_refresh']:012d}-b"})
    metrics.write_rows(EXP, batches[2].rows())
    assert_same(metrics.aggregate(EXP, METRICS, 10_000, ARMS),  # refresh 3, on b
                exact_reference(joined(batches), METRICS, 10_000, ARMS))
    warehouse.fold(statements, raced | {"abr_attempt": f"{raced['abr_refresh']:012d}-a"})
    assert_same(metrics.aggregate(EXP, METRICS, 10_000, ARMS),
                exact_reference(joined(batches), METRICS, 10_000, ARMS))
