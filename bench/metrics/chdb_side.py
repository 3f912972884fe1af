"""ClickHouse in-process through chDB: MergeTree tables in a directory of their own per size, loaded from the
exported Parquet files; check batches go in through the engine's own `load`."""

from __future__ import annotations

import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from adapters.simulator import Rows
from adapters.warehouse.chdb_engine import ChdbEngine
from adapters.warehouse.metrics import WarehouseMetrics
from bench.metrics.data import EXP, HOURS
from bench.metrics.duckdb_side import TABLES
from bench.metrics.measure import Bench


class ChdbBench:
    name = "clickhouse"

    def __init__(self, engine: ChdbEngine, directory: Path) -> None:
        self.engine, self._directory = engine, directory
        self.metrics = WarehouseMetrics(engine)
        self._next = HOURS + 1

    def append(self, rows: Rows) -> None:
        self.engine.load(EXP, rows, self._next)
        self._next += 1

    def fetch(self, sql: str) -> Iterable[tuple[Any, ...]]:
        return _rows(self.engine, sql)

    def close(self) -> None:
        self.engine.close()
        shutil.rmtree(self._directory, ignore_errors=True)


def _rows(engine: ChdbEngine, sql: str) -> Iterator[tuple[Any, ...]]:
    for row in engine.query(sql):
        yield tuple(row.values())


class ChdbSide:
    name = "clickhouse"
    max_rows: int | None = 10_000_000
    max_runs: int | None = None
    files: str | None = "parquet"

    def __init__(self) -> None:
        self._directory = Path()

    def start(self, directory: Path) -> None:
        self._directory = directory

    def load(self, path: Path, files: dict[str, Path]) -> Bench:
        """A fresh chDB directory with the embedded tables, each filled from its Parquet file in one INSERT."""
        directory = self._directory / f"chdb-{path.stem}"
        engine = ChdbEngine(directory)
        engine.create_embedded_tables()
        for table in TABLES:
            engine.execute(f"INSERT INTO {table} SELECT * FROM file('{files[table]}', Parquet)")
        return ChdbBench(engine, directory)

    def stop(self) -> None:
        pass
