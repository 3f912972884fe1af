"""The engines the bench can run, each as a `Side`: how it starts (a server, a session), how one size's rows get
into it, and how it stops."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from bench.metrics.duckdb_side import DuckDBBench
from bench.metrics.measure import Bench


class Unavailable(Exception):
    """An engine that cannot run here: the message says why, and how to run it."""


class Side(Protocol):
    name: str
    max_rows: int | None
    """The largest size it is loaded with (None: any)."""
    max_runs: int | None
    """Fewer measured checks than asked (an engine slow to answer)."""
    files: str | None
    """The files it loads the rows from ("parquet" or "csv"), exported from the DuckDB file; None: that file."""

    def start(self, directory: Path) -> None:
        """Start what the engine needs for the whole run (raises Unavailable)."""
        ...

    def load(self, path: Path, files: dict[str, Path]) -> Bench:
        """Fresh tables holding one size's rows, from the DuckDB file at `path` or `files`."""
        ...

    def stop(self) -> None: ...


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


SIDES: dict[str, type[Side]] = {"duckdb": DuckDBSide}
