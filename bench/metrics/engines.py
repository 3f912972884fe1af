"""The engines the bench can run, by name, in the order it runs them."""

from __future__ import annotations

from pathlib import Path

from bench.metrics.chdb_side import ChdbSide
from bench.metrics.duckdb_side import DuckDBBench
from bench.metrics.measure import Bench
from bench.metrics.postgres_side import PostgresSide
from bench.metrics.side import Side
from bench.metrics.spark_side import SparkSide


class DuckDBSide:
    """The embedded store, on the file the bench builds (its load time is the build's)."""

    name = "duckdb"
    max_rows: int | None = None
    max_runs: int | None = None
    files: str | None = None

    def start(self, directory: Path) -> None:
        pass

    def load(self, path: Path, files: dict[str, Path]) -> Bench:
        return DuckDBBench(path)

    def stop(self) -> None:
        pass


SIDES: dict[str, type[Side]] = {"duckdb": DuckDBSide, "postgres": PostgresSide, "clickhouse": ChdbSide,
                                 "spark": SparkSide}
