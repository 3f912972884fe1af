"""Benchmark of the metrics check at scale: per-arm statistics of one 14-day window over 1M and 10M rows.
On DuckDB and PostgreSQL, against pulling the rows into Python; the data, what is timed and the targets:
bench/README.md.

    .venv/bin/python -m bench.metrics_bench [--quick] [--runs N] [--seed S] [--no-postgres]
"""
from __future__ import annotations

import argparse
import asyncio
import gc
import json
import math
import os
import resource
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import psycopg
from numpy.typing import NDArray

from adapters.local_metrics import Aggregate, LocalMetrics, aggregate_from_rows, fetch_dicts
from adapters.postgres_metrics import PostgresMetrics, WarehouseTables, statistics_sql
from adapters.postgres_rollup import Rollup
from adapters.running_aggregate import READ, VALUE_SCALE

EXP = "bench-exp"
EARLIER = "earlier-exp"  # an experiment that ran before, a tenth the size: the store is shared
ARMS = ("control", "treatment")
METRICS = ("sessions", "revenue", "converted")
EVENTS_PER_USER = {"sessions": 2.0, "revenue": 1.5, "converted": 0.1}
COVARIATE = "revenue"
DAYS = 14
HORIZON = DAYS * 86_400
EARLY = 86_400  # an early look: the first day
TARGET_SECONDS = 1.0  # the 10M-row check on the embedded store
TARGET_RATIO = 20.0

Ints = NDArray[np.int64]


@dataclass(frozen=True)
class Data:
    """The rows as numpy columns: users by index (ids are made in SQL), events sorted by time."""

    exposure_hour: Ints
    exposure_rank: Ints  # the user's index within the exposure hour
    arm: Ints
    exposure_at: Ints
    event_user: Ints
    event_metric: Ints
    event_value: NDArray[np.float64]
    event_at: Ints
    pre_value: NDArray[np.float64]

    @property
    def users(self) -> int:
        return len(self.arm)

    @property
    def rows(self) -> int:
        return self.users + len(self.event_user)


def generate(rows: int, seed: int) -> Data:
    """`rows` exposure and event rows (exactly), deterministic for the seed."""
    rng = np.random.default_rng([seed, rows])
    users = round(rows / (1 + sum(EVENTS_PER_USER.values())))
    exposure_at = np.sort(rng.integers(0, HORIZON, users))
    hour = exposure_at // 3600
    first_of_hour = np.searchsorted(hour, hour, side="left")
    events = rows - users
    event_user = rng.integers(0, users, events)
    shares = np.array(list(EVENTS_PER_USER.values()))
    event_metric = rng.choice(len(METRICS), size=events, p=shares / shares.sum())
    # A delay after exposure, exponential with mean 1 day truncated to what is left of the experiment.
    left = (HORIZON - 1 - exposure_at[event_user]).astype(np.float64)
    mean = 86_400.0
    delay = -mean * np.log1p(-rng.random(events) * -np.expm1(-left / mean))
    event_at = exposure_at[event_user] + np.minimum(delay.astype(np.int64), left.astype(np.int64))
    revenue = METRICS.index("revenue")
    value = np.where(event_metric == revenue, np.round(rng.gamma(2.0, 10.0, events), 2), 1.0)
    order = np.argsort(event_at, kind="stable")
    return Data(exposure_hour=hour, exposure_rank=np.arange(users) - first_of_hour,
                arm=rng.integers(0, len(ARMS), users), exposure_at=exposure_at, event_user=event_user[order],
                event_metric=event_metric[order], event_value=value[order], event_at=event_at[order],
                pre_value=np.round(rng.gamma(2.0, 15.0, users), 2))


