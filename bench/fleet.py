"""A fleet of experiments on one worker: the harness behind bench/orchestration_bench.py and tests/workers/test_load.py.

    .venv/bin/python -m bench.fleet --n 100 500 --window 30 [--mode ours|floor] [--hour-seconds 30]

`run_fleet` starts a Temporal dev server (free loopback port, SQLite in a temporary directory, devserver) and
ONE worker as a separate process (`python -m bench.fleet worker`, so that its CPU time, per thread too, and its peak
RSS are its own), then starts N workflows at once:

- mode `ours`: N copies of bench/fleet.yaml (fleet-0000, ...) on the embedded adapters, on the worker worker.py
  runs (workers.assembly.build_worker over adapters.config.build_adapters, all embedded);
- mode `floor`: N copies of bench/floor.py's bare workflow, the same timer cadence and one no-op activity per
  checkpoint, on a worker with the same settings: Temporal's floor on this machine.

With `window_seconds`, the fleet grows to each size of `steps` in turn and each size is measured over a steady
window once every clock runs (the benchmark); without, one size runs to completion (the load test). Everything is
then read from the workflow histories. A checkpoint is a CheckMetrics activity (a FloorCheckpoint for the floor);
checkpoint k of a workflow is due k intervals after its clock started, and its lateness is when the worker started
it (ActivityTaskStarted) minus that. ExperimentWorkflow's clock starts at `workflow.now()` of the task that set
`RunState.started_at`, the WorkflowTaskStarted event of the task that scheduled `snapshot-start`.

Not as in production: exp_policy.v5 (concurrency.1) allows at most 50 running experiments per domain in one
registry, so one embedded registry holds 250 at most. Beyond `max_concurrent` (50) copies the worker gives each
block of 50 experiments its own registry file (`TenantRegistry`, a tenant each); flags, metrics, dashboards and
tickets stay shared, and each registry call does the same work. The embedded stores are read afterwards
(`effects`, `hourly_assignments`, `duplicate_exposures`).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import inspect
import json
import math
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import AsyncExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client, WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter

import devserver
from abrollout.contracts.spec import ExperimentSpec
from abrollout.contracts.tools import RegisterExperimentArgs
from abrollout.spec.loader import check_raw
from adapters.local_registry import LocalRegistry
from adapters.protocols import OpenExperiment, Registered
from bench.floor import NOOP_ACTIVITY, FloorInput, FloorWorkflow
from workers.assembly import build_worker

ROOT = Path(__file__).resolve().parent.parent
SPEC = Path(__file__).with_name("fleet.yaml")
CHECK_ACTIVITY = "CheckMetrics"
DEFAULT_MAX_ACTIVITIES: int = inspect.signature(build_worker).parameters["max_concurrent_activities"].default
WORKER_OPTIONS_ENV = "ABROLLOUT_BENCH_WORKER_OPTIONS"
"""JSON of extra temporalio Worker options for the fleet worker (e.g. {"max_cached_workflows": 200}): a knob for
investigating worker settings without editing workers/assembly.py. Unset, the worker is exactly build_worker's."""
CLK_TCK = os.sysconf("SC_CLK_TCK")


# ---- the worker process ----------------------------------------------------------------------------------------

