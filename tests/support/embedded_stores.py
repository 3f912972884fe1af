"""What the embedded adapters' stores recorded in a worker's data directory, read afterwards with the worker
stopped: side effects per idempotency key, and the exposures the simulator wrote. The load test checks the
workflows' receipts and decisions against these, so its expectations do not come from the workflows themselves."""

from __future__ import annotations

import sqlite3
from collections import Counter
from pathlib import Path
from typing import Any

import duckdb


def effects(data_dir: Path) -> dict[str, Counter[str]]:
    """Side effects per idempotency key as the embedded stores recorded them (registry across tenant files)."""
    counts: dict[str, Counter[str]] = {}
    registries = sorted(data_dir.glob("registry*.sqlite"))
    for store, paths, sql in (
            ("flags", [data_dir / "flags.sqlite"], "SELECT idempotency_key FROM changes"),
            ("tickets", [data_dir / "tickets.sqlite"], "SELECT idempotency_key FROM tickets"),
            ("registry", registries, "SELECT idempotency_key FROM experiments UNION ALL "
                                     "SELECT idempotency_key FROM runs UNION ALL "
                                     "SELECT stop_key FROM runs WHERE stop_key IS NOT NULL")):
        counts[store] = Counter()
        for path in paths:
            if path.exists():
                with sqlite3.connect(path) as con:
                    counts[store].update(row[0] for row in con.execute(sql))
    return counts


def _query_metrics(data_dir: Path, sql: str) -> list[tuple[Any, ...]]:
    """The rows of `sql` over the embedded metrics store, read-only."""
    con = duckdb.connect(str(data_dir / "metrics.duckdb"), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def hourly_assignments(data_dir: Path) -> dict[str, dict[int, dict[str, int]]]:
    """Exposed users per experiment, simulated hour and arm, as the metrics store recorded them."""
    found: dict[str, dict[int, dict[str, int]]] = {}
    for exp_key, hour, arm, count in _query_metrics(
            data_dir, "SELECT exp_key, at_s // 3600 AS hour, arm, count(*) FROM exposures GROUP BY ALL"):
        found.setdefault(exp_key, {}).setdefault(int(hour), {})[arm] = int(count)
    return found


def duplicate_exposures(data_dir: Path) -> dict[str, int]:
    """Per experiment, exposure rows beyond one per user (a simulated hour written twice would show here)."""
    rows = _query_metrics(data_dir, "SELECT exp_key, count(*) - count(DISTINCT user_id) FROM exposures "
                                    "GROUP BY exp_key HAVING count(*) > count(DISTINCT user_id)")
    return {str(k): int(v) for k, v in rows}
