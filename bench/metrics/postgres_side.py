"""PostgreSQL: a throwaway server on loopback (tests/support/servers/postgres.py), the tables as the adapter creates
them, loaded with COPY; check batches go in through the adapter's own `write_hour`, as the simulator writes."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import psycopg

from adapters.postgres_metrics import ROLLUP_PREFIX, PostgresMetrics, WarehouseTables
from adapters.simulator import Rows
from adapters.warehouse.metrics import WarehouseMetrics
from bench.metrics.data import EXP, HOURS
from bench.metrics.duckdb_side import TABLES
from bench.metrics.measure import Bench
from bench.metrics.side import Unavailable

STATEMENT_TIMEOUT = 1800.0  # the full statement at 10M rows takes tens of seconds on two busy cores


class PostgresBench:
    """The adapter over the loaded tables, with its rollup."""

    name = "postgres"

    def __init__(self, dsn: str) -> None:
        self.store = PostgresMetrics(dsn, rollup=True, statement_timeout=STATEMENT_TIMEOUT)
        asyncio.run(self.store.open())
        self.metrics: WarehouseMetrics = self.store.warehouse
        self._dsn, self._hour = dsn, HOURS

    def append(self, rows: Rows) -> None:
        self._hour = self.store.write_hour(EXP, self._hour, rows)

    def fetch(self, sql: str) -> Iterable[tuple[Any, ...]]:
        return _stream(self._dsn, sql)

    def close(self) -> None:
        asyncio.run(self.store.close())


async def _ensure_schema(dsn: str) -> None:
    """The adapter's tables and indexes (those missing)."""
    store = PostgresMetrics(dsn)
    await store.open()
    try:
        await store.ensure_schema()
    finally:
        await store.close()


def _stream(dsn: str, sql: str) -> Iterator[tuple[Any, ...]]:
    """The rows through a server-side cursor, 100,000 at a time."""
    with psycopg.connect(dsn) as conn, conn.cursor(name="baseline") as cur:
        cur.itersize = 100_000
        cur.execute(sql)
        yield from cur


class PostgresSide:
    """One server for the whole run; each size gets fresh tables."""

    name = "postgres"
    max_rows: int | None = 10_000_000
    max_runs: int | None = None
    files: str | None = "csv"

    def __init__(self) -> None:
        self._server: Any = None
        self._dsn = ""

    def start(self, directory: Path) -> None:
        if self._server is not None:
            return
        if not sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl")):
            raise Unavailable("PostgreSQL is not installed here, so not measured; `make test-integration` installs "
                              "it (Debian's postgresql), then rerun this bench")
        from tests.support.servers import postgres as servers

        self._server = servers.start()
        self._dsn = self._server.create_database("metrics_bench")

    def load(self, path: Path, files: dict[str, Path]) -> Bench:
        """Fresh tables from the adapter's DDL; COPY without their indexes, then the indexes (the same DDL again)
        and VACUUM ANALYZE, as a warehouse's bulk load would; the experiment's progress at the loaded hours, so that
        `write_hour` numbers the next batch after them."""
        tables = WarehouseTables()
        rollup = ", ".join(f"{ROLLUP_PREFIX}{kind}" for kind in ("marks", "users", "sums"))
        with psycopg.connect(self._dsn, autocommit=True) as conn:
            conn.execute(f"DROP TABLE IF EXISTS {', '.join(TABLES)}, {tables.sim_progress}, {rollup}")
            asyncio.run(_ensure_schema(self._dsn))
            indexes = [name for (name,) in conn.execute(
                "SELECT indexname FROM pg_indexes WHERE tablename = ANY(%s)", [list(TABLES)]).fetchall()]
            conn.execute(f"DROP INDEX {', '.join(indexes)}")
            conn.execute("SET maintenance_work_mem = '512MB'")
            for table in TABLES:
                with conn.cursor() as cur, cur.copy(f"COPY {table} FROM STDIN (FORMAT csv)") as copy, \
                        files[table].open("rb") as file:
                    while chunk := file.read(1 << 20):
                        copy.write(chunk)
            asyncio.run(_ensure_schema(self._dsn))
            conn.execute(f"INSERT INTO {tables.sim_progress} VALUES (%s, %s)", [EXP, HOURS])
            conn.execute(f"VACUUM ANALYZE {', '.join(TABLES)}")
        return PostgresBench(self._dsn)

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None
