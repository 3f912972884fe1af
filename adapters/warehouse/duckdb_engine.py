"""DuckDB: the embedded default, in-process on a file."""

from __future__ import annotations

from collections.abc import Sequence

import duckdb

from abrollout.warehouse.dialects import render
from abrollout.warehouse.rollup import Table
from adapters.warehouse.engine import Row


class DuckDBEngine:
    """Statements on one DuckDB connection; each call uses its own cursor, so threads may share the engine."""

    name = dialect = "duckdb"

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self._con = con

    def query(self, sql: str) -> list[Row]:
        with self._con.cursor() as cur:
            rows = cur.execute(sql).fetchall()
            columns = [column[0] for column in cur.description or ()]
        return [dict(zip(columns, row, strict=True)) for row in rows]

    def execute(self, sql: str) -> None:
        with self._con.cursor() as cur:
            cur.execute(sql)

    def create_rollup(self, tables: Sequence[Table]) -> None:
        """Plain tables: zonemaps on the appended columns are DuckDB's only index worth having here."""
        for table in tables:
            self.execute(render(table.create(), self.dialect, {}))

    def close(self) -> None:
        self._con.close()
