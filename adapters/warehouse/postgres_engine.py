"""PostgreSQL: the generator's SQL on a pool of synchronous connections (the metrics source calls it from threads)."""

from __future__ import annotations

import re
from collections.abc import Sequence

from psycopg import sql
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from abrollout.warehouse.dialects import render
from abrollout.warehouse.rollup import Table
from adapters.warehouse.engine import Row

ANALYZE_AFTER_ROWS = 10_000
_INSERT = re.compile(r"\s*INSERT INTO ((?:\"[^\"]+\"|\w+)(?:\.(?:\"[^\"]+\"|\w+))?)")

SCHEMA_LOCK = "SELECT pg_advisory_xact_lock(hashtext('abrollout.schema'))"
"""Taken by every transaction that creates abrollout's tables: workers creating the same tables at once would
otherwise collide in the catalog even with IF NOT EXISTS."""


class PostgresEngine:
    """Statements on pooled connections, each in its own transaction. Exact sums arrive as the text the generator
    casts them to, and stay text until `results` turns them into Python ints."""

    name = dialect = "postgres"

    def __init__(self, pool: ConnectionPool) -> None:
        self._pool = pool

    def query(self, statement: str) -> list[Row]:
        with self._pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            cur.execute(statement)
            return cur.fetchall()

    def execute(self, statement: str) -> None:
        """Run it; after an INSERT of many rows, ANALYZE its table: the next statement reads those rows (the fold
        reads what the stage appended), and with the planner still believing the table small it chose nested loops
        over a 60k-row stage that ran past the statement timeout."""
        with self._pool.connection() as conn:
            written = conn.execute(statement).rowcount
            target = _INSERT.match(statement)
            if target is not None and written >= ANALYZE_AFTER_ROWS:
                conn.execute(f"ANALYZE {target.group(1)}")

    def create_rollup(self, tables: Sequence[Table]) -> None:
        """Each missing table with a b-tree index on its key and on each of its lookups (the fold looks up a
        batch's users in the ledger by rollup key and user, and its own staged rows by rollup key and attempt).
        Tables that exist are left alone: a role given only SELECT and INSERT on them, not
        their ownership, may not even run CREATE INDEX IF NOT EXISTS on them."""
        for table in tables:
            indexes = [f"CREATE INDEX {_index_name(table, key)} ON {_quoted(table.name)} ({', '.join(key)})"
                       for key in (table.key, *table.lookups)]
            self.create([render(table.create(), self.dialect, {}), *indexes], unless_exists=table.name)

    def create(self, statements: Sequence[str], unless_exists: str | None = None) -> None:
        """Run DDL in one transaction under the schema lock; nothing if table `unless_exists` is there (looked up
        once the lock is held, so a worker that waited sees what the first one created)."""
        with self._pool.connection() as conn, conn.transaction():
            conn.execute(SCHEMA_LOCK)
            if unless_exists is not None:
                [(found,)] = conn.execute("SELECT to_regclass(%s)", [_quoted(unless_exists)]).fetchall()
                if found is not None:
                    return
            for statement in statements:
                conn.execute(statement)

    def close(self) -> None:
        self._pool.close()


def _quoted(name: str) -> str:
    """A possibly schema-qualified name, each part quoted."""
    return sql.Identifier(*name.split(".")).as_string()


def _index_name(table: Table, key: tuple[str, ...]) -> str:
    return sql.Identifier("_".join([table.name.split(".")[-1], "by", *key])).as_string()
