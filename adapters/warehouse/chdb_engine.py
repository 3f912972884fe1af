"""ClickHouse's engine in-process through chDB: MergeTree tables in a directory of its own (or a temporary one).

ClickHouse departs from standard SQL in ways the generator's SQL would silently get wrong (an unmatched LEFT JOIN
row reads 0, MAX of no rows is 0, an alias shadows the column it is computed from), so the session first switches
to the standard meaning (`STANDARD_SQL`). Results come back as Arrow, which keeps Int64 and the exact sums (written
as text) as they are; loads go in as one Arrow stream per table.

The exact sums are Decimal(38, 0): see abrollout.warehouse.dialects.EXACT for how far ClickHouse keeps them exact.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, cast

import pyarrow as pa  # type: ignore[import-untyped]
from chdb.session import Session

from abrollout.warehouse.dialects import render
from abrollout.warehouse.rollup import Table
from adapters.simulator import Rows
from adapters.warehouse.embedded import EMBEDDED, Batch, batch_tables
from adapters.warehouse.engine import Row

STANDARD_SQL = {
    "join_use_nulls": 1,  # an unmatched LEFT JOIN row's columns are NULL, not 0 or ''
    "aggregate_functions_null_for_empty": 1,  # MAX or SUM of no rows is NULL, not 0
    "prefer_column_name_to_alias": 1,  # in `CAST(user_id AS ...) AS user_id`, a later `user_id` may be the column
    "use_variant_as_common_type": 0,  # a UNION of types with no common one fails instead of becoming a Variant
}
"""Session settings that give the generator's SQL its standard meaning."""

USER_GRANULARITY = 256
"""Rows per primary-index mark of a table keyed by user: a refresh reads each touched user's ledger rows, and small
granules read less of the ledger around them (ClickHouse's default is 8192)."""


class _Session(Protocol):
    """The part of chDB's (untyped) Session the engine uses."""

    def query(self, sql: str, fmt: str = "CSV") -> Any: ...

    def send_insert(self, query: str, fmt: str = "CSV") -> Any: ...

    def close(self) -> None: ...


class ChdbEngine:
    """Statements on one chDB session (the session serialises them; threads may share the engine). `path` is where
    its data lives; None keeps it in a temporary place for the session's life. chDB runs one embedded server per
    process: engines open at the same time must share a path (and then its tables)."""

    name = dialect = "clickhouse"

    def __init__(self, path: Path | None = None) -> None:
        self._session = cast(_Session, Session(None if path is None else str(path)))  # type: ignore[no-untyped-call]
        self.execute("SET " + ", ".join(f"{name} = {value}" for name, value in STANDARD_SQL.items()))

    def query(self, sql: str) -> list[Row]:
        table: pa.Table = self._session.query(sql, "ArrowTable")
        rows: list[Row] = table.to_pylist()
        return rows

    def execute(self, sql: str) -> None:
        self._session.query(sql)

    def create_rollup(self, tables: Sequence[Table]) -> None:
        """MergeTree tables sorted by each table's key; a table keyed by user gets small granules."""
        for table in tables:
            granularity = f"\nSETTINGS index_granularity = {USER_GRANULARITY}" if "user_id" in table.key else ""
            self.execute(f"{render(table.create(), self.dialect, {})}\nENGINE = MergeTree\n"
                         f"ORDER BY ({', '.join(table.key)}){granularity}")

    def create_embedded_tables(self) -> None:
        """exposures, metric_events and pre_period, sorted by (exp_key, loaded_at)."""
        self.create_rollup(EMBEDDED)

    def load(self, exp_key: str, rows: Rows, loaded_at: int) -> None:
        """Append one batch under `loaded_at`."""
        self.load_batches(exp_key, [(rows, loaded_at)])

    def load_batches(self, exp_key: str, batches: Sequence[Batch]) -> None:
        """Append batches, each under its own loaded_at, with one INSERT per table."""
        for table, columns in batch_tables(exp_key, batches):
            sink = pa.BufferOutputStream()
            with pa.ipc.new_stream(sink, columns.schema) as writer:
                writer.write_table(columns)
            with self._session.send_insert(f"INSERT INTO {table.name} ({', '.join(columns.column_names)})",
                                           "ArrowStream") as inserter:
                inserter.append(sink.getvalue().to_pybytes())
                inserter.finish()

    def close(self) -> None:
        self._session.close()
