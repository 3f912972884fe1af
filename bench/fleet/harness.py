"""One fleet run: a Temporal dev server (free loopback port, SQLite in the run's directory) and ONE worker process,
N workflows started at once, each size measured, then everything read from the histories. Both processes are
stopped by pid whatever happens.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

import devserver
from bench.fleet.config import WORKER_OPTIONS_ENV, FleetConfig
from bench.fleet.history import Execution, read_history
from bench.fleet.procfs import cpu_seconds, machine_busy_seconds, memory_kib
from bench.fleet.window import Sample, Window
from bench.floor import FloorInput, FloorWorkflow
from client.experiments import start_experiment

ROOT = Path(__file__).resolve().parents[2]
THREADS = "threads.jsonl"  # in the run's directory: the worker appends its threads' CPU there on SIGUSR1
Progress = Callable[[str], None] | None


@dataclass
class FleetResult:
    config: FleetConfig
    windows: list[Window]
    executions: list[Execution]
    data_dir: Path
    wall_seconds: float  # the whole run, server start to stop
    server_healthy: bool
    server_health: str
    server_log_errors: int
    tenants: int

    @property
    def statuses(self) -> Counter[str]:
        return Counter(run.status for run in self.executions)

    def summary(self) -> str:
        lines = [w.summary() for w in self.windows]
        lines.append(f"{self.config.mode}: {dict(self.statuses)} after {self.wall_seconds:.0f} s; server "
                     f"{'healthy' if self.server_healthy else 'UNHEALTHY'} ({self.server_health}; "
                     f"{self.server_log_errors} error lines in its log); {self.tenants} registry file(s)")
        return "\n".join(lines)


@dataclass(frozen=True)
class _Step:
    """One fleet size as measured; `ready_seconds` is nan for a run to completion (the histories tell it)."""

    n: int
    span: tuple[Sample, Sample]
    start_seconds: float
    ready_seconds: float


@contextmanager
def _worker_process(config: FleetConfig, address: str, task_queue: str, data_dir: Path, tmp: Path,
                    tenant_size: int) -> Iterator[subprocess.Popen[bytes]]:
    log = tmp / "worker.log"
    cmd = [sys.executable, "-m", "bench.fleet.worker", "--mode", config.mode, "--address", address,
           "--task-queue", task_queue, "--data-dir", str(data_dir), "--tenant-size", str(tenant_size),
           "--stats-file", str(tmp / THREADS)]
    env = {**os.environ}
    if config.worker_options:
        env[WORKER_OPTIONS_ENV] = json.dumps(dict(config.worker_options))
    with open(log, "wb") as out:
        process = subprocess.Popen(cmd, cwd=ROOT, stdout=out, stderr=out, stdin=subprocess.DEVNULL, env=env)
    try:
        devserver.wait_until_ready(process, lambda: b"worker started" in log.read_bytes(), "fleet worker", 60,
                                   lambda: log.read_text(errors="replace")[-2000:],
                                   lambda: devserver.stop_process(process))
        yield process
    finally:
        devserver.stop_process(process, grace_seconds=30)


def _sample(worker: subprocess.Popen[bytes], server: subprocess.Popen[bytes], stats: Path) -> Sample:
    """CPU and peak RSS now, and the worker's threads' CPU (it appends them to `stats` on SIGUSR1)."""
    lines = len(stats.read_text().splitlines()) if stats.exists() else 0
    worker.send_signal(signal.SIGUSR1)
    sample = Sample(time.time(), cpu_seconds(worker.pid), cpu_seconds(server.pid), machine_busy_seconds(),
                    memory_kib(worker.pid)["VmHWM"], memory_kib(server.pid)["VmHWM"])
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        found = stats.read_text().splitlines() if stats.exists() else []
        if len(found) > lines:
            return dataclasses.replace(sample, threads=json.loads(found[lines]))
        time.sleep(0.02)
    return sample


class _Fleet:
    """The fleet while its worker runs: grows to each size in turn and measures it."""

    def __init__(self, config: FleetConfig, client: Client, worker: subprocess.Popen[bytes],
                 server: subprocess.Popen[bytes], data_dir: Path, task_queue: str, stats: Path) -> None:
        self.config, self.client, self.worker, self.server = config, client, worker, server
        self.data_dir, self.task_queue, self.stats = data_dir, task_queue, stats

    def sample(self) -> Sample:
        return _sample(self.worker, self.server, self.stats)

    async def start(self, indexes: range) -> None:
        semaphore = asyncio.Semaphore(self.config.start_concurrency)
        spec, interval = self.config.spec(), self.config.interval_seconds

        async def one(index: int) -> None:
            async with semaphore:
                if self.config.mode == "ours":
                    await start_experiment(self.client, spec.model_copy(update={"name": f"fleet-{index:04d}"}),
                                           self.task_queue)
                else:
                    phase = (index - indexes.start) / len(indexes) * interval  # spread over an interval
                    await self.client.start_workflow(
                        FloorWorkflow.run, FloorInput(self.config.checks_per_workflow, interval, phase),
                        id=self.config.workflow_id(index), task_queue=self.task_queue)

        await asyncio.gather(*(one(i) for i in indexes))

    async def wait(self, condition: Callable[[], Awaitable[bool]], what: str) -> None:
        deadline = time.monotonic() + self.config.timeout_seconds
        while not await condition():
            if self.worker.poll() is not None:
                raise RuntimeError(f"the fleet worker exited with {self.worker.returncode} while waiting for {what}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what}: not within {self.config.timeout_seconds:.0f} s")
            await asyncio.sleep(0.5)

    async def all_closed(self) -> bool:
        query = f"TaskQueue = '{self.task_queue}' AND ExecutionStatus = 'Running'"
        return (await self.client.count_workflows(query)).count == 0

    async def clocks_running(self, n: int, started: float) -> bool:
        """Ours: every experiment's set-up is done (its first dashboard page exists); the floor: the last phase
        ended, an interval after the start."""
        if self.config.mode == "floor":
            return time.time() >= started + self.config.interval_seconds
        pages = self.data_dir / "dashboards"
        return pages.exists() and sum(1 for _ in pages.glob("*/latest.html")) >= n

    async def steady_window(self, n: int, started: float, seconds: float) -> tuple[tuple[Sample, Sample], float]:
        """The measured window once every clock runs, and when they all ran."""
        await self.wait(lambda: self.clocks_running(n, started), "every experiment's set-up")
        ready = time.time()
        if self.config.mode == "ours":
            await asyncio.sleep(self.config.settle_seconds)
        window_start = self.sample()
        await asyncio.sleep(seconds)
        return (window_start, self.sample()), ready

    async def grow(self, begun: int, n: int) -> _Step:
        """Start workflows begun..n-1, then measure: a steady window, or until every workflow closed."""
        first = self.sample()
        await self.start(range(begun, n))
        started = time.time()
        if self.config.window_seconds:
            span, ready = await self.steady_window(n, started, self.config.window_seconds)
        else:
            await self.wait(self.all_closed, "every workflow to close")
            span, ready = (first, self.sample()), math.nan
        return _Step(n, span, started - first.at, ready - first.at)

    async def run(self, progress: Progress, began: float) -> list[_Step]:
        steps: list[_Step] = []
        begun = 0
        for n in self.config.steps:
            steps.append(await self.grow(begun, n))
            begun = n
            if progress:
                progress(f"{self.config.mode} N={n}: measured ({time.time() - began:.0f} s)")
        if self.config.window_seconds:
            await asyncio.sleep(min(3.0, self.config.interval_seconds))  # checks due at the window's end start
        return steps

    async def histories(self) -> list[Execution]:
        semaphore = asyncio.Semaphore(16)
        check_every = self.config.check_every_hours * 3600

        async def one(workflow_id: str) -> Execution:
            async with semaphore:
                history = await self.client.get_workflow_handle(workflow_id).fetch_history()
            return read_history(history, self.config.hour_seconds, check_every)

        return list(await asyncio.gather(*(one(self.config.workflow_id(i)) for i in range(self.config.n))))


def _health(address: str) -> str:
    result = subprocess.run([str(devserver.TEMPORAL), "operator", "cluster", "health", "--address", address],
                            capture_output=True, text=True, timeout=30)
    return " ".join((result.stdout or result.stderr).split())[:200]


def _log_errors(server_log: Path) -> int:
    return sum(1 for line in server_log.read_text(errors="replace").splitlines() if '"level":"error"' in line)


def _window(config: FleetConfig, step: _Step, executions: list[Execution], measured_at: float) -> Window:
    ready_seconds = step.ready_seconds
    if math.isnan(ready_seconds):  # a run to completion: ready when the last clock started
        clocks = [run.clock_start for run in executions if run.clock_start]
        ready_seconds = (max(clocks) if clocks else step.span[0].at) - step.span[0].at
    return Window(config, step.n, executions[:step.n], step.span, step.start_seconds, ready_seconds, measured_at)


async def _run(config: FleetConfig, tmp: Path, progress: Progress) -> FleetResult:
    if not config.window_seconds and len(config.steps) != 1:
        raise ValueError("a run to completion has one fleet size")
    began = time.time()
    spec = config.spec()
    tenant_size = spec.max_concurrent if config.mode == "ours" and config.n > spec.max_concurrent else 0
    data_dir, task_queue, stats = tmp / "data", f"fleet-{config.mode}", tmp / THREADS
    server_log = tmp / "temporal.log"
    server = devserver.start(tmp / "temporal.sqlite", devserver.free_port(), None, log_file=server_log)
    try:
        with _worker_process(config, server.address, task_queue, data_dir, tmp, tenant_size) as worker:
            client = await Client.connect(server.address, data_converter=pydantic_data_converter)
            fleet = _Fleet(config, client, worker, server.process, data_dir, task_queue, stats)
            steps = await fleet.run(progress, began)
        measured_at = time.time()
        executions = await fleet.histories()
        health = _health(server.address)
        healthy = server.process.poll() is None and "SERVING" in health
    finally:
        server.stop()
    return FleetResult(config=config, windows=[_window(config, step, executions, measured_at) for step in steps],
                       executions=executions, data_dir=data_dir, wall_seconds=time.time() - began,
                       server_healthy=healthy, server_health=health, server_log_errors=_log_errors(server_log),
                       tenants=math.ceil(config.n / tenant_size) if tenant_size else 1)


def run_fleet(config: FleetConfig, tmp: Path | None = None, progress: Progress = None) -> FleetResult:
    """Run one fleet on its own dev server and worker, both stopped by pid afterwards. The data directory is
    kept under `tmp` (a fresh temporary directory when None, removed only if the caller removes it)."""
    tmp = tmp or Path(tempfile.mkdtemp(prefix=f"fleet-{config.mode}-{config.n}-"))
    return asyncio.run(_run(config, tmp, progress))
