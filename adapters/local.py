"""The embedded default adapters: everything in files under one data directory, no server but Temporal."""

from __future__ import annotations

from pathlib import Path

from adapters.local_dashboards import LocalDashboards
from adapters.local_flags import LocalFlags
from adapters.local_metrics import LocalMetrics
from adapters.local_registry import LocalRegistry
from adapters.local_tickets import LocalTickets
from adapters.protocols import Adapters


def local_adapters(data_dir: Path) -> Adapters:
    data_dir.mkdir(parents=True, exist_ok=True)
    flags = LocalFlags(data_dir / "flags.sqlite")
    return Adapters(flags=flags, registry=LocalRegistry(data_dir / "registry.sqlite"),
                    metrics=LocalMetrics(data_dir / "metrics.duckdb", flags=flags),
                    dashboards=LocalDashboards(data_dir / "dashboards"),
                    tickets=LocalTickets(data_dir / "tickets.sqlite"))
