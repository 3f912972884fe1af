"""The embedded metrics source: exposures and metric events in a DuckDB file, per-arm statistics from the warehouse
generator's SQL (adapters/warehouse), like any other warehouse.

Every write is one load batch: its rows carry the experiment's next `loaded_at`, which is what the incremental
rollup reads past. Design notes: docs/adapters.md.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import fields
from pathlib import Path

import duckdb

from abrollout.warehouse.catalog import BUILT_IN, Catalog
from adapters.protocols import MetricsSnapshot, Registered
from adapters.simulator import Exposures, FlagReader, MetricEvents, PrePeriod, Rows, Simulator
from adapters.warehouse.aggregate import Aggregate
from adapters.warehouse.duckdb_engine import DuckDBEngine
from adapters.warehouse.metrics import WarehouseMetrics

# Arm and metric stay VARCHAR (dictionary-compressed: about the size of small-int codes, and no ENUM that needs
# every arm up front); no indexes: zonemaps on exp_key, at_s and loaded_at already let a filtered scan skip row
# groups.
_SCHEMA = """
CREATE TABLE IF NOT EXISTS exposures (
    exp_key VARCHAR NOT NULL, user_id VARCHAR NOT NULL, arm VARCHAR NOT NULL, at_s INTEGER NOT NULL,
    loaded_at BIGINT NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS metric_events (
    exp_key VARCHAR NOT NULL, user_id VARCHAR NOT NULL, metric VARCHAR NOT NULL, value DOUBLE NOT NULL,
    at_s INTEGER NOT NULL, loaded_at BIGINT NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS pre_period (
    exp_key VARCHAR NOT NULL, user_id VARCHAR NOT NULL, metric VARCHAR NOT NULL, value DOUBLE NOT NULL,
    loaded_at BIGINT NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS sim_progress (exp_key VARCHAR PRIMARY KEY, hours_done INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS load_batches (exp_key VARCHAR PRIMARY KEY, last BIGINT NOT NULL);
"""
_UPGRADE = [
    *(f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS loaded_at BIGINT DEFAULT 0"
      for table in ("exposures", "metric_events", "pre_period")),
    # the hand-written running aggregate's tables, replaced by the generator's rollup
    *(f"DROP TABLE IF EXISTS rollup_{table}" for table in ("marks", "users", "values", "arms")),
]
_CLAIM_FIRST_HOUR = "INSERT INTO sim_progress VALUES (?, 1) ON CONFLICT DO NOTHING RETURNING hours_done"
_CLAIM_NEXT_HOUR = (
    "UPDATE sim_progress SET hours_done = hours_done + 1 WHERE exp_key = ? AND hours_done = ? RETURNING hours_done"
)
_NEXT_BATCH = ("INSERT INTO load_batches VALUES (?, 1) ON CONFLICT (exp_key) DO UPDATE SET last = last + 1 "
               "RETURNING last")


class LocalMetrics:
    """A DuckDB-backed `MetricsSource`. Given a flag provider (any `FlagProvider` will do; only `read` is
    used), it first advances the simulated traffic of experiments that have a `simulation` block, up to the
    checkpoint's time.

    One connection per store; every call works on its own cursor, so activities may call it from many threads.
    """

    name = "local"

    def __init__(self, path: Path, flags: FlagReader | None = None, catalog: Catalog = BUILT_IN) -> None:
        """`catalog`: the metric definitions over the store's tables (a metrics file; by default every metric a
        label of metric_events)."""
        self._con = duckdb.connect(str(path))
        self._con.execute(_SCHEMA)
        for statement in _UPGRADE:
            self._con.execute(statement)
        self.warehouse = WarehouseMetrics(DuckDBEngine(self._con), catalog)
        self._simulator = Simulator(self, flags) if flags is not None else None

    def close(self) -> None:
        self._con.close()

    async def snapshot(
        self, registered: Registered, run_id: str, at_seconds: int, metrics: list[str]
    ) -> MetricsSnapshot:
        """Cumulative statistics from the run's start to `at_seconds`. The store keeps one run per experiment,
        so `run_id` selects nothing."""
        if self._simulator is not None:
            await self._simulator.advance(registered, at_seconds)
        return await self.warehouse.snapshot(registered, run_id, at_seconds, metrics)

    def aggregate(
        self, exp_key: str, metrics: Sequence[str], until_seconds: int, arms: Sequence[str] = ()
    ) -> Aggregate:
        """Per arm: users exposed by `until_seconds` and, per metric, n, sum and sum of squares of their values,
        plus the CUPED sums when every exposed user has a pre-period value. `arms` appear even without users."""
        return self.warehouse.aggregate(exp_key, metrics, until_seconds, arms)

    def hours_done(self, exp_key: str) -> int:
        """Simulated hours already written for the experiment."""
        with self._con.cursor() as cur:
            return _hours_done(cur, exp_key)

    def write_hour(self, exp_key: str, hour: int, rows: Rows) -> int:
        """Write `rows` as simulated hour `hour` and count the hour done, in one transaction, unless the progress
        says otherwise (a retry, or another writer got there first): then write nothing. The hours done after.

        The transaction first claims the hour (moves the progress from `hour` to `hour + 1`, one statement that
        also checks it), then appends the rows. Writers racing on the same hour (two stores on one file; one
        store's simulator serialises its own) both update the progress row: DuckDB refuses all but the first with
        a TransactionException or ConstraintException, and the refused writer's transaction is rolled back whole."""
        with self._con.cursor() as cur, _transaction(cur):
            if hour == 0:
                claimed = cur.execute(_CLAIM_FIRST_HOUR, [exp_key]).fetchall()
            else:
                claimed = cur.execute(_CLAIM_NEXT_HOUR, [exp_key, hour]).fetchall()
            if not claimed:
                return _hours_done(cur, exp_key)
            _insert(cur, exp_key, rows)
            return hour + 1

    def write_rows(self, exp_key: str, rows: Rows) -> None:
        """Bulk-load a batch in one transaction (numpy columns, no per-row Python). Concurrent loads of one
        experiment conflict on its batch counter: one raises and writes nothing."""
        with self._con.cursor() as cur, _transaction(cur):
            _insert(cur, exp_key, rows)


def _hours_done(cur: duckdb.DuckDBPyConnection, exp_key: str) -> int:
    rows = cur.execute("SELECT hours_done FROM sim_progress WHERE exp_key = ?", [exp_key]).fetchall()
    return int(rows[0][0]) if rows else 0


@contextmanager
def _transaction(cur: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """Commit what the block did, or roll all of it back if it raised (a failed commit rolls back by itself)."""
    cur.begin()
    try:
        yield
    except BaseException:
        cur.rollback()
        raise
    cur.commit()


def _insert(cur: duckdb.DuckDBPyConnection, exp_key: str, rows: Rows) -> None:
    """Append a batch under the experiment's next load number: each table's numpy columns are copied in one
    INSERT that scans them where they are.

    `sim_batch` in the SQL is the local dict of numpy arrays below, found by DuckDB's replacement scan (the
    calling frame's variables), which reads the arrays as `register` would but without adding a view to the
    catalog and dropping it again: that catalog round trip was half the cost of a small batch (an hour of
    simulated traffic is a few hundred rows), and large batches load as fast as before."""
    [(batch_no,)] = cur.execute(_NEXT_BATCH, [exp_key]).fetchall()
    tables: list[tuple[str, Exposures | MetricEvents | PrePeriod]] = [
        ("exposures", rows.exposures), ("metric_events", rows.metric_events), ("pre_period", rows.pre_period)]
    for table, batch in tables:
        sim_batch = {field.name: getattr(batch, field.name) for field in fields(batch)}
        if len(next(iter(sim_batch.values()))) == 0:
            continue
        names = ", ".join(sim_batch)
        cur.execute(f"INSERT INTO {table} (exp_key, {names}, loaded_at) SELECT ?, {names}, ? FROM sim_batch",
                    [exp_key, batch_no])
