"""The fleet's worker, a process of its own so that its CPU time (per thread too) and its peak RSS are its own
figures. The harness starts it (`python -m bench.fleet.worker`), waits for "worker started" in its log, asks it for
its threads' CPU with SIGUSR1 and stops it with SIGTERM.

- mode `ours`: the worker worker.py runs (workers.assembly.build_worker over adapters.config.build_adapters, all
  embedded), with a TenantRegistry when the fleet is larger than one registry may hold;
- mode `floor`: bench/floor.py's bare workflow and no-op activity on a worker with the same settings.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import inspect
import json
import os
import signal
import sys
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Worker

from adapters.config import WorkerConfig, build_adapters
from bench.fleet.config import WORKER_OPTIONS_ENV
from bench.fleet.procfs import own_threads_cpu
from bench.fleet.tenants import TenantRegistry
from bench.floor import FloorWorkflow, floor_checkpoint
from client import logs
from workers.assembly import build_worker

DEFAULT_MAX_ACTIVITIES: int = inspect.signature(build_worker).parameters["max_concurrent_activities"].default


async def _worker(args: argparse.Namespace, client: Client, stack: AsyncExitStack,
                  options: dict[str, Any]) -> Worker:
    if args.mode == "floor":
        return Worker(client, task_queue=args.task_queue, workflows=[FloorWorkflow], activities=[floor_checkpoint],
                      **{"max_concurrent_activities": DEFAULT_MAX_ACTIVITIES, **options})
    adapters = await build_adapters(WorkerConfig(), Path(args.data_dir), {}, stack)
    if args.tenant_size:
        adapters = dataclasses.replace(adapters, registry=TenantRegistry(Path(args.data_dir), args.tenant_size))
    return build_worker(client, adapters, task_queue=args.task_queue, **options)


def _dump_thread_cpu(path: Path) -> None:
    """Append {tid: [thread name, CPU seconds]} for every thread of this process (SIGUSR1 from the harness)."""
    with open(path, "a") as out:
        out.write(json.dumps(own_threads_cpu()) + "\n")


async def serve(args: argparse.Namespace) -> int:
    logs.configure()
    client = await Client.connect(args.address, data_converter=pydantic_data_converter)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if args.stats_file:
        loop.add_signal_handler(signal.SIGUSR1, _dump_thread_cpu, Path(args.stats_file))
    options: dict[str, Any] = json.loads(os.environ.get(WORKER_OPTIONS_ENV) or "{}")
    async with AsyncExitStack() as stack, await _worker(args, client, stack, options):
        print(f"worker started pid={os.getpid()} mode={args.mode} options={options}", file=sys.stderr, flush=True)
        await stop.wait()
    print("worker stopped", file=sys.stderr, flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fleet.worker", description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--mode", choices=["ours", "floor"], required=True)
    parser.add_argument("--address", required=True)
    parser.add_argument("--task-queue", required=True)
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--tenant-size", type=int, default=0)
    parser.add_argument("--stats-file")
    return asyncio.run(serve(parser.parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
