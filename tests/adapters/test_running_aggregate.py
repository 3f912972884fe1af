"""The running aggregate answers a window that holds every row exactly as the statistics query does, however the
rows arrive: in batches out of time order, users moving arm, covariates and events before exposures."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import duckdb
import numpy as np
import pytest

from adapters.local_metrics import Aggregate, LocalMetrics, snapshot_id
from adapters.running_aggregate import RunningAggregate, micro_units
from tests.adapters.test_local_metrics import ARMS, EXP, Data, awkward_data, exact_reference, random_data

METRICS = ["revenue", "clicks", "it's", "absent"]


@pytest.fixture(params=["python", "sql"])
def fold_in(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test runs with each fold: small batches in Python, large ones in SQL (here, every batch)."""
    if request.param == "sql":
        monkeypatch.setattr(RunningAggregate, "SQL_FROM_ROWS", 0)
    return str(request.param)


def split(data: Data, parts: int, seed: int) -> list[Data]:
    """The rows dealt at random into `parts` batches: each batch mixes times, so later batches bring late rows,
    exposures after a user's events, and second exposures that move a user to an arm first in name order."""
    rng = np.random.default_rng(seed)

    def deal(table: list[tuple]) -> list[list[tuple]]:  # type: ignore[type-arg]
        which = rng.integers(0, parts, len(table))
        return [[row for row, part in zip(table, which, strict=True) if part == p] for p in range(parts)]

    return [Data(*batch) for batch in zip(deal(data.exposures), deal(data.events), deal(data.pre), strict=True)]


def both_ways(metrics: LocalMetrics, names: list[str], until: int,
              monkeypatch: pytest.MonkeyPatch) -> tuple[Aggregate, Aggregate]:
    """The store's answer from the running aggregate, and the statistics query's for the same window."""
    with metrics._con.cursor() as cur:
        assert RunningAggregate.read(cur, EXP, until) is not None, "the aggregate should answer this window"
    folded = metrics.aggregate(EXP, names, until, ARMS)
    with monkeypatch.context() as patch:
        patch.setattr(RunningAggregate, "read", staticmethod(lambda *_: None))
        queried = metrics.aggregate(EXP, names, until, ARMS)
    return folded, queried


def joined(batches: list[Data]) -> Data:
    """Batches as one dataset (what the store holds once they are all written)."""
    return Data([row for b in batches for row in b.exposures], [row for b in batches for row in b.events],
                [row for b in batches for row in b.pre])


def latest(data: Data) -> int:
    return max((at_s for *_, at_s in data.exposures + data.events), default=0)


@pytest.mark.parametrize(("make", "seed"), [(awkward_data, 1), (awkward_data, 2), (awkward_data, 3), (random_data, 4)])
def test_batches_in_any_order_give_the_query_s_statistics_to_the_digit(
        tmp_path: Path, make: Callable[[int], Data], seed: int, monkeypatch: pytest.MonkeyPatch, fold_in: str) -> None:
    """With `random_data` every exposed user has a revenue covariate, so the CUPED sums are compared too."""
    metrics = LocalMetrics(tmp_path / "m.duckdb")
    metrics.write_rows("another-exp", random_data(seed + 1).rows())  # same users elsewhere: must not leak in
    batches = split(make(seed), 4, seed)
    for count, batch in enumerate(batches, 1):
        metrics.write_rows(EXP, batch.rows())
        so_far = joined(batches[:count])
        for names in (METRICS, ["clicks"], []):
            folded, queried = both_ways(metrics, names, latest(so_far), monkeypatch)
            assert folded == queried  # statistics, freshness and the recorded SQL
            assert snapshot_id(folded) == snapshot_id(queried)
            assert folded == exact_reference(so_far, names, latest(so_far), ARMS)._replace(queries=folded.queries)
    whole = metrics.aggregate(EXP, METRICS, latest(joined(batches)), ARMS)
    assert whole.metrics["revenue"]["control"].has_covariate == (make is random_data)