def load_duckdb(path: Path, experiments: Sequence[tuple[str, Data]]) -> float:
    """Create the store's tables (through the adapter) and bulk-insert each experiment's numpy columns, in order;
    the seconds it took."""
    LocalMetrics(path).close()
    started = time.perf_counter()
    user_id = "'u' || lpad(hour::VARCHAR, 5, '0') || lpad(rank::VARCHAR, 6, '0')"
    with duckdb.connect(str(path)) as con:
        for exp_key, data in experiments:
            con.register("users", {"hour": data.exposure_hour, "rank": data.exposure_rank, "arm": data.arm,
                                   "at_s": data.exposure_at, "pre": data.pre_value})
            con.execute(f"CREATE OR REPLACE TEMP TABLE ids AS SELECT row_number() OVER () - 1 AS u, {user_id} AS "
                        "user_id, * FROM users")
            con.execute(f"INSERT INTO exposures SELECT ?, user_id, {_pick('arm', ARMS)}, at_s FROM ids ORDER BY u",
                        [exp_key])
            con.execute("INSERT INTO pre_period SELECT ?, user_id, ?, pre FROM ids ORDER BY u", [exp_key, COVARIATE])
            con.register("events", {"u": data.event_user, "metric": data.event_metric, "value": data.event_value,
                                    "at_s": data.event_at})
            con.execute(f"INSERT INTO metric_events SELECT ?, ids.user_id, {_pick('events.metric', METRICS)}, "
                        "events.value, events.at_s FROM events JOIN ids USING (u) ORDER BY events.at_s", [exp_key])
            con.unregister("users")
            con.unregister("events")
        con.execute("CHECKPOINT")
    return time.perf_counter() - started


def _pick(column: str, names: Sequence[str]) -> str:
    return f"[{', '.join(repr(name) for name in names)}][{column} + 1]"


# --- the baseline: the rows into Python, aggregated there -------------------------------------------------


Fetch = Callable[[str, Sequence[Any]], Iterable[tuple[Any, ...]]]


def baseline(fetch: Fetch, placeholder: str, metrics: Sequence[str], until: int,
             arms: Sequence[str]) -> Aggregate:
    """The statistics from the raw rows: every user's value summed in Python ints (micro-units), as the store's
    SQL defines it. `fetch(sql, params)` yields the rows of a query."""
    p = placeholder
    arm_of: dict[str, str] = {}
    freshest: int | None = None
    for user, arm, at_s in fetch(f"SELECT user_id, arm, at_s FROM exposures WHERE exp_key = {p} AND at_s <= {p}",
                                 [EXP, until]):
        if user not in arm_of or arm < arm_of[user]:
            arm_of[user] = arm
        freshest = at_s if freshest is None or at_s > freshest else freshest
    index = {name: i for i, name in enumerate(metrics)}
    values: list[dict[str, int]] = [{} for _ in metrics]
    names = ", ".join([p] * len(metrics))
    for user, metric, value, at_s in fetch(f"SELECT user_id, metric, value, at_s FROM metric_events WHERE exp_key = "
                                           f"{p} AND at_s <= {p} AND metric IN ({names})", [EXP, until, *metrics]):
        sums = values[index[metric]]
        sums[user] = sums.get(user, 0) + _micro(value)
        freshest = at_s if freshest is None or at_s > freshest else freshest
    pre: list[dict[str, int]] = [{} for _ in metrics]
    for user, metric, value in fetch(f"SELECT user_id, metric, value FROM pre_period WHERE exp_key = {p} AND "
                                     f"metric IN ({names})", [EXP, *metrics]):
        covariate = pre[index[metric]]
        covariate[user] = covariate.get(user, 0) + _micro(value)
    rows: dict[str, dict[str, int]] = {}
    for user, arm in arm_of.items():
        row = rows.setdefault(arm, {"n": 0})
        row["n"] += 1
        for i in range(len(metrics)):
            y = values[i].get(user, 0)
            row[f"sum_{i}"] = row.get(f"sum_{i}", 0) + y
            row[f"sum_sq_{i}"] = row.get(f"sum_sq_{i}", 0) + y * y
            if pre[i]:
                x = pre[i].get(user)
                if x is not None:
                    row[f"pre_n_{i}"] = row.get(f"pre_n_{i}", 0) + 1
                    row[f"pre_sum_{i}"] = row.get(f"pre_sum_{i}", 0) + x
                    row[f"pre_sum_sq_{i}"] = row.get(f"pre_sum_sq_{i}", 0) + x * x
                    row[f"pre_sum_product_{i}"] = row.get(f"pre_sum_product_{i}", 0) + x * y
    covariates = {name for name, i in index.items() if pre[i]}
    return aggregate_from_rows([{"arm": arm, **row} for arm, row in sorted(rows.items())], list(metrics), arms,
                               covariates, (), None if freshest is None else float(freshest))


def _micro(value: float) -> int:
    """round(value * 1e6) as DuckDB rounds (half away from zero)."""
    scaled = value * VALUE_SCALE
    return math.floor(scaled + 0.5) if scaled >= 0 else -math.floor(-scaled + 0.5)


