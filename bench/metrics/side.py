"""What the bench needs of an engine: a `Side` starts it for the run, loads each size's rows into it and stops it."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

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
