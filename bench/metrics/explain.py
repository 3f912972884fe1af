"""Where a DuckDB statement's time goes: EXPLAIN ANALYZE as JSON, summed by operator, and every table scan with the
rows and row groups it read (zonemaps skip the rest)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import duckdb

from abrollout.warehouse.rollup import Table
from adapters.warehouse.engine import Engine, Row


class Profiling:
    """An engine that runs every statement under EXPLAIN ANALYZE too and keeps the profiles, in order. A statement
    that changes data runs only under EXPLAIN ANALYZE (which runs it once); a query runs twice, once for its rows."""

    def __init__(self, inner: Engine, con: duckdb.DuckDBPyConnection) -> None:
        self.inner, self._con = inner, con
        self.name, self.dialect = inner.name, inner.dialect
        self.profiles: list[tuple[str, list[str]]] = []
        """Each statement as it ran, with its profile."""

    def query(self, sql: str) -> list[Row]:
        rows = self.inner.query(sql)
        self._profile(sql)
        return rows

    def execute(self, sql: str) -> None:
        self._profile(sql)

    def _profile(self, sql: str) -> None:
        with self._con.cursor() as cur:
            self.profiles.append((sql, duckdb_profile(cur, sql)))

    def create_rollup(self, tables: Sequence[Table]) -> None:
        self.inner.create_rollup(tables)

    def close(self) -> None:
        self.inner.close()


def duckdb_profile(con: duckdb.DuckDBPyConnection, statement: str, top: int = 4) -> list[str]:
    """`statement` run under EXPLAIN ANALYZE (it runs: an INSERT inserts): its table scans, then the operators that
    took the most time (thread time summed over all threads) with the rows they produced."""
    [(_, text)] = con.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + statement).fetchall()
    scans: list[str] = []
    operators: dict[str, list[float]] = {}

    def walk(node: dict[str, Any]) -> None:
        kind, seconds = str(node.get("type", "?")), float(node.get("timing") or 0.0)
        spent = operators.setdefault(kind, [0.0, 0.0])
        spent[0] += seconds
        spent[1] += float(node.get("intermediate_rows") or 0)
        if kind == "TABLE_SCAN":
            info = node.get("extra_info", {})
            filters = info.get("Filters") or "-"
            filters = " ".join((filters if isinstance(filters, str) else " AND ".join(filters)).split())
            scans.append(f"scan {str(info.get('Table', '?')).split('.')[-1]}: {node.get('rows_scanned', 0):,} rows "
                         f"read, row groups {node.get('row_groups_scanned', '?')} of "
                         f"{node.get('total_row_groups_to_scan', '?')}, {seconds * 1e3:.1f} ms (filters "
                         f"{filters[:200]}{'...' if len(filters) > 200 else ''})")
        for child in node.get("children", []):
            walk(child)

    for node in json.loads(text)["operator"]:
        walk(node)
    total = sum(spent for spent, _ in operators.values())
    ranked = sorted(operators.items(), key=lambda item: -item[1][0])[:top]
    return [*scans, f"operator time {total * 1e3:.1f} ms over all threads, most in: " + ", ".join(
        f"{kind} {spent * 1e3:.1f} ms ({int(rows):,} rows out)" for kind, (spent, rows) in ranked)]