def test_a_window_ending_before_the_latest_row_runs_the_query(tmp_path: Path, fold_in: str) -> None:
    data = awkward_data(1)
    metrics = LocalMetrics(tmp_path / "m.duckdb")
    metrics.write_rows(EXP, data.rows())
    with metrics._con.cursor() as cur:
        assert RunningAggregate.read(cur, EXP, latest(data) - 1) is None
    assert metrics.aggregate(EXP, METRICS, 3600, ARMS) == exact_reference(data, METRICS, 3600, ARMS)._replace(
        queries=metrics.aggregate(EXP, METRICS, 3600, ARMS).queries)


def test_rows_written_without_the_aggregate_are_folded_when_a_store_opens_the_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file from before the aggregate existed (or loaded by SQL, as the benchmarks do)."""
    path = tmp_path / "m.duckdb"
    LocalMetrics(path).write_rows(EXP, awkward_data(2).rows())
    with duckdb.connect(str(path)) as con:
        for table in ("rollup_marks", "rollup_users", "rollup_values", "rollup_arms"):
            con.execute(f"DROP TABLE {table}")
    reopened = LocalMetrics(path)
    folded, queried = both_ways(reopened, METRICS, latest(awkward_data(2)), monkeypatch)
    assert folded == queried
    LocalMetrics(path)  # a second opening folds nothing twice
    assert both_ways(reopened, METRICS, latest(awkward_data(2)), monkeypatch)[0] == folded


def test_a_file_folded_before_the_latest_times_were_kept_is_folded_again_when_a_store_opens_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """rollup_arms without `latest` (written by an earlier version): its sums are dropped and folded again from the
    rows, so the per-metric freshness is right from the first check."""
    path = tmp_path / "m.duckdb"
    data = awkward_data(3)
    LocalMetrics(path).write_rows(EXP, data.rows())
    with duckdb.connect(str(path)) as con:
        con.execute("ALTER TABLE rollup_arms DROP COLUMN latest")
    reopened = LocalMetrics(path)
    for names in (METRICS, ["clicks"], []):
        folded, queried = both_ways(reopened, names, latest(data), monkeypatch)
        assert folded == queried == exact_reference(data, names, latest(data), ARMS)._replace(queries=folded.queries)


def test_the_python_fold_rounds_to_micro_units_as_duckdb_does() -> None:
    edges = [0.49999999999999994, 0.5, 1.5, 2.5, -0.5, -2.5, 2.5e-6, -2.5e-6, 1.0000005, 1.5e-6, 123.4567895,
             -123.4567895, 1e-7, 4.0000005, 1e12 + 0.5e-6]
    values = np.array(edges + list(np.random.default_rng(5).normal(0, 10, 20_000)), dtype=np.float64)
    batch = {"value": values}
    with duckdb.connect() as con:
        con.register("batch", batch)
        rounded = con.execute("SELECT CAST(round(value * 1000000) AS BIGINT) FROM batch").fetchall()
    expected = [value for (value,) in rounded]
    assert micro_units(values) == expected
    with pytest.raises(ValueError, match="finite"):
        micro_units(np.array([1.0, float("nan")]))


def test_writers_racing_on_one_experiment_leave_the_aggregate_equal_to_the_query(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fold_in: str) -> None:
    """Bulk loads of one experiment from two stores on one file: a load that loses the race on the experiment's
    mark raises and writes nothing (neither rows nor sums); whatever got in, the aggregate and the query agree."""
    path = tmp_path / "m.duckdb"
    stores = [LocalMetrics(path) for _ in range(2)]
    batches = split(awkward_data(3), 8, 3)
    written: list[Data] = []

    def load(index: int) -> None:
        try:
            stores[index % 2].write_rows(EXP, batches[index].rows())
            written.append(batches[index])
        except (duckdb.TransactionException, duckdb.ConstraintException):
            pass

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(load, range(len(batches))))
    assert written, "some load must get in"
    everything = joined(written)
    folded, queried = both_ways(stores[0], METRICS, latest(everything), monkeypatch)
    assert folded == queried
    assert folded == exact_reference(everything, METRICS, latest(everything), ARMS)._replace(queries=folded.queries)