class TenantRegistry:
    """Embedded registries, one SQLite file per block of `size` experiments (fleet-<i> is in tenant i // size),
    so that more than 250 experiments can run at once under concurrency.1. Lookups by id are routed by what
    this process registered (a fresh process searches the files)."""

    name = "local-tenants"

    def __init__(self, data_dir: Path, size: int) -> None:
        self.data_dir, self.size = data_dir, size
        self.stores: dict[int, LocalRegistry] = {}
        self.by_exp: dict[str, LocalRegistry] = {}
        self.by_run: dict[str, LocalRegistry] = {}

    def _store(self, tenant: int) -> LocalRegistry:
        if tenant not in self.stores:
            self.stores[tenant] = LocalRegistry(self.data_dir / f"registry-t{tenant:03d}.sqlite")
        return self.stores[tenant]

    def _all(self) -> list[LocalRegistry]:
        for path in sorted(self.data_dir.glob("registry-t*.sqlite")):
            self._store(int(path.stem.removeprefix("registry-t")))
        return list(self.stores.values())

    async def _of_exp(self, exp_id: str) -> LocalRegistry:
        if exp_id not in self.by_exp:
            for store in self._all():
                try:
                    await store.get(exp_id)
                except LookupError:
                    continue
                self.by_exp[exp_id] = store
                break
            else:
                raise LookupError(f"experiment {exp_id} is not registered")
        return self.by_exp[exp_id]

    async def register(self, args: RegisterExperimentArgs, idempotency_key: str) -> str:
        number = args.exp_key.rsplit("-", 1)[-1]
        store = self._store(int(number) // self.size if number.isdigit() else 0)
        exp_id = await store.register(args, idempotency_key)
        self.by_exp[exp_id] = store
        return exp_id

    async def get(self, exp_id: str) -> Registered:
        return await (await self._of_exp(exp_id)).get(exp_id)

    async def start_run(self, exp_id: str, run_name: str, population: str, idempotency_key: str) -> str:
        store = await self._of_exp(exp_id)
        run_id = await store.start_run(exp_id, run_name, population, idempotency_key)
        self.by_run[run_id] = store
        return run_id

    async def stop_run(self, run_id: str, reason: str, idempotency_key: str) -> str:
        stores = [self.by_run[run_id]] if run_id in self.by_run else self._all()
        for store in stores:
            try:
                return await store.stop_run(run_id, reason, idempotency_key)
            except LookupError:
                continue
        raise LookupError(f"run {run_id} does not exist")

    async def running(self, domain: str) -> list[str]:
        return [key for store in self._all() for key in await store.running(domain)]

    async def open_experiments(self) -> list[OpenExperiment]:
        return [found for store in self._all() for found in await store.open_experiments()]

    async def release(self, exp_id: str, reason: str, idempotency_key: str) -> str:
        return await (await self._of_exp(exp_id)).release(exp_id, reason, idempotency_key)


async def _serve(args: argparse.Namespace) -> int:
    from temporalio.worker import Worker

    from adapters.config import WorkerConfig, build_adapters
    from bench.floor import floor_checkpoint
    from client import logs

    logs.configure()
    client = await Client.connect(args.address, data_converter=pydantic_data_converter)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if args.stats_file:
        loop.add_signal_handler(signal.SIGUSR1, _dump_thread_cpu, Path(args.stats_file))
    options: dict[str, Any] = json.loads(os.environ.get(WORKER_OPTIONS_ENV) or "{}")
    async with AsyncExitStack() as stack:
        if args.mode == "floor":
            worker = Worker(client, task_queue=args.task_queue, workflows=[FloorWorkflow],
                            activities=[floor_checkpoint],
                            **{"max_concurrent_activities": DEFAULT_MAX_ACTIVITIES, **options})
        else:
            adapters = await build_adapters(WorkerConfig(), Path(args.data_dir), {}, stack)
            if args.tenant_size:
                adapters = dataclasses.replace(adapters, registry=TenantRegistry(Path(args.data_dir), args.tenant_size))
            worker = build_worker(client, adapters, task_queue=args.task_queue, **options)
        async with worker:
            print(f"worker started pid={os.getpid()} mode={args.mode} options={options}", file=sys.stderr, flush=True)
            await stop.wait()
    print("worker stopped", file=sys.stderr, flush=True)
    return 0


def _dump_thread_cpu(path: Path) -> None:
    """Append {tid: [thread name, CPU seconds]} for every thread of this process (SIGUSR1 from the harness)."""
    import threading

    names = {t.native_id: t.name for t in threading.enumerate()}
    found = {}
    for task in Path("/proc/self/task").iterdir():
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
            comm = (task / "comm").read_text().strip()
        except OSError:
            continue
        tid = int(task.name)
        found[tid] = [names.get(tid, comm), (int(fields[11]) + int(fields[12])) / CLK_TCK]
    with open(path, "a") as out:
        out.write(json.dumps(found) + "\n")


# ---- process figures from /proc ----------------------------------------------------------------------------

def cpu_seconds(pid: int) -> float:
    """User + system CPU time of the process (all its threads) so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime: fields 14 and 15 of proc(5)


def memory_kib(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak RSS) in KiB."""
    found = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            found[key] = int(value.split()[0])
    return found


def machine_busy_seconds() -> float:
    """CPU seconds all processes on the machine used so far (user, nice, system, irq, softirq, steal)."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return (sum(values[:3]) + sum(values[5:8])) / CLK_TCK


# ---- figures from the histories ----------------------------------------------------------------------------

@dataclass
class Check:
    index: int  # checkpoint k of the workflow, due k intervals after its clock started
    due: float  # epoch seconds
    scheduled: float
    started: float | None = None
    completed: float | None = None
    timer_fired: float | None = None  # the timer the workflow waited on before scheduling it, if it had to wait
    task_started: float | None = None  # the workflow task that scheduled it: started, completed
    task_completed: float | None = None
    attempts: int = 1

    @property
    def lateness(self) -> float | None:
        return None if self.started is None else self.started - self.due


@dataclass
class Execution:
    workflow_id: str
    status: str  # the closing event: completed, failed, timed_out, terminated, canceled, continued_as_new, running
    clock_start: float | None = None  # epoch seconds: checkpoint k is due at clock_start + k x interval
    checks: list[Check] = field(default_factory=list)
    result: Any = None
    closed: float | None = None
    activities: int = 0
    task_timeouts: list[float] = field(default_factory=list)  # when a workflow task timed out (a sticky one not
    # picked up within 10 s goes back to the normal queue, where the worker may replay the history)


def _time(event: HistoryEvent) -> float:
    return event.event_time.seconds + event.event_time.nanos / 1e9


def _json(payloads: Any) -> Any:
    return json.loads(payloads.payloads[0].data) if payloads.payloads else None


_CLOSING = {
    "workflow_execution_completed_event_attributes": "completed",
    "workflow_execution_failed_event_attributes": "failed",
    "workflow_execution_timed_out_event_attributes": "timed_out",
    "workflow_execution_terminated_event_attributes": "terminated",
    "workflow_execution_canceled_event_attributes": "canceled",
    "workflow_execution_continued_as_new_event_attributes": "continued_as_new",
}


def read_history(history: WorkflowHistory, hour_seconds: float, check_every_seconds: int) -> Execution:
    """The checkpoints of one execution with their due, scheduled, started and completed times.

    ExperimentWorkflow's clock starts at `workflow.now()` of the task that set `started_at`, the task that scheduled
    `snapshot-start` (its WorkflowTaskStarted event); a CheckMetrics at `at_seconds` is due at that plus
    at_seconds x hour_seconds / 3600. The floor's clock starts at its first task plus its phase; each no-op carries
    its due time."""
    events = {e.event_id: e for e in history.events}
    run = Execution(history.workflow_id, "running")
    checks: dict[int, Check] = {}  # by the ActivityTaskScheduled event id
    last_fired: float | None = None
    floor_phase: float | None = None  # set for the floor, whose input carries its phase
    for e in history.events:
        kind = e.WhichOneof("attributes")
        if kind == "workflow_execution_started_event_attributes":
            start_input = _json(e.workflow_execution_started_event_attributes.input)
            if isinstance(start_input, dict) and "phase_seconds" in start_input:
                floor_phase = float(start_input["phase_seconds"])
        elif kind == "workflow_task_started_event_attributes" and floor_phase is not None and run.clock_start is None:
            run.clock_start = _time(e) + floor_phase  # workflow.now() at the floor's first task, plus its phase
        elif kind == "timer_fired_event_attributes":
            last_fired = _time(e)
        elif kind == "workflow_task_timed_out_event_attributes":
            run.task_timeouts.append(_time(e))
        elif kind == "activity_task_scheduled_event_attributes":
            run.activities += 1
            a = e.activity_task_scheduled_event_attributes
            call = _json(a.input)
            task = events[a.workflow_task_completed_event_id]
            task_started = _time(events[task.workflow_task_completed_event_attributes.started_event_id])
            if a.activity_type.name == CHECK_ACTIVITY and run.clock_start is not None:
                at = int(call["args"]["at_seconds"])
                checks[e.event_id] = Check(at // check_every_seconds, run.clock_start + at * hour_seconds / 3600,
                                           _time(e), timer_fired=last_fired, task_started=task_started,
                                           task_completed=_time(task))
            elif a.activity_type.name == NOOP_ACTIVITY:
                checks[e.event_id] = Check(int(call["index"]), float(call["due_epoch"]), _time(e),
                                           timer_fired=last_fired, task_started=task_started,
                                           task_completed=_time(task))
            elif isinstance(call, dict) and call.get("step") == "snapshot-start":
                run.clock_start = task_started
            last_fired = None
        elif kind == "activity_task_started_event_attributes":
            started = e.activity_task_started_event_attributes
            if started.scheduled_event_id in checks:
                checks[started.scheduled_event_id].started = _time(e)
                checks[started.scheduled_event_id].attempts = started.attempt
        elif kind == "activity_task_completed_event_attributes":
            if e.activity_task_completed_event_attributes.scheduled_event_id in checks:
                checks[e.activity_task_completed_event_attributes.scheduled_event_id].completed = _time(e)
        elif kind in _CLOSING:
            run.status, run.closed = _CLOSING[kind], _time(e)
            if kind == "workflow_execution_completed_event_attributes":
                run.result = _json(e.workflow_execution_completed_event_attributes.result)
    run.checks = list(checks.values())
    return run


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100), nearest rank; nan for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))]


def sustained_rate(times: list[float]) -> float:
    """Completions per second between the 10th and the 90th percentile completion: the steady part of a run to
    completion, without the start-up ramp and the tail."""
    if len(times) < 10:
        return math.nan
    ordered = sorted(times)
    lo, hi = int(0.1 * len(ordered)), int(0.9 * len(ordered))
    span = ordered[hi] - ordered[lo]
    return (hi - lo) / span if span > 0 else math.nan


# ---- the run -----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class FleetConfig:
    """`steps`: the fleet grows to each size in turn (100, then 400 more, ...), and with `window_seconds` each
    size is measured over a steady window once every clock runs; without it, one size runs to completion."""

    steps: tuple[int, ...]
    mode: str = "ours"  # ours | floor
    hour_seconds: float = 2.0
    check_every_hours: int = 1
    days: int = 1  # the duration cap; the single analysis look is at the cap
    window_seconds: float | None = None
    settle_seconds: float = 15.0  # ours: after every clock runs, before the window, the set-up's backlog drains
    start_concurrency: int = 50
    timeout_seconds: float = 1800.0
    worker_options: tuple[tuple[str, Any], ...] = ()  # extra temporalio Worker options (WORKER_OPTIONS_ENV)
    spec_path: Path = SPEC

    @property
    def n(self) -> int:
        return max(self.steps)

    def spec(self, index: int = 0) -> ExperimentSpec:
        raw = yaml.safe_load(self.spec_path.read_text())
        raw["name"] = f"fleet-{index:04d}"
        raw["max_duration_days"] = self.days
        schedule = raw.setdefault("schedule", {})
        schedule.update(hour_seconds=self.hour_seconds, guardrail_check_every=f"{self.check_every_hours}h",
                        analysis_every=f"{24 * self.days}h")
        checked = check_raw(raw)
        if not checked.ok or checked.spec is None:
            raise ValueError(f"{self.spec_path}: {[str(p) for p in checked.problems if p.level.value == 'error']}")
        return checked.spec

    @property
    def checks_per_workflow(self) -> int:
        return self.days * 24 // self.check_every_hours

    @property
    def interval_seconds(self) -> float:
        """Real seconds between a workflow's checkpoints."""
        return self.check_every_hours * self.hour_seconds


@dataclass(frozen=True)
class Sample:
    """CPU seconds so far: the worker (per thread too), the server and the whole machine; RSS peaks so far."""

    at: float
    worker: float
    server: float
    machine: float
    worker_peak_rss_kib: int
    server_peak_rss_kib: int
    threads: dict[str, list[Any]] = field(default_factory=dict)


@dataclass
class Window:
    """The figures of one fleet size: `span` is the measured window (or first start to last close)."""

    config: FleetConfig
    n: int
    executions: list[Execution]  # the first n workflows
    span: tuple[Sample, Sample]
    start_seconds: float  # wall time to start this step's workflows
    ready_seconds: float  # from this step's first start until every clock ran (ours: set-up done)
    measured_at: float  # when the histories were read: a checkpoint due but not started by then is late by at least

    @property
    def windowed(self) -> bool:
        return bool(self.config.window_seconds)

    @property
    def bounds(self) -> tuple[float, float]:
        return (self.span[0].at, self.span[1].at) if self.windowed else (-math.inf, math.inf)

    @property
    def seconds(self) -> float:
        return self.span[1].at - self.span[0].at

    @property
    def checks(self) -> list[Check]:
        return [c for run in self.executions for c in run.checks]

    def due_checks(self) -> list[tuple[Execution, int, float, Check | None]]:
        """Every checkpoint due in the window, with its check if the workflow got as far as scheduling it: a
        saturated workflow has checkpoints due that it has not reached yet, and they count too."""
        lo, hi = self.bounds
        found = []
        for run in self.executions:
            if run.clock_start is None:
                continue
            by_index = {c.index: c for c in run.checks}
            last = self.config.checks_per_workflow if run.status == "running" else max(by_index, default=0)
            for k in range(1, last + 1):
                due = run.clock_start + k * self.config.interval_seconds
                if lo <= due <= hi:
                    found.append((run, k, due, by_index.get(k)))
        return found

    def late_checks(self) -> list[tuple[float, str, int]]:
        """(lateness, workflow id, k) for every checkpoint due: started minus due; one not started when the
        histories were read counts as late by `measured_at - due` (a lower bound)."""
        return [((check.started if check and check.started else self.measured_at) - due, run.workflow_id, k)
                for run, k, due, check in self.due_checks() if due <= self.measured_at]

    @property
    def lateness(self) -> list[float]:
        return [late for late, _, _ in self.late_checks()]

    @property
    def completions(self) -> list[float]:
        lo, hi = self.bounds
        return [c.completed for c in self.checks if c.completed is not None and lo <= c.completed <= hi]

    @property
    def throughput(self) -> float:
        """Checkpoints completed per second: in the window, or over the steady part of a run to completion."""
        return len(self.completions) / self.seconds if self.windowed else sustained_rate(self.completions)

    @property
    def offered_rate(self) -> float:
        return self.n / self.config.interval_seconds

    @property
    def worker_cpu(self) -> float:
        return self.span[1].worker - self.span[0].worker

    @property
    def server_cpu(self) -> float:
        return self.span[1].server - self.span[0].server

    @property
    def other_cpu(self) -> float:
        """CPU everything else on the machine used meanwhile: other people's work, and this harness."""
        return self.span[1].machine - self.span[0].machine - self.worker_cpu - self.server_cpu

    def cpu_ms_per_checkpoint(self) -> tuple[float, float]:
        """Worker and server CPU per completed checkpoint (a run to completion: set-up and close included)."""
        done = max(len(self.completions), 1)
        return 1000 * self.worker_cpu / done, 1000 * self.server_cpu / done

    @property
    def capacity(self) -> float:
        """Checkpoints/s the machine's cores could carry at this CPU cost (worker + server), were nothing else
        running: robust to other people's load, unlike the achieved rate."""
        return (os.cpu_count() or 1) * 1000 / max(sum(self.cpu_ms_per_checkpoint()), 1e-9)

    def thread_cpu(self) -> dict[str, float]:
        """The worker's CPU in the span by kind of thread (threads that ended in the span are not counted)."""
        before, after = self.span[0].threads, self.span[1].threads
        kinds: Counter[str] = Counter()
        for tid, (name, cpu) in after.items():
            kinds[_thread_kind(name)] += cpu - (before[tid][1] if tid in before else 0.0)
        return {kind: round(cpu, 2) for kind, cpu in kinds.most_common()}

    @property
    def task_timeouts(self) -> int:
        lo, hi = self.bounds
        return sum(1 for run in self.executions for at in run.task_timeouts if lo <= at <= hi)

    def components(self) -> dict[str, list[float]]:
        """Where lateness comes from, for the checks the workflow waited on a timer for: the timer firing after
        the due time, the workflow task waiting to be picked up, the worker running it, and the check's activity
        waiting to be picked up. The four add up to the lateness."""
        parts: dict[str, list[float]] = {"timer": [], "task wait": [], "task run": [], "activity wait": []}
        lo, hi = self.bounds
        for c in self.checks:
            if None not in (c.timer_fired, c.started, c.task_started, c.task_completed) and lo <= c.due <= hi:
                assert c.timer_fired and c.started and c.task_started and c.task_completed
                parts["timer"].append(c.timer_fired - c.due)
                parts["task wait"].append(c.task_started - c.timer_fired)
                parts["task run"].append(c.task_completed - c.task_started)
                parts["activity wait"].append(c.started - c.scheduled)
        return parts

    def summary(self) -> str:
        late = self.lateness
        worker_ms, server_ms = self.cpu_ms_per_checkpoint()
        parts = ", ".join(f"{name} p50 {percentile(v, 50):.3f} p99 {percentile(v, 99):.3f}"
                          for name, v in self.components().items())
        return (f"{self.config.mode} N={self.n}: {len(self.completions)} checkpoints in {self.seconds:.1f} s "
                f"(every {self.config.interval_seconds:g} s per workflow): {self.throughput:.1f}/s, offered "
                f"{self.offered_rate:.1f}/s; lateness p50 {percentile(late, 50):.3f} s, "
                f"p99 {percentile(late, 99):.3f} s, max {max(late, default=math.nan):.3f} s over {len(late)} due "
                f"({parts}); worker CPU "
                f"{self.worker_cpu:.1f} s = {worker_ms:.1f} ms/checkpoint {self.thread_cpu()}, peak RSS "
                f"{self.span[1].worker_peak_rss_kib / 1024:.0f} MiB; server CPU {self.server_cpu:.1f} s = "
                f"{server_ms:.1f} ms/checkpoint, peak RSS {self.span[1].server_peak_rss_kib / 1024:.0f} MiB; "
                f"others on the machine {self.other_cpu:.1f} CPU s; start {self.start_seconds:.1f} s, "
                f"ready {self.ready_seconds:.1f} s; {self.task_timeouts} workflow task timeouts in the window")


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


def _thread_kind(name: str) -> str:
    if name.startswith("temporal_workflow"):
        return "workflow tasks"
    if name.startswith("asyncio_"):
        return "to_thread pool"
    if name == "MainThread":
        return "event loop"
    if name.startswith(("tokio", "workflow-proces", "temporal-")):
        return "sdk core"  # the SDK's Rust threads
    if name.startswith("python"):
        return "native"  # threads started by native libraries: DuckDB's, OpenBLAS's
    return f"other: {name}"


@contextmanager
def _worker_process(config: FleetConfig, address: str, task_queue: str, data_dir: Path, tmp: Path,
                    tenant_size: int) -> Iterator[subprocess.Popen[bytes]]:
    log = tmp / "worker.log"
    cmd = [sys.executable, "-m", "bench.fleet", "worker", "--mode", config.mode, "--address", address,
           "--task-queue", task_queue, "--data-dir", str(data_dir), "--tenant-size", str(tenant_size),
           "--stats-file", str(tmp / "threads.jsonl")]
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


def _workflow_id(mode: str, index: int) -> str:
    return f"exp-fleet-{index:04d}" if mode == "ours" else f"floor-{index:04d}"


async def _start(client: Client, config: FleetConfig, task_queue: str, indexes: range) -> None:
    from client.experiments import start_experiment

    semaphore = asyncio.Semaphore(config.start_concurrency)
    spec = config.spec()

    async def one(index: int) -> None:
        async with semaphore:
            if config.mode == "ours":
                await start_experiment(client, spec.model_copy(update={"name": f"fleet-{index:04d}"}), task_queue)
            else:
                phase = (index - indexes.start) / len(indexes) * config.interval_seconds  # spread over an interval
                await client.start_workflow(FloorWorkflow.run,
                                            FloorInput(config.checks_per_workflow, config.interval_seconds, phase),
                                            id=_workflow_id(config.mode, index), task_queue=task_queue)

    await asyncio.gather(*(one(i) for i in indexes))


async def _wait(condition: Any, what: str, timeout: float, worker: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + timeout
    while not await condition():
        if worker.poll() is not None:
            raise RuntimeError(f"the fleet worker exited with {worker.returncode} while waiting for {what}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout:.0f} s")
        await asyncio.sleep(0.5)


async def _histories(client: Client, config: FleetConfig) -> list[Execution]:
    semaphore = asyncio.Semaphore(16)
    check_every = config.check_every_hours * 3600

    async def one(workflow_id: str) -> Execution:
        async with semaphore:
            history = await client.get_workflow_handle(workflow_id).fetch_history()
        return read_history(history, config.hour_seconds, check_every)

    return list(await asyncio.gather(*(one(_workflow_id(config.mode, i)) for i in range(config.n))))


def _health(address: str) -> str:
    result = subprocess.run([str(devserver.TEMPORAL), "operator", "cluster", "health", "--address", address],
                            capture_output=True, text=True, timeout=30)
    return " ".join((result.stdout or result.stderr).split())[:200]


def _sample(worker: subprocess.Popen[bytes], server: subprocess.Popen[bytes], stats: Path) -> Sample:
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


async def _run(config: FleetConfig, tmp: Path, progress: Any) -> FleetResult:
    if not config.window_seconds and len(config.steps) != 1:
        raise ValueError("a run to completion has one fleet size")
    began = time.time()
    spec = config.spec()
    tenant_size = spec.max_concurrent if config.mode == "ours" and config.n > spec.max_concurrent else 0
    data_dir, task_queue, stats = tmp / "data", f"fleet-{config.mode}", tmp / "threads.jsonl"
    server_log = tmp / "temporal.log"
    server = devserver.start(tmp / "temporal.sqlite", devserver.free_port(), None, log_file=server_log)
    steps: list[tuple[int, tuple[Sample, Sample], float, float]] = []
    try:
        with _worker_process(config, server.address, task_queue, data_dir, tmp, tenant_size) as worker:
            client = await Client.connect(server.address, data_converter=pydantic_data_converter)
            begun = 0
            for n in config.steps:
                first = _sample(worker, server.process, stats)
                await _start(client, config, task_queue, range(begun, n))
                started = time.time()

                async def clocks_running(n: int = n, started: float = started) -> bool:
                    if config.mode == "floor":  # the last phase ends an interval after the start
                        return time.time() >= started + config.interval_seconds
                    pages = data_dir / "dashboards"
                    return pages.exists() and sum(1 for _ in pages.glob("*/latest.html")) >= n

                async def all_closed() -> bool:
                    query = f"TaskQueue = '{task_queue}' AND ExecutionStatus = 'Running'"
                    return (await client.count_workflows(query)).count == 0

                if config.window_seconds:
                    await _wait(clocks_running, "every experiment's set-up", config.timeout_seconds, worker)
                    ready = time.time()
                    if config.mode == "ours":
                        await asyncio.sleep(config.settle_seconds)
                    window_start = _sample(worker, server.process, stats)
                    await asyncio.sleep(config.window_seconds)
                    span = (window_start, _sample(worker, server.process, stats))
                else:
                    await _wait(all_closed, "every workflow to close", config.timeout_seconds, worker)
                    span = (first, _sample(worker, server.process, stats))
                    ready = math.nan
                steps.append((n, span, started - first.at, ready - first.at))
                begun = n
                if progress:
                    progress(f"{config.mode} N={n}: measured ({time.time() - began:.0f} s)")
            if config.window_seconds:
                await asyncio.sleep(min(3.0, config.interval_seconds))  # checks due at the window's end start
        measured_at = time.time()
        executions = await _histories(client, config)
        health = _health(server.address)
        healthy = server.process.poll() is None and "SERVING" in health
    finally:
        server.stop()
    windows = []
    for n, span, start_seconds, ready_seconds in steps:
        if math.isnan(ready_seconds):  # a run to completion: ready when the last clock started
            clocks = [run.clock_start for run in executions if run.clock_start]
            ready_seconds = (max(clocks) if clocks else span[0].at) - span[0].at
        windows.append(Window(config, n, executions[:n], span, start_seconds, ready_seconds, measured_at))
    log_errors = sum(1 for line in server_log.read_text(errors="replace").splitlines() if '"level":"error"' in line)
    return FleetResult(config=config, windows=windows, executions=executions, data_dir=data_dir,
                       wall_seconds=time.time() - began, server_healthy=healthy, server_health=health,
                       server_log_errors=log_errors,
                       tenants=math.ceil(config.n / tenant_size) if tenant_size else 1)


def run_fleet(config: FleetConfig, tmp: Path | None = None, progress: Any = None) -> FleetResult:
    """Run one fleet on its own dev server and worker, both stopped by pid afterwards. The data directory is
    kept under `tmp` (a fresh temporary directory when None, removed only if the caller removes it)."""
    tmp = tmp or Path(tempfile.mkdtemp(prefix=f"fleet-{config.mode}-{config.n}-"))
    return asyncio.run(_run(config, tmp, progress))


# ---- the embedded stores after the run (read with the worker stopped) --------------------------------------------

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
    import duckdb

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


# ---- command line ----------------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fleet", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command")
    worker = sub.add_parser("worker", help="the fleet's worker process (started by the harness)")
    worker.add_argument("--mode", choices=["ours", "floor"], required=True)
    worker.add_argument("--address", required=True)
    worker.add_argument("--task-queue", required=True)
    worker.add_argument("--data-dir", required=True)
    worker.add_argument("--tenant-size", type=int, default=0)
    worker.add_argument("--stats-file")
    parser.add_argument("--n", type=int, nargs="+", default=[50], help="fleet sizes, measured in turn")
    parser.add_argument("--mode", choices=["ours", "floor"], default="ours")
    parser.add_argument("--hour-seconds", type=float, default=2.0)
    parser.add_argument("--check-every-hours", type=int, default=1)
    parser.add_argument("--days", type=int, default=1)
    parser.add_argument("--window", type=float, help="measure this many seconds of steady state per size")
    parser.add_argument("--worker-options", default="{}", help="JSON: extra temporalio Worker options")
    args = parser.parse_args(argv)
    if args.command == "worker":
        return asyncio.run(_serve(args))
    config = FleetConfig(steps=tuple(args.n), mode=args.mode, hour_seconds=args.hour_seconds,
                         check_every_hours=args.check_every_hours, days=args.days, window_seconds=args.window,
                         worker_options=tuple(json.loads(args.worker_options).items()))
    result = run_fleet(config, progress=lambda line: print(line, file=sys.stderr, flush=True))
    print(result.summary())
    print(f"data: {result.data_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
