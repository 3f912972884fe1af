"""A fleet run as JSON, for a caller in another process: the load test runs the harness as `python -m bench.fleet
--json` and asserts on this, so that tests import no bench code. NaN stays NaN (Python's json reads it back)."""

from __future__ import annotations

import math
from typing import Any

from bench.fleet.harness import FleetResult
from bench.fleet.window import Window, percentile


def _window(window: Window) -> dict[str, Any]:
    late = window.lateness
    return {
        "n": window.n,
        "ready_seconds": window.ready_seconds,
        "completions": len(window.completions),
        "throughput": window.throughput,
        "lateness": {"p50": percentile(late, 50), "p99": percentile(late, 99), "max": max(late, default=math.nan)},
        "late_checks": window.late_checks(),
        "worker_cpu": window.worker_cpu,
        "worker_threads_cpu": window.thread_cpu(),
        "worker_peak_rss_kib": window.span[1].worker_peak_rss_kib,
        "server_cpu": window.server_cpu,
        "server_peak_rss_kib": window.span[1].server_peak_rss_kib,
        "other_cpu": window.other_cpu,
    }


def as_json(result: FleetResult) -> dict[str, Any]:
    config = result.config
    return {
        "spec": config.spec().model_dump(mode="json"),
        "checks_per_workflow": config.checks_per_workflow,
        "interval_seconds": config.interval_seconds,
        "data_dir": str(result.data_dir),
        "wall_seconds": result.wall_seconds,
        "statuses": dict(result.statuses),
        "server_healthy": result.server_healthy,
        "server_health": result.server_health,
        "server_log_errors": result.server_log_errors,
        "tenants": result.tenants,
        "windows": [_window(window) for window in result.windows],
        "executions": [{"workflow_id": run.workflow_id, "status": run.status, "result": run.result,
                        "checks": sorted(check.index for check in run.checks)} for run in result.executions],
    }