def same_statistics(ours: Aggregate, theirs: Aggregate) -> bool:
    return (ours.assignments == theirs.assignments and ours.metrics == theirs.metrics
            and ours.freshest_event_seconds == theirs.freshest_event_seconds)


# --- timing --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Timing:
    median: float
    best: float
    runs: int
    cpu: float | None = None  # this process's CPU seconds (all threads) per run, median: DuckDB runs in-process


def timed(call: Callable[[], Aggregate], runs: int, warmup: bool = True) -> tuple[Timing, Aggregate]:
    if warmup:
        call()
    seconds: list[float] = []
    cpu: list[float] = []
    result: Aggregate | None = None
    for _ in range(runs):
        started, cpu_started = time.perf_counter(), _cpu_seconds()
        result = call()
        seconds.append(time.perf_counter() - started)
        cpu.append(_cpu_seconds() - cpu_started)
    assert result is not None
    return Timing(statistics.median(seconds), min(seconds), runs, statistics.median(cpu)), result


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@dataclass(frozen=True)
class Row:
    rows: int
    store: str
    ours: Timing
    baseline: float
    identical: bool
    target_seconds: float | None

    @property
    def ratio(self) -> float:
        return self.baseline / self.ours.median

    def verdict(self) -> tuple[str, bool]:
        parts = [f">= {TARGET_RATIO:g}x"]
        ok = self.ratio >= TARGET_RATIO and self.identical
        if self.target_seconds is not None:
            parts.insert(0, f"< {self.target_seconds:g} s")
            ok = ok and self.ours.median < self.target_seconds
        return " and ".join(parts), ok


def table(results: list[Row]) -> list[str]:
    header = (f"{'rows':>6}  {'store':<13}{'ours s':>8}{'runs':>5}{'best':>8}{'cpu s':>7}{'baseline s':>12}"
              f"{'ratio':>10}  {'target':<20}{'same stats':<12}result")
    lines = [header, "-" * len(header)]
    for r in results:
        target, ok = r.verdict()
        cpu = "-" if r.ours.cpu is None else f"{r.ours.cpu:.2f}"
        lines.append(f"{_millions(r.rows):>6}  {r.store:<13}{r.ours.median:>8.3f}{r.ours.runs:>5}{r.ours.best:>8.3f}"
                     f"{cpu:>7}"
                     f"{r.baseline:>12.2f}{r.ratio:>9.1f}x  {target:<20}{'yes' if r.identical else 'NO':<12}"
                     f"{'PASS' if ok else 'FAIL'}")
    return lines


def _millions(rows: int) -> str:
    return f"{rows / 1e6:.0f}M" if rows >= 1_000_000 else f"{rows / 1e3:.0f}k"


# --- DuckDB ------------------------------------------------------------------------------------------------


