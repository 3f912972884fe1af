"""The one thing a warehouse must do for the metrics source: run a statement and return its rows by column name.

An engine also creates the rollup's tables the way its storage wants them (ClickHouse's MergeTree order, Spark's
table format, PostgreSQL's index); everything else is the generator's SQL in the engine's dialect.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from abrollout.warehouse.rollup import Table

Row = dict[str, Any]


class Engine(Protocol):
    name: str
    dialect: str

    def query(self, sql: str) -> list[Row]:
        """The statement's rows, each a dict by column name."""
        ...

    def execute(self, sql: str) -> None:
        """Run a statement that returns nothing worth reading (DDL, INSERT ... SELECT)."""
        ...

    def create_rollup(self, tables: Sequence[Table]) -> None:
        """Create the rollup's tables if missing, ordered or indexed by each table's key."""
        ...

    def close(self) -> None: ...
