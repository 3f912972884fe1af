"""The worker process: connect, pick the adapters, run the workflow and the ten tools until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
from collections.abc import Callable
from contextlib import AsyncExitStack
from datetime import timedelta

import structlog
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig

from abrollout.run.safety_net import SweepInput
from adapters.config import WorkerConfig, build_adapters, config_path, load_config, load_secrets
from adapters.protocols import AdapterConfigError, Adapters
from client import logs
from client.connect import CONNECT_TIMEOUT_SECONDS
from client.exits import BAD_INPUT, RUNTIME_FAILURE
from client.safety_net import SCHEDULE_ID, ensure_schedule
from client.settings import Settings, settings
from workers.assembly import build_worker

log = structlog.get_logger("abrollout.worker")
DEFAULT_METRICS = "127.0.0.1:9464"
AdapterWrapper = Callable[[Adapters], Adapters]
"""What a test worker does to the configured adapters before serving them (tests/support/faulty_worker.py)."""


def _runtime(metrics_address: str) -> Runtime | None:
    """A runtime exporting the SDK's metrics to Prometheus, or None (default runtime) when disabled."""
    if metrics_address in ("", "0", "off"):
        return None
    try:
        return Runtime(telemetry=TelemetryConfig(metrics=PrometheusConfig(bind_address=metrics_address)))
    except Exception as exc:  # the SDK raises a plain exception when the port is taken
        log.warning("metrics disabled", address=metrics_address, error=str(exc)[:200])
        return None


def describe(adapters: Adapters) -> dict[str, str]:
    """Which implementation serves each kind, for the start-up line (names only: never a secret)."""
    return {kind: getattr(adapter, "name", type(adapter).__name__)
            for kind, adapter in (("flags", adapters.flags), ("registry", adapters.registry),
                                  ("metrics", adapters.metrics), ("dashboards", adapters.dashboards),
                                  ("tickets", adapters.tickets))}


async def serve(s: Settings, metrics_address: str, config: WorkerConfig, wrap: AdapterWrapper | None = None) -> int:
    runtime = _runtime(metrics_address)
    try:
        client = await asyncio.wait_for(Client.connect(s.address, namespace=s.namespace, runtime=runtime,
                                                       data_converter=pydantic_data_converter),
                                        CONNECT_TIMEOUT_SECONDS)
    except (TimeoutError, RuntimeError, OSError) as exc:
        log.error("cannot reach Temporal", address=s.address, error=" ".join(str(exc).split())[:200],
                  fix="start a local server with `make server` or set TEMPORAL_ADDRESS")
        return RUNTIME_FAILURE
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with AsyncExitStack() as stack:
        try:
            adapters = await build_adapters(config, s.data_dir, load_secrets(os.environ), stack)
        except AdapterConfigError as exc:
            log.error("adapter configuration", error=str(exc))
            return RUNTIME_FAILURE
        if wrap is not None:
            adapters = wrap(adapters)
        async with build_worker(client, adapters, task_queue=s.task_queue):
            net = config.safety_net
            await ensure_schedule(client, s.task_queue, timedelta(minutes=net.every_minutes),
                                  SweepInput(stuck_after_seconds=max(1, round(net.stuck_after_minutes * 60))))
            log.info("worker started", address=s.address, namespace=s.namespace, task_queue=s.task_queue,
                     data_dir=str(s.data_dir), metrics=metrics_address if runtime else "off", pid=os.getpid(),
                     adapters=describe(adapters), simulation=adapters.accelerated_clock_allowed,
                     safety_net=f"schedule {SCHEDULE_ID} every {net.every_minutes:g} min, stuck after "
                     f"{net.stuck_after_minutes:g} min")
            await stop.wait()
            log.info("worker stopping: finishing activities in flight")
    log.info("worker stopped")
    return 0


def main(argv: list[str] | None = None, wrap: AdapterWrapper | None = None) -> int:
    parser = argparse.ArgumentParser(prog="worker.py", description="Run an abrollout worker: the experiment "
                                     "workflow and its ten tools, on the configured adapters.")
    parser.add_argument("--address", help="Temporal frontend host:port (env TEMPORAL_ADDRESS)")
    parser.add_argument("--namespace", help="Temporal namespace (env TEMPORAL_NAMESPACE)")
    parser.add_argument("--task-queue", help="task queue (env ABROLLOUT_TASK_QUEUE)")
    parser.add_argument("--data-dir", help="embedded adapters' files (env ABROLLOUT_DATA_DIR, default .abrollout)")
    parser.add_argument("--config", help="adapter configuration, TOML (env ABROLLOUT_CONFIG; default: all embedded)")
    parser.add_argument("--metrics", default=os.environ.get("ABROLLOUT_METRICS", DEFAULT_METRICS),
                        help="host:port for the SDK's Prometheus metrics, or 'off' (env ABROLLOUT_METRICS)")
    args = parser.parse_args(argv)
    logs.configure()
    try:
        config = load_config(config_path(args.config))
    except AdapterConfigError as exc:
        log.error("configuration", error=str(exc))
        return BAD_INPUT
    s = settings(args.address, args.namespace, args.task_queue, args.data_dir)
    return asyncio.run(serve(s, args.metrics, config, wrap))

