"""The figures of one fleet size, from the histories and the /proc samples around it: checkpoints per second,
lateness (when a checkpoint started minus when it was due, for every checkpoint due, including those a saturated
workflow had not reached), where that lateness comes from, and the CPU and memory it cost. A run to completion is
the window from the first start to the last close.
"""

from __future__ import annotations

import math
import os
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from bench.fleet.config import FleetConfig
from bench.fleet.history import Check, Execution


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
