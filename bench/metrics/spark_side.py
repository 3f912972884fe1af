"""Apache Spark in local mode (`local[2]`, this process's JVM): managed Parquet tables in a warehouse directory of
the run, loaded from the exported Parquet files; check batches go in through the engine's own `load`. Slow to start
and to answer; no target."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from abrollout.warehouse.rollup import tables
from adapters.simulator import Rows
from adapters.warehouse.metrics import WarehouseMetrics
from bench.metrics.data import EXP, HOURS
from bench.metrics.duckdb_side import TABLES
from bench.metrics.measure import Bench
from bench.metrics.side import Unavailable

if TYPE_CHECKING:
    from adapters.warehouse.spark_engine import SparkEngine

MASTER = "local[2]"
DRIVER_MEMORY = "4g"  # local mode's executors are the driver: its default 1g is short of the 10M-row fold


class SparkBench:
    name = "spark"

    def __init__(self, engine: SparkEngine) -> None:
        self.engine = engine
        self.metrics = WarehouseMetrics(engine)
        self._next = HOURS + 1

    def append(self, rows: Rows) -> None:
        self.engine.load(EXP, rows, self._next)
        self._next += 1

    def fetch(self, sql: str) -> Iterable[tuple[Any, ...]]:
        return _rows(self.engine, sql)

    def close(self) -> None:
        """The session stays up for the next size (the side stops it)."""


def _rows(engine: SparkEngine, sql: str) -> Iterator[tuple[Any, ...]]:
    """The rows through the driver a partition at a time (collect would hold them all at once)."""
    for row in engine.spark.sql(sql).toLocalIterator():
        yield tuple(row)


class SparkSide:
    name = "spark"
    max_rows: int | None = 10_000_000
    max_runs: int | None = 3
    files: str | None = "parquet"

    def __init__(self) -> None:
        self._engine: SparkEngine | None = None

    def start(self, directory: Path) -> None:
        """One session for the run (the JVM takes seconds to start), its warehouse under the run's directory."""
        if self._engine is not None:
            return
        if shutil.which("java") is None:
            raise Unavailable("no Java runtime here, so not measured: install OpenJDK 17, then rerun this bench")
        try:
            from adapters.warehouse.spark_engine import SparkEngine
        except ImportError as exc:
            raise Unavailable(f"pyspark is not installed ({exc}): `make venv` installs the engines extra") from None
        os.environ.setdefault("PYSPARK_SUBMIT_ARGS", f"--driver-memory {DRIVER_MEMORY} pyspark-shell")
        self._engine = SparkEngine.connect(MASTER, directory / "spark-warehouse", "abrollout-metrics-bench")

    def load(self, path: Path, files: dict[str, Path]) -> Bench:
        """Fresh managed tables, each filled from its Parquet file in one INSERT."""
        engine = self._engine
        assert engine is not None, "started first"
        bench = SparkBench(engine)
        for name in (*TABLES, *(table.name for table in tables(bench.metrics.prefix))):
            engine.execute(f"DROP TABLE IF EXISTS {name}")
        engine.create_embedded_tables()
        for table in TABLES:
            engine.execute(f"INSERT INTO {table} SELECT * FROM parquet.`{files[table]}`")
        return bench

    def stop(self) -> None:
        if self._engine is not None:
            self._engine.close()
            self._engine = None
