"""The embedded metrics source: exposures and metric events in a DuckDB file, per-arm statistics in SQL.

The statistics query (`aggregate_sql`) is the definition and every snapshot records it; values are summed as whole
micro-units, so sums are exact however DuckDB's threads split the work and a rerun gives the same numbers. A live
look reads the running aggregate, equal to the query to the digit. Design notes: docs/adapters.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import fields
from pathlib import Path
from typing import Any, NamedTuple

import duckdb

from abrollout.contracts.verdicts import MetricStats
from adapters.protocols import MetricsSnapshot, Registered
from adapters.running_aggregate import MICRO_UNITS_SQL, VALUE_SCALE, RunningAggregate
from adapters.running_aggregate import SCHEMA as RUNNING_AGGREGATE_SCHEMA
from adapters.simulator import Exposures, FlagReader, MetricEvents, PrePeriod, Rows, Simulator

# Arm and metric stay VARCHAR (dictionary-compressed: about the size of small-int codes, and no ENUM that needs
# every arm up front); no indexes: zonemaps on exp_key and at_s already let a filtered scan skip row groups.
_SCHEMA = """
CREATE TABLE IF NOT EXISTS exposures (
    exp_key VARCHAR NOT NULL, user_id VARCHAR NOT NULL, arm VARCHAR NOT NULL, at_s INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS metric_events (
    exp_key VARCHAR NOT NULL, user_id VARCHAR NOT NULL, metric VARCHAR NOT NULL, value DOUBLE NOT NULL,
    at_s INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS pre_period (
    exp_key VARCHAR NOT NULL, user_id VARCHAR NOT NULL, metric VARCHAR NOT NULL, value DOUBLE NOT NULL);
CREATE TABLE IF NOT EXISTS sim_progress (exp_key VARCHAR PRIMARY KEY, hours_done INTEGER NOT NULL);
"""
_CLAIM_FIRST_HOUR = "INSERT INTO sim_progress VALUES (?, 1) ON CONFLICT DO NOTHING RETURNING hours_done"
_CLAIM_NEXT_HOUR = (
    "UPDATE sim_progress SET hours_done = hours_done + 1 WHERE exp_key = ? AND hours_done = ? RETURNING hours_done"
)


class Aggregate(NamedTuple):
    """Per-arm statistics of one experiment's window, and the SQL that computed them (literals written in)."""

    assignments: dict[str, int]
    metrics: dict[str, dict[str, MetricStats]]
    queries: tuple[str, ...]
    freshest_event_seconds: float | None

    def snapshot(self) -> MetricsSnapshot:
        """The statistics as the `MetricsSource` result, under their content-addressed id."""
        return MetricsSnapshot(snapshot_id=snapshot_id(self), assignments=self.assignments, metrics=self.metrics,
                               queries=self.queries, freshest_event_seconds=self.freshest_event_seconds)


class LocalMetrics:
    """A DuckDB-backed `MetricsSource`. Given a flag provider (any `FlagProvider` will do; only `read` is
    used), it first advances the simulated traffic of experiments that have a `simulation` block, up to the
    checkpoint's time.

    One connection per store; every call works on its own cursor, so activities may call it from many threads.
    """

    name = "local"

    def __init__(self, path: Path, flags: FlagReader | None = None) -> None:
        self._con = duckdb.connect(str(path))
        self._con.execute(_SCHEMA + RUNNING_AGGREGATE_SCHEMA)
        with self._con.cursor() as cur, _transaction(cur):
            RunningAggregate.upgrade(cur)
        self._running = RunningAggregate()
        for exp_key in self._running.unmarked(self._con):
            with contextlib.suppress(duckdb.TransactionException, duckdb.ConstraintException), \
                    self._con.cursor() as cur, _transaction(cur):  # another store folded it first
                self._running.fold_stored(cur, exp_key)
        self._simulator = Simulator(self, flags) if flags is not None else None

    def close(self) -> None:
        self._con.close()

    async def snapshot(
        self, registered: Registered, run_id: str, at_seconds: int, metrics: list[str]
    ) -> MetricsSnapshot:
        """Cumulative statistics from the run's start to `at_seconds`. The store keeps one run per experiment,
        so `run_id` selects nothing."""
        args = registered.args
        if self._simulator is not None:
            await self._simulator.advance(registered, at_seconds)
        result = await asyncio.to_thread(self.aggregate, args.exp_key, metrics, at_seconds, args.arms)
        return result.snapshot()

    def aggregate(
        self, exp_key: str, metrics: Sequence[str], until_seconds: int, arms: Sequence[str] = ()
    ) -> Aggregate:
        """Per arm: users exposed by `until_seconds` and, per metric, n, sum and sum of squares of their values,
        plus the CUPED sums when every exposed user has a pre-period value. `arms` appear even without users.
        From the running aggregate when it holds exactly this window, else by the statistics query."""
        names = list(dict.fromkeys(metrics))
        with self._con.cursor() as cur, _transaction(cur):  # every query reads one snapshot of the data
            folded = self._running.read(cur, exp_key, until_seconds)
            if folded is None:
                covariates = _metrics_with_pre_period(cur, exp_key, names)
                exposed = _exposed(cur, exp_key, until_seconds)
            else:
                covariates, exposed = folded.covariates(names), folded.exposure_rows
            early = bool(covariates) and 2 * exposed < max(covariates.values())
            query = aggregate_sql(exp_key, names, until_seconds, covariates, exposed_covariates_only=early)
            freshness = freshness_sql(exp_key, until_seconds, names)
            if folded is None:
                rows = fetch_dicts(cur, query)
                [(freshest,)] = cur.execute(freshness).fetchall()
            else:
                rows, freshest = folded.query_rows(names, covariates), folded.freshest(names)
        return aggregate_from_rows(rows, names, arms, covariates, (query, freshness),
                                   None if freshest is None else float(freshest))

    def hours_done(self, exp_key: str) -> int:
        """Simulated hours already written for the experiment."""
        with self._con.cursor() as cur:
            return _hours_done(cur, exp_key)

    def write_hour(self, exp_key: str, hour: int, rows: Rows) -> int:
        """Write `rows` as simulated hour `hour` and count the hour done, in one transaction, unless the progress
        says otherwise (a retry, or another writer got there first): then write nothing. The hours done after.

        The transaction first claims the hour (moves the progress from `hour` to `hour + 1`, one statement that
        also checks it), then appends the rows: an hour costs four statements and one commit. Writers racing on
        the same hour (two stores on one file; one store's simulator serialises its own) both update the progress
        row: DuckDB refuses all but the first with a TransactionException or ConstraintException, and the refused
        writer's transaction is rolled back whole."""
        with self._con.cursor() as cur, _transaction(cur):
            if hour == 0:
                claimed = cur.execute(_CLAIM_FIRST_HOUR, [exp_key]).fetchall()
            else:
                claimed = cur.execute(_CLAIM_NEXT_HOUR, [exp_key, hour]).fetchall()
            if not claimed:
                return _hours_done(cur, exp_key)
            _insert(cur, exp_key, rows)
            self._running.fold_rows(cur, exp_key, rows)
            return hour + 1

    def write_rows(self, exp_key: str, rows: Rows) -> None:
        """Bulk-load a batch in one transaction (numpy columns, no per-row Python), folded into the running
        aggregate. Concurrent loads of one experiment conflict on its mark: one raises and writes nothing."""
        with self._con.cursor() as cur, _transaction(cur):
            _insert(cur, exp_key, rows)
            self._running.fold_rows(cur, exp_key, rows)


def aggregate_from_rows(rows: Sequence[dict[str, Any]], metrics: Sequence[str], arms: Sequence[str],
                        covariates: Collection[str], queries: tuple[str, ...], freshest: float | None) -> Aggregate:
    """The statistics query's rows (one per arm: `n`, `sum_<i>`, `sum_sq_<i>`, `pre_n_<i>`, ... in micro-units, i
    the metric's index in `metrics`) as an Aggregate; `arms` come first and appear even without users. Any store's
    query with these columns means the same statistics (`covariates`: metrics with any pre-period row)."""
    by_arm = {row["arm"]: row for row in rows}
    for arm in arms:
        by_arm.setdefault(arm, {"arm": arm, "n": 0})
    ordered = [*arms, *sorted(set(by_arm) - set(arms))]
    return Aggregate(
        assignments={arm: int(by_arm[arm]["n"]) for arm in ordered},
        metrics={
            name: _metric_stats([by_arm[arm] for arm in ordered], index, name in covariates)
            for index, name in enumerate(metrics)
        },
        queries=queries,
        freshest_event_seconds=freshest,
    )


def snapshot_id(result: Aggregate) -> str:
    """`snap-` and 16 hex digits of the SHA-256 of the canonical JSON of the statistics and the queries: the
    same data and window give the same id, so a retried check reports the snapshot it already reported."""
    content = {
        "assignments": result.assignments,
        "metrics": {
            name: {arm: stats.model_dump(mode="json", exclude_none=True) for arm, stats in arms.items()}
            for name, arms in result.metrics.items()
        },
        "queries": result.queries,
        "freshest_event_seconds": result.freshest_event_seconds,
    }
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return "snap-" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]


def aggregate_sql(exp_key: str, metrics: Sequence[str], until_seconds: int, covariates: Collection[str], *,
                  exposed_covariates_only: bool = False) -> str:
    """The statistics query, literals written in so that it can be rerun as it stands.

    One hash aggregate by user over exposures, events and pre-period rows together gives every user's arm and
    values in a single pass, without a join; the outer query sums per arm. Each row carries one value `v` and
    what it is, `k`: metric i's event (k = i) or its covariate (k = i + the number of metrics), and each per-user
    sum takes only its own rows (FILTER), so rows stay four columns wide however many metrics there are. Arms
    enter as their number in name order (`arms`): that aggregate is nearly all of the query's time at scale, and
    a small integer state makes it cheaper than a string one. Pre-period rows have no time: at an early look
    most belong to users not exposed yet, and `exposed_covariates_only` keeps only those of users exposed in the
    window (a semi-join: a third of the work on day 1 of 14, 5-10% more when nearly everyone is exposed, which
    is why the store asks for it only when fewer than half the covariate rows can count). Users with events but
    no exposure in the window have no arm and are left out. `min(arm_no)` only matters if a user was logged in
    two arms: they are counted once, in the arm first in name order.
    """
    key, until = _literal(exp_key), int(until_seconds)
    window = f"exp_key = {key} AND at_s <= {until}"
    values = {index: name for index, name in enumerate(metrics)}
    pre = {index: name for index, name in values.items() if name in covariates}
    branches = [f"SELECT user_id, arm_no, NULL AS k, NULL AS v\n    FROM exposures JOIN arms USING (arm)\n"
                f"    WHERE {window}"]
    if values:
        branches.append(_tagged("metric_events", values, window))
    if pre:
        exposed = f" AND user_id IN (SELECT user_id FROM exposures WHERE {window})" if exposed_covariates_only else ""
        branches.append(_tagged("pre_period", {len(values) + i: name for i, name in pre.items()},
                                f"exp_key = {key}{exposed}"))
    per_user = ["min(arm_no) AS arm_no", *(f"sum(v) FILTER (k = {i}) AS y{i}" for i in values),
                *(f"sum(v) FILTER (k = {len(values) + i}) AS x{i}" for i in pre)]
    per_arm = ["arm", "count(*) AS n"]
    for i in values:
        per_arm += [f"sum(y{i}) AS sum_{i}", f"sum(y{i} * y{i}) AS sum_sq_{i}"]
    for i in pre:
        per_arm += [f"count(x{i}) AS pre_n_{i}", f"sum(x{i}) AS pre_sum_{i}", f"sum(x{i} * x{i}) AS pre_sum_sq_{i}",
                    f"sum(x{i} * y{i}) AS pre_sum_product_{i}"]
    union = "\n    UNION ALL\n    ".join(branches)
    return (
        f"-- per-arm sufficient statistics of {key} up to at_s {until}, values in units of 1/{VALUE_SCALE}\n"
        f"WITH arms AS (\n    SELECT arm, CAST(row_number() OVER (ORDER BY arm) AS INTEGER) AS arm_no\n"
        f"    FROM (SELECT DISTINCT arm FROM exposures WHERE {window})\n),\n"
        f"user_rows AS (\n    {union}\n),\n"
        f"per_user AS (\n    SELECT {_list(per_user, 11)}\n    FROM user_rows\n    GROUP BY user_id\n)\n"
        f"SELECT {_list(per_arm, 7)}\nFROM per_user JOIN arms USING (arm_no)\nGROUP BY arm\nORDER BY arm"
    )


def freshness_sql(exp_key: str, until_seconds: int, metrics: Sequence[str]) -> str:
    """The time of the latest exposure, or event of one of `metrics`, in the window: how fresh the snapshot's data
    is (as PostgreSQL's statement counts it). Other metrics' events do not count: a pipeline that still delivers
    them must not hide that the checked metrics have stopped arriving."""
    window = f"exp_key = {_literal(exp_key)} AND at_s <= {int(until_seconds)}"
    events = (f"\n    UNION ALL\n    SELECT at_s FROM metric_events WHERE {window} "
              f"AND metric IN ({', '.join(map(_literal, metrics))})") if metrics else ""
    return ("SELECT max(at_s) AS freshest_event_seconds FROM (\n"
            f"    SELECT at_s FROM exposures WHERE {window}{events}\n)")


def _tagged(table: str, tags: dict[int, str], where: str) -> str:
    """A table's rows of the given metrics as user_id, k (the metric's tag) and v (the value in micro-units)."""
    cases = " ".join(f"WHEN {_literal(metric)} THEN {k}" for k, metric in tags.items())
    return (
        f"SELECT {_list(['user_id', 'NULL AS arm_no', f'CASE metric {cases} END AS k', f'{MICRO_UNITS_SQL} AS v'], 11)}"
        f"\n    FROM {table}\n    WHERE {where} AND metric IN ({', '.join(map(_literal, tags.values()))})"
    )


def _list(items: Sequence[str], indent: int) -> str:
    """A select list, one item a line."""
    return (",\n" + " " * indent).join(items)


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _metric_stats(rows: list[dict[str, Any]], index: int, has_pre_period: bool) -> dict[str, MetricStats]:
    """One metric's statistics per arm, back in metric units. CUPED sums only when every exposed user of every
    arm has a covariate, so that it means the same for everyone (the statistics would read a missing one as 0)."""
    complete = has_pre_period and all(row.get(f"pre_n_{index}", 0) == row["n"] for row in rows)
    stats: dict[str, MetricStats] = {}
    for row in rows:
        pre = {
            "pre_sum": _units(row.get(f"pre_sum_{index}"), 1),
            "pre_sum_sq": _units(row.get(f"pre_sum_sq_{index}"), 2),
            "pre_sum_product": _units(row.get(f"pre_sum_product_{index}"), 2),
        } if complete else {}
        stats[row["arm"]] = MetricStats(
            n=int(row["n"]), sum=_units(row.get(f"sum_{index}"), 1), sum_sq=_units(row.get(f"sum_sq_{index}"), 2), **pre
        )
    return stats


def _units(micro_units: int | None, power: int) -> float:
    """An exact integer sum (of values, or of products of two values) back in metric units; NULL is 0."""
    return 0.0 if micro_units is None else micro_units / VALUE_SCALE**power


def _metrics_with_pre_period(cur: duckdb.DuckDBPyConnection, exp_key: str, metrics: list[str]) -> dict[str, int]:
    """Metrics with any pre-period row, and how many: only they get covariate columns (each one widens the
    aggregate)."""
    if not metrics:
        return {}
    placeholders = ", ".join("?" * len(metrics))
    found = cur.execute(f"SELECT metric, count(*) FROM pre_period WHERE exp_key = ? AND metric IN ({placeholders}) "
                        "GROUP BY metric", [exp_key, *metrics]).fetchall()
    return {metric: int(count) for metric, count in found}


def _exposed(cur: duckdb.DuckDBPyConnection, exp_key: str, until_seconds: int) -> int:
    """Exposure rows in the window (a count over two columns, pruned by their zonemaps)."""
    [(count,)] = cur.execute("SELECT count(*) FROM exposures WHERE exp_key = ? AND at_s <= ?",
                             [exp_key, int(until_seconds)]).fetchall()
    return int(count)


def fetch_dicts(cur: duckdb.DuckDBPyConnection, query: str) -> list[dict[str, Any]]:
    """The query's rows as dicts by column name (what `aggregate_from_rows` takes)."""
    rows = cur.execute(query).fetchall()
    columns = [column[0] for column in cur.description or ()]
    return [dict(zip(columns, row, strict=True)) for row in rows]


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
    """Append a batch: each table's numpy columns are copied in one INSERT that scans them where they are.

    `sim_batch` in the SQL is the local dict of numpy arrays below, found by DuckDB's replacement scan (the
    calling frame's variables), which reads the arrays as `register` would but without adding a view to the
    catalog and dropping it again: that catalog round trip was half the cost of a small batch (an hour of
    simulated traffic is a few hundred rows), and large batches load as fast as before."""
    tables: list[tuple[str, Exposures | MetricEvents | PrePeriod]] = [
        ("exposures", rows.exposures), ("metric_events", rows.metric_events), ("pre_period", rows.pre_period)]
    for table, batch in tables:
        sim_batch = {field.name: getattr(batch, field.name) for field in fields(batch)}
        if len(next(iter(sim_batch.values()))) == 0:
            continue
        names = ", ".join(sim_batch)
        cur.execute(f"INSERT INTO {table} (exp_key, {names}) SELECT ?, {names} FROM sim_batch", [exp_key])
