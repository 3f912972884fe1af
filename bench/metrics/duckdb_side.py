"""DuckDB: the embedded store (`LocalMetrics`) on a file. The bench loads its rows here first; the other engines
load the same rows from files this store exports."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import duckdb

from adapters.local_metrics import LocalMetrics
from adapters.simulator import Rows
from adapters.warehouse.metrics import WarehouseMetrics
from bench.metrics.data import ARMS, COVARIATE, EXP, HOUR, HOURS, METRICS, USER_ID_SQL, Data
from bench.metrics.explain import Profiling

TABLES = ("exposures", "metric_events", "pre_period")
MEMORY_LIMIT = "6GB"
"""DuckDB's cap here (its default is 80% of RAM): at 100M rows it would otherwise cache 15 GB of a shared
machine's 23; past the cap it spills to a temp file beside the database."""
EVENT_SLICE = 10_000_000
"""Events are copied in at most this many at a time: at 100M rows the numpy columns and DuckDB's copy of them
would otherwise both hold all 78M events at once."""


def build(path: Path, experiments: Sequence[tuple[str, Data]]) -> float:
    """The store's file with each experiment's rows appended in time order, one `loaded_at` per simulated hour (the
    hour + 1, as hourly pipeline loads number them), and the store's load counter past them; the seconds it took."""
    LocalMetrics(path).close()  # the store's own schema
    started = time.perf_counter()
    with duckdb.connect(str(path)) as con:
        con.execute(f"SET memory_limit = '{MEMORY_LIMIT}'")
        for exp_key, data in experiments:
            _load(con, exp_key, data)
            con.execute("INSERT INTO load_batches VALUES (?, ?)", [exp_key, HOURS])
        con.execute("CHECKPOINT")
    return time.perf_counter() - started


def _load(con: duckdb.DuckDBPyConnection, exp_key: str, data: Data) -> None:
    """Exposures and covariates in the users' time order (a covariate loads with its user's exposure), then the
    events in time order, in slices; ids and names are made in SQL from the numpy columns."""
    users = {"hour": data.exposure_hour, "rank": data.exposure_rank, "arm": data.arm, "at_s": data.exposure_at,
             "pre": data.pre_value}
    con.register("users", users)
    con.execute(f"INSERT INTO exposures SELECT ?, {USER_ID_SQL}, {_pick('arm', ARMS)}, at_s, "
                "hour + 1 FROM users", [exp_key])
    con.execute(f"INSERT INTO pre_period SELECT ?, {USER_ID_SQL}, ?, pre, hour + 1 FROM users", [exp_key, COVARIATE])
    con.unregister("users")
    for start in range(0, len(data.event_user), EVENT_SLICE):
        part = slice(start, start + EVENT_SLICE)
        users_of = data.event_user[part]
        events = {"hour": data.exposure_hour[users_of], "rank": data.exposure_rank[users_of],
                  "metric": data.event_metric[part], "value": data.event_value[part], "at_s": data.event_at[part]}
        con.register("events", events)
        con.execute(f"INSERT INTO metric_events SELECT ?, {USER_ID_SQL}, {_pick('metric', METRICS)}, value, at_s, "
                    f"at_s // {HOUR} + 1 FROM events", [exp_key])
        con.unregister("events")


def _pick(column: str, names: Sequence[str]) -> str:
    return f"[{', '.join(repr(name) for name in names)}][{column} + 1]"


def export(path: Path, directory: Path, kind: str) -> dict[str, Path]:
    """The three tables as files (`parquet` or `csv`, no header), the same rows in the same order, for another
    engine to load."""
    files = {}
    options = "FORMAT parquet" if kind == "parquet" else "FORMAT csv, HEADER false"
    with duckdb.connect(str(path), read_only=True) as con:
        for table in TABLES:
            files[table] = directory / f"{table}.{kind}"
            con.execute(f"COPY {table} TO '{files[table]}' ({options})")
    return files


class DuckDBBench:
    """The embedded store as the product opens it; check batches go in through its own `write_rows`."""

    name = "duckdb"

    def __init__(self, path: Path) -> None:
        self.store = LocalMetrics(path)
        self.metrics: WarehouseMetrics = self.store.warehouse
        self._con = duckdb.connect(str(path))  # the same database instance as the store's
        self._con.execute(f"SET memory_limit = '{MEMORY_LIMIT}'")

    def append(self, rows: Rows) -> None:
        self.store.write_rows(EXP, rows)

    def fetch(self, sql: str) -> Iterable[tuple[Any, ...]]:
        return _stream(self._con.cursor(), sql)

    def explain(self, rows: Rows, until: int) -> list[tuple[str, list[str]]]:
        """One more check, after `rows`, with each of its statements profiled (EXPLAIN ANALYZE), in order."""
        self.append(rows)
        profiling = Profiling(self.metrics.engine, self._con)
        self.metrics.engine = profiling
        try:
            self.metrics.aggregate(EXP, METRICS, until, ARMS)
        finally:
            self.metrics.engine = profiling.inner
        return profiling.profiles

    def close(self) -> None:
        self._con.close()
        self.store.close()


def _stream(cur: duckdb.DuckDBPyConnection, sql: str) -> Iterator[tuple[Any, ...]]:
    with cur:
        cur.execute(sql)
        while batch := cur.fetchmany(100_000):
            yield from batch