def bench_duckdb(path: Path, data: Data, seed: int, runs: int) -> tuple[list[Row], Aggregate, list[str]]:
    """The store's check (from its running aggregate) and the recorded statistics query rerun, each against the
    baseline; the aggregate's fold of the loaded rows is timed as the store opens the file."""
    loaded = load_duckdb(path, [(EARLIER, generate(data.rows // 10, seed + 1)), (EXP, data)])
    opened = time.perf_counter()
    store = LocalMetrics(path)
    folded = time.perf_counter() - opened
    try:
        ours, result = timed(lambda: store.aggregate(EXP, METRICS, HORIZON, ARMS), runs)
        with duckdb.connect(str(path)) as con:  # the same database instance as the store
            def fetch(query: str, params: Sequence[Any]) -> Iterable[tuple[Any, ...]]:
                cur = con.execute(query, list(params))
                while batch := cur.fetchmany(100_000):
                    yield from batch

            seconds, expected = timed_baseline(fetch, "?")
            rerun, reran = timed(lambda: rerun_recorded(con, result), runs)
            early, early_result = timed(lambda: store.aggregate(EXP, METRICS, EARLY, ARMS), 3)
            plan = [f"  DuckDB, {_millions(data.rows)} rows (loaded in {loaded:.1f} s, folded into the running "
                    f"aggregate in {folded:.1f} s as the store opened the file):",
                    f"    the check, whole window ({ours.median * 1e3:.1f} ms): read from the running aggregate:"]
            scans, profile = duckdb_scans(con, READ, [EXP])
            plan += [*(f"      {line}" for line in scans), f"      {profile}"]
            for label, query in ((f"the recorded statistics query rerun, whole window ({rerun.median:.3f} s)",
                                  result.queries[0]),
                                 (f"early look, day 1, by the query ({early.median:.3f} s)", early_result.queries[0])):
                scans, profile = duckdb_scans(con, query)
                plan += [f"    {label}:", *(f"      {line}" for line in scans), f"      {profile}"]
    finally:
        store.close()
    target = TARGET_SECONDS if data.rows >= 10_000_000 else None
    return ([Row(data.rows, "duckdb", ours, seconds, same_statistics(result, expected), target),
             Row(data.rows, "duckdb sql", rerun, seconds, same_statistics(reran, expected), None)], result, plan)


def rerun_recorded(con: duckdb.DuckDBPyConnection, recorded: Aggregate) -> Aggregate:
    """The snapshot's recorded SQL run as it stands (what an analyst reruns, and what the store runs for a window
    the running aggregate does not hold), turned into statistics the same way."""
    query, freshness = recorded.queries
    rows = fetch_dicts(con, query)
    [(freshest,)] = con.execute(freshness).fetchall()
    return aggregate_from_rows(rows, METRICS, ARMS, {COVARIATE}, recorded.queries,
                               None if freshest is None else float(freshest))


def timed_baseline(fetch: Fetch, placeholder: str) -> tuple[float, Aggregate]:
    """One run of the baseline, with the garbage collector off (it would otherwise rescan the millions of live
    dict entries again and again, and double the time at 10M rows: a fair baseline does not pay for that)."""
    gc.collect()
    gc.disable()
    try:
        started = time.perf_counter()
        result = baseline(fetch, placeholder, METRICS, HORIZON, ARMS)
        return time.perf_counter() - started, result
    finally:
        gc.enable()


def duckdb_scans(con: duckdb.DuckDBPyConnection, query: str, params: Sequence[Any] = ()) -> tuple[list[str], str]:
    """The query run under EXPLAIN ANALYZE: every table scan (kind, filters, row groups read) and where the
    time went, by operator (DuckDB's own profile, thread time summed)."""
    [(_, text)] = con.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + query, list(params)).fetchall()
    found: list[str] = []
    seconds: dict[str, float] = {}

    def walk(node: dict[str, Any]) -> None:
        kind = node.get("type", "?")
        seconds[kind] = seconds.get(kind, 0.0) + float(node.get("timing") or 0.0)
        if kind == "TABLE_SCAN":
            info = node.get("extra_info", {})
            read, total = node.get("row_groups_scanned", 0), node.get("total_row_groups_to_scan", 0)
            skipped = f", {total - read} skipped by their zonemaps" if read < total else ""
            filters = info.get("Filters") or "-"
            found.append(f"{info.get('Table', '?').split('.')[-1]}: {info.get('Type', '?')} (columnar), filters "
                         f"{filters if isinstance(filters, str) else ' AND '.join(filters)}; row groups read "
                         f"{read} of {total}{skipped}")
        for child in node.get("children", []):
            walk(child)

    for node in json.loads(text)["operator"]:
        walk(node)
    total = sum(seconds.values()) or 1.0
    top = sorted(seconds.items(), key=lambda item: -item[1])[:4]
    profile = ", ".join(f"{kind} {share / total:.0%}" for kind, share in top)
    scans = [" ".join(line.split()) for line in found]
    why = ["the arm list", "the rows", "the exposed users whose covariates count"]
    counted = [line + (f" (read {scans.count(line)} times: {', '.join(why[:scans.count(line)])})"
                       if scans.count(line) > 1 else "") for line in dict.fromkeys(scans)]
    return counted, f"operator time ({total:.2f} s over all threads): {profile}"


# --- PostgreSQL ---------------------------------------------------------------------------------------------


PG_LOAD_BUDGET_SECONDS = 300.0  # loading and folding: about 150 s at 10M rows
PG_INDEXES = ("exposures_exp_key_at_s", "metric_events_exp_key_metric_at_s", "pre_period_exp_key_metric_user_id")


def postgres_binaries() -> bool:
    return bool(sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl")))


def export_csv(duckdb_path: Path, directory: Path) -> dict[str, Path]:
    """The store's three tables as CSV files, for COPY into PostgreSQL: the same rows, in the same order."""
    files = {}
    with duckdb.connect(str(duckdb_path), read_only=True) as con:
        for table in ("exposures", "metric_events", "pre_period"):
            files[table] = directory / f"{table}.csv"
            con.execute(f"COPY {table} TO '{files[table]}' (FORMAT csv, HEADER false)")
    return files


def load_postgres(dsn: str, files: dict[str, Path]) -> float:
    """Fresh tables from the adapter's DDL, COPY without the indexes, then the indexes (the same DDL again) and
    VACUUM ANALYZE; the seconds it took."""
    started = time.perf_counter()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS exposures, metric_events, pre_period, sim_progress, "
                     + Rollup(WarehouseTables()).own_tables())
        asyncio.run(_ensure_schema(dsn))
        conn.execute(f"DROP INDEX {', '.join(PG_INDEXES)}")
        conn.execute("SET maintenance_work_mem = '512MB'")
        for table, path in files.items():
            with conn.cursor() as cur, cur.copy(f"COPY {table} FROM STDIN (FORMAT csv)") as copy, path.open("rb") as f:
                while chunk := f.read(1 << 20):
                    copy.write(chunk)
        asyncio.run(_ensure_schema(dsn))
        conn.execute("VACUUM ANALYZE exposures, metric_events, pre_period")
    return time.perf_counter() - started


async def _ensure_schema(dsn: str, rollup: bool = False) -> None:
    store = PostgresMetrics(dsn, rollup=rollup)
    await store.open()
    try:
        await store.ensure_schema()
    finally:
        await store.close()


def install_rollup(dsn: str) -> float:
    """Install the rollup's triggers on the loaded tables, which folds every stored row; the seconds it took."""
    started = time.perf_counter()
    asyncio.run(_ensure_schema(dsn, rollup=True))
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE abrollout_rollup_marks, abrollout_rollup_arms")
    return time.perf_counter() - started


async def _postgres_ours(dsn: str, runs: int, warmup: bool, rollup: bool) -> tuple[Timing, Aggregate]:
    store = PostgresMetrics(dsn, statement_timeout=600.0, rollup=rollup)
    await store.open()
    try:
        if warmup:
            await store.aggregate(EXP, METRICS, HORIZON, ARMS)
        seconds: list[float] = []
        for _ in range(runs):
            started = time.perf_counter()
            result = await store.aggregate(EXP, METRICS, HORIZON, ARMS)
            seconds.append(time.perf_counter() - started)
        return Timing(statistics.median(seconds), min(seconds), runs), result
    finally:
        await store.close()


def bench_postgres(dsn: str, data: Data, files: dict[str, Path], runs: int,
                   embedded: Aggregate) -> tuple[list[Row], list[str], float]:
    """The check from the rollup and the statistics query (what runs without it, and what the snapshot
    records), each against the baseline; the rollup's install, which folds the loaded rows, is timed."""
    loaded = load_postgres(dsn, files)
    folded = install_rollup(dsn)
    ours, result = asyncio.run(_postgres_ours(dsn, runs, warmup=True, rollup=True))
    # At 10M a run of the query takes tens of seconds: one run, no warm-up (VACUUM ANALYZE has just read every page).
    big = data.rows >= 10_000_000
    query, queried = asyncio.run(_postgres_ours(dsn, 1 if big else runs, warmup=not big, rollup=False))
    with psycopg.connect(dsn) as conn:
        def fetch(query: str, params: Sequence[Any]) -> Iterable[tuple[Any, ...]]:
            with conn.cursor() as cur:
                cur.execute(query, list(params))
                while batch := cur.fetchmany(100_000):
                    yield from batch

        seconds, expected = timed_baseline(fetch, "%s")
        plan = [f"  PostgreSQL, {_millions(data.rows)} rows (COPY, indexes and VACUUM ANALYZE in {loaded:.1f} s; "
                f"the rollup installed, folding them, in {folded:.1f} s)",
                f"    the check, whole window ({ours.median * 1e3:.1f} ms): read from the rollup:"]
        [(explained,)] = conn.execute("EXPLAIN (FORMAT JSON) " + Rollup(WarehouseTables()).read_sql(),
                                      [EXP]).fetchall()
        plan += [f"      {line}" for line in postgres_scans(explained[0]["Plan"])]
        for label, until in (("the statistics query, whole window", HORIZON), ("early look, day 1", EARLY)):
            statement = statistics_sql(WarehouseTables(), EXP, METRICS, until)
            [(explained,)] = conn.execute("EXPLAIN (FORMAT JSON) " + statement).fetchall()
            plan += [f"    {label}:", *(f"      {line}" for line in postgres_scans(explained[0]["Plan"]))]
    rows = [Row(data.rows, "postgres", ours, seconds, same_statistics(result, expected)
                and same_statistics(result, embedded), None),
            Row(data.rows, "postgres sql", query, seconds, same_statistics(queried, expected), None)]
    return rows, plan, loaded + folded


def postgres_scans(node: dict[str, Any]) -> list[str]:
    """Every scan node of a PostgreSQL plan: the relation and how it is read."""
    found: list[str] = []
    if "Relation Name" in node:
        index = f" using {node['Index Name']}" if "Index Name" in node else ""
        inner = [child for child in node.get("Plans", []) if child.get("Node Type") == "Bitmap Index Scan"]
        index += "".join(f" (bitmap of {child['Index Name']})" for child in inner)
        condition = node.get("Index Cond") or node.get("Recheck Cond") or node.get("Filter") or "-"
        found.append(f"{node['Relation Name']}: {node['Node Type']}{index}, "
                     f"{'parallel, ' if node.get('Parallel Aware') else ''}condition {condition}")
    for child in node.get("Plans", []):
        found += postgres_scans(child)
    return found


def run_postgres(directory: Path, stores: list[tuple[Data, Path, Aggregate]],
                 runs: int) -> tuple[list[Row], list[str]]:
    """Start a throwaway server, bench every size whose load fits the budget, stop the server (by its pid)."""
    if not postgres_binaries():
        return [], ["  PostgreSQL: not installed here, so not measured; `make test-integration` installs it "
                    "(Debian's postgresql), then rerun this bench"]
    from tests.support.servers import postgres as server_helpers

    server = server_helpers.start()
    rows: list[Row] = []
    plans: list[str] = []
    try:
        dsn = server.create_database("metrics_bench")
        per_million: float | None = None
        for data, path, embedded in stores:
            if per_million is not None and per_million * data.rows / 1e6 > PG_LOAD_BUDGET_SECONDS:
                plans.append(f"  PostgreSQL, {_millions(data.rows)} rows: not loaded, the load would take about "
                             f"{per_million * data.rows / 1e6:.0f} s here (over {PG_LOAD_BUDGET_SECONDS:.0f} s)")
                continue
            files = export_csv(path, directory)
            measured, plan, loaded = bench_postgres(dsn, data, files, runs, embedded)
            per_million = loaded / (data.rows / 1e6)
            for file in files.values():
                file.unlink()
            rows += measured
            plans += plan
    finally:
        server.stop()
    return rows, plans


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="100k and 1M rows (a smoke run)")
    parser.add_argument("--runs", type=int, default=5, help="timed runs of ours per size, after a warm-up")
    parser.add_argument("--seed", type=int, default=20240601)
    parser.add_argument("--no-postgres", action="store_true", help="only the embedded store")
    args = parser.parse_args(argv)
    sizes = (100_000, 1_000_000) if args.quick else (1_000_000, 10_000_000)
    started = time.perf_counter()
    load_before = os.getloadavg()[0]
    directory = Path(tempfile.mkdtemp(prefix="abrollout-metrics-bench-"))
    directory.chmod(0o755)
    results: list[Row] = []
    plans: list[str] = []
    try:
        stores: list[tuple[Data, Path, Aggregate]] = []
        for rows in sizes:
            data = generate(rows, args.seed)
            path = directory / f"metrics-{rows}.duckdb"
            duckdb_rows, result, plan = bench_duckdb(path, data, args.seed, args.runs)
            results += duckdb_rows
            plans += plan
            stores.append((data, path, result))
        if not args.no_postgres:
            pg_rows, pg_plans = run_postgres(directory, stores, args.runs)
            results += pg_rows
            plans += pg_plans
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    print(f"metrics check bench: seed {args.seed}, {len(ARMS)} arms, metrics {', '.join(METRICS)} "
          f"({COVARIATE} with a pre-period covariate), a {DAYS}-day window, every row in it (the last look)")
    print(f"ours = the adapter's aggregate (duckdb: from its running aggregate; duckdb sql: the recorded statistics "
          f"query rerun), median of the runs after a warm-up (cpu s: DuckDB's CPU time per run, "
          f"all threads); baseline = the rows into Python, one run. Machine: {os.cpu_count()} CPUs, load average "
          f"{load_before:.1f} at the start and {os.getloadavg()[0]:.1f} at the end (other work inflates every timing)")
    for line in table(results):
        print(line)
    print()
    print("Query plans:")
    for line in plans:
        print(line)
    print(f"wall time {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
