"""The embedded schema (exposures, metric_events, pre_period) as tables any engine can create, and load batches as
their columns: what the built-in catalog reads, for engines that keep the simulator's rows themselves.

Types are in the generator's source dialect, like the rollup's tables; each engine renders them and adds its own
storage clause. The tables are keyed by (exp_key, loaded_at): the rollup reads an experiment past a watermark.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import fields
from typing import Any

import numpy as np
import pyarrow as pa  # type: ignore[import-untyped]
from numpy.typing import NDArray

from abrollout.warehouse.rollup import Table
from adapters.simulator import Exposures, MetricEvents, PrePeriod, Rows

_TEXT, _SECONDS, _NUMBER, _LOAD = "VARCHAR NOT NULL", "INTEGER NOT NULL", "DOUBLE NOT NULL", "BIGINT NOT NULL"
_KEY = ("exp_key", "loaded_at")

EMBEDDED = (
    Table("exposures", (("exp_key", _TEXT), ("user_id", _TEXT), ("arm", _TEXT), ("at_s", _SECONDS),
                        ("loaded_at", _LOAD)), _KEY),
    Table("metric_events", (("exp_key", _TEXT), ("user_id", _TEXT), ("metric", _TEXT), ("value", _NUMBER),
                            ("at_s", _SECONDS), ("loaded_at", _LOAD)), _KEY),
    Table("pre_period", (("exp_key", _TEXT), ("user_id", _TEXT), ("metric", _TEXT), ("value", _NUMBER),
                         ("loaded_at", _LOAD)), _KEY),
)
"""exposures, metric_events and pre_period, as LocalMetrics keeps them in DuckDB."""

Batch = tuple[Rows, int]
"""A load batch's rows and its `loaded_at`."""


def batch_tables(exp_key: str, batches: Sequence[Batch]) -> list[tuple[Table, pa.Table]]:
    """Each embedded table the batches have rows for, with those rows as Arrow columns in the table's order,
    exp_key and each batch's loaded_at filled in: what an engine copies in at once, without a Python loop."""
    found = []
    for table in EMBEDDED:
        parts = [_columns(exp_key, getattr(rows, table.name), loaded_at) for rows, loaded_at in batches]
        size = sum(len(part["exp_key"]) for part in parts)
        if size:
            found.append((table, pa.table({column: _arrow(np.concatenate([part[column] for part in parts]))
                                           for column, _ in table.columns})))
    return found


def _columns(exp_key: str, batch: Exposures | MetricEvents | PrePeriod, loaded_at: int) -> dict[str, NDArray[Any]]:
    """One batch's rows of one table (`Rows` names its parts like the tables), with exp_key and loaded_at."""
    given: dict[str, NDArray[Any]] = {field.name: getattr(batch, field.name) for field in fields(batch)}
    size = len(next(iter(given.values())))
    return given | {"exp_key": np.full(size, exp_key, dtype=object), "loaded_at": np.full(size, loaded_at, np.int64)}


def _arrow(values: NDArray[Any]) -> pa.Array:
    """Object arrays (of str) become Arrow strings; numbers keep their width."""
    return pa.array(values, pa.string()) if values.dtype == object else pa.array(values)
