"""Benchmark of the push path: a guardrail breach visible in the metrics source -> verified rollback.
On a real Temporal dev server, Unleash and alert receiver (a benchmark, not a timed test); the stack, the figures
and the baselines: bench/README.md.

    .venv/bin/python -m bench.rollback_latency_bench [--repeat N] [--embedded-flags]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

import devserver
from abrollout.contracts.records import ReceiptRecord
from abrollout.plan.planner import flag_key
from abrollout.run.inbox import ALERT_CHECK_MIN_INTERVAL
from adapters.config import Choices, UnleashSection, WorkerConfig, build_adapters
from adapters.local_metrics import LocalMetrics
from alert_receiver import TOKEN_ENV
from client import logs
from client.experiments import ExperimentHandle, start_experiment
from tests.support.alert_scenario import alert, bearer, breach_rows, healthy_rows, spec, webhook
from workers.assembly import build_worker
from workflows.experiment import ExperimentWorkflow

ROOT = Path(__file__).resolve().parents[1]
TARGET_MEDIAN_S = 2.0
PULL_INTERVAL_S = 3600.0  # the hourly guardrail schedule (Schedule.guardrail_check_every)
FLAGGER_S = 60.0 * 10  # Flagger: analysis interval 1m x failed-check threshold 10
POLL_SECONDS = 0.02  # the bench's own Unleash poll: fine enough, without loading Unleash while it rolls back
QUEUE = "rollback-bench"


# ---- the stack -----------------------------------------------------------------------------------------------
@dataclass
class Flags:
    """How the bench reads the flag, independently of the workflow: Unleash's Admin API, or the embedded store."""

    unleash_url: str | None
    token: str | None
    note: str
    read_local: Callable[[str], Awaitable[list[str] | None]] | None = None
    http: httpx.AsyncClient | None = None

    async def served_variants(self, flag: str) -> list[str] | None:
        """The variants the flag serves now (all strategies), None while it is off or missing."""
        if self.http is None:
            assert self.read_local is not None
            return await self.read_local(flag)
        response = await self.http.get(f"/api/admin/projects/default/features/{flag}")
        if response.status_code == 404:
            return None
        response.raise_for_status()
        environment = next(e for e in response.json()["environments"] if e["name"] == "development")
        if not environment["enabled"]:
            return None
        return [v["name"] for s in environment["strategies"] if not s.get("disabled") for v in s.get("variants", [])]


@dataclass
class Stack:
    client: Client
    metrics: LocalMetrics
    flags: Flags
    receiver_url: str
    http: httpx.AsyncClient
    servers: str


def unleash_or_fallback(stack: AsyncExitStack, embedded: bool) -> tuple[Any, str]:
    """(the Unleash server, what is used) or (None, why not); servers started here are stopped with `stack`."""
    if embedded:
        return None, "embedded flag provider (--embedded-flags)"
    from tests.support.servers import postgres as pg_server
    from tests.support.servers import unleash as unleash_server

    try:
        pg = pg_server.start()
    except (pytest.skip.Exception, OSError, subprocess.SubprocessError) as exc:
        return None, f"FALLBACK to the embedded flag provider: PostgreSQL for Unleash unavailable ({_why(exc)})"
    stack.callback(pg.stop)
    try:
        server = unleash_server.start(pg)
    except (pytest.skip.Exception, RuntimeError, OSError, subprocess.SubprocessError) as exc:
        return None, f"FALLBACK to the embedded flag provider: Unleash unavailable ({_why(exc)})"
    stack.callback(server.stop)
    return server, f"Unleash {unleash_server.UNLEASH_VERSION} at {server.url} (PostgreSQL 15, pid {server.process.pid})"


def _why(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300] or type(exc).__name__


async def start_receiver(stack: AsyncExitStack, address: str, tmp: Path, token: str) -> str:
    """`starter.py alert-receiver` as its own process, as an operator runs it; stopped with SIGINT (Ctrl-C)."""
    port = devserver.free_port()
    log = open(tmp / "alert-receiver.log", "wb")  # noqa: SIM115 - the child owns it
    process = subprocess.Popen([sys.executable, str(ROOT / "starter.py"), "alert-receiver", "--address", address,
                                "--port", str(port)], cwd=ROOT, stdout=log,
                               stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                               env={**os.environ, "PYTHONUNBUFFERED": "1", TOKEN_ENV: token})
    stack.callback(log.close)
    stack.callback(devserver.stop_process, process)
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        try:
            return httpx.get(f"{url}/healthz", timeout=0.5).status_code == 200
        except httpx.HTTPError:
            return False

    await asyncio.to_thread(devserver.wait_until_ready, process, ready, "alert receiver", 30.0,
                            lambda: (tmp / "alert-receiver.log").read_text(errors="replace")[-2000:],
                            lambda: devserver.stop_process(process))
    return f"{url}/alerts"


@asynccontextmanager
async def running_stack(embedded: bool) -> AsyncIterator[Stack]:
    logs.configure(logging.WARNING)  # the worker's per-tool info lines would bury the figures
    async with AsyncExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="rollback-bench-")))
        server = devserver.start(tmp / "temporal.sqlite", devserver.free_port(), None, log_file=tmp / "temporal.log")
        stack.callback(server.stop)
        unleash, flags_note = await asyncio.to_thread(unleash_or_fallback, stack, embedded)
        client = await Client.connect(server.address, data_converter=pydantic_data_converter)
        if unleash is not None:
            config = WorkerConfig(adapters=Choices(flags="unleash"), unleash=UnleashSection(url=unleash.url))
            worker_secrets = {"unleash_token": unleash.token}
        else:
            config, worker_secrets = WorkerConfig(adapters=Choices(flags="local")), {}
        adapters = await build_adapters(config, tmp / "data", worker_secrets, stack)
        assert isinstance(adapters.metrics, LocalMetrics)
        stack.callback(adapters.metrics.close)
        await stack.enter_async_context(build_worker(client, adapters, task_queue=QUEUE))
        token = secrets.token_hex(32)
        receiver_url = await start_receiver(stack, server.address, tmp, token)
        if unleash is not None:
            poller = await stack.enter_async_context(httpx.AsyncClient(
                base_url=unleash.url, headers={"Authorization": unleash.token}, timeout=10))
            flags = Flags(unleash.url, unleash.token, flags_note, http=poller)
        else:
            async def read_local(flag: str) -> list[str] | None:
                state = await adapters.flags.read(flag)
                if state is None or not state.enabled:
                    return None
                return [v.name for s in state.strategies for v in s.variants]

            flags = Flags(None, None, flags_note, read_local=read_local)
        http = await stack.enter_async_context(httpx.AsyncClient(timeout=30, headers=bearer(token)))
        servers = (f"Temporal dev server {server.address} (SQLite, pid {server.process.pid}); flags: {flags_note}; "
                   "worker in this process (build_adapters + build_worker: flags "
                   f"{getattr(adapters.flags, 'name', '?')}, metrics embedded DuckDB); starter.py alert-receiver "
                   f"subprocess at {receiver_url}")
        yield Stack(client=client, metrics=adapters.metrics, flags=flags, receiver_url=receiver_url, http=http,
                    servers=servers)


# ---- one repetition -----------------------------------------------------------------------------------------
@dataclass
class Activity:
    tool: str
    summary: str
    scheduled: float
    started: float | None = None
    completed: float | None = None
    result: dict[str, Any] | None = None


@dataclass
class History:
    signals: list[float] = field(default_factory=list)  # the alert signals, in order
    activities: list[Activity] = field(default_factory=list)

    def first(self, tool: str, after: float, summary: str = "") -> Activity:
        return next(a for a in self.activities if a.tool == tool and a.scheduled >= after and summary in a.summary)


def _seconds(event: Any) -> float:
    return float(event.event_time.seconds + event.event_time.nanos / 1e9)


async def history(handle: ExperimentHandle) -> History:
    found = History()
    by_id: dict[int, Activity] = {}
    for event in (await handle.fetch_history()).events:
        kind = event.event_type
        if kind == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED:
            if event.workflow_execution_signaled_event_attributes.signal_name == "alert":
                found.signals.append(_seconds(event))
        elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            attrs = event.activity_task_scheduled_event_attributes
            summary = json.loads(event.user_metadata.summary.data or b'""')
            by_id[event.event_id] = Activity(attrs.activity_type.name, summary, _seconds(event))
            found.activities.append(by_id[event.event_id])
        elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            by_id[event.activity_task_started_event_attributes.scheduled_event_id].started = _seconds(event)
        elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
            completed = event.activity_task_completed_event_attributes
            activity = by_id[completed.scheduled_event_id]
            activity.completed = _seconds(event)
            activity.result = json.loads(completed.result.payloads[0].data)
    return found


@dataclass
class Rep:
    served: float  # breach visible -> Unleash serves control (bench poll), seconds
    receipt: float  # breach visible -> RollbackVariant receipt with its read-back
    parts: dict[str, float]  # breakdown, seconds
    healthy_check: float  # healthy alert posted -> its check receipt
    polls: int

    @property
    def verified(self) -> float:
        return max(self.served, self.receipt)


async def until(get: Callable[[], Awaitable[Any]], done: Callable[[Any], bool], timeout: float,
                what: str, pause: float = POLL_SECONDS) -> tuple[Any, int]:
    deadline, polls = time.monotonic() + timeout, 0
    while True:
        value = await get()
        polls += 1
        if done(value):
            return value, polls
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: still {value!r} after {timeout:g} s")
        await asyncio.sleep(pause)


async def receipts(handle: ExperimentHandle) -> list[ReceiptRecord]:
    return await handle.query(ExperimentWorkflow.receipts)


async def one(stack: Stack, name: str) -> Rep:
    handle = await start_experiment(stack.client, spec(name), QUEUE)
    flag = flag_key(name)
    await until(lambda: receipts(handle), lambda rs: any(r.step == "snapshot-start" for r in rs), 60, "set-up")
    arms, _ = await until(lambda: stack.flags.served_variants(flag), lambda v: v is not None and len(v) == 2, 30,
                          "the flag serving both arms")
    await asyncio.to_thread(stack.metrics.write_rows, name, healthy_rows())
    # A healthy alert first: a check runs at once and the experiment keeps running.
    posted = time.time()
    answer = await stack.http.post(stack.receiver_url, json=webhook(alert(name, name="LatencyHigh")))
    assert answer.status_code == 200, answer.text
    done, _ = await until(lambda: receipts(handle), lambda rs: any(r.step.startswith("check-alert-") for r in rs),
                          30, "the healthy alert's check")
    healthy_done = time.time()
    assert not any(r.tool == "RollbackVariant" for r in done), "a healthy check rolled back"
    assert sorted(await stack.flags.served_variants(flag) or []) == sorted(arms), "a healthy check changed the flag"
    # The workflow runs at most one alert check per ALERT_CHECK_MIN_INTERVAL (a flood must not flood the warehouse);
    # the breach comes after it, as a second alert would in practice (Alertmanager's group_interval is 5 min).
    await asyncio.sleep(ALERT_CHECK_MIN_INTERVAL.total_seconds() + 1)
    # The breach: visible once its write has committed; the webhook goes out at once.
    await asyncio.to_thread(stack.metrics.write_rows, name, breach_rows())
    visible = time.time()
    answer = await stack.http.post(stack.receiver_url, json=webhook(alert(name)))
    assert answer.status_code == 200, answer.text
    _, polls = await until(lambda: stack.flags.served_variants(flag), lambda v: v == ["control"], 60,
                           "the flag serving control only")
    served = time.time()
    report = await handle.result()
    assert report.decision.state.value == "guardrail_stop", report.decision
    trail = await history(handle)
    signal = trail.signals[-1]
    check = trail.first("CheckMetrics", signal, "check-alert-")
    stop = trail.first("StopRun", signal)
    rollback = trail.first("RollbackVariant", signal)
    assert rollback.result is not None and rollback.result["ok"] and rollback.result["data"]["read_back"], rollback
    assert None not in (check.started, check.completed, stop.started, stop.completed, rollback.started,
                        rollback.completed)
    healthy = trail.first("CheckMetrics", trail.signals[0], "check-alert-")
    parts = {
        "webhook -> signal recorded": signal - visible,
        "signal -> check started": check.started - signal,  # type: ignore[operator]
        "check (CheckMetrics)": check.completed - check.started,  # type: ignore[operator]
        "check -> stop started": stop.started - check.completed,  # type: ignore[operator]
        "stop (StopRun)": stop.completed - stop.started,  # type: ignore[operator]
        "stop -> rollback started": rollback.started - stop.completed,  # type: ignore[operator]
        "rollback (flag write + read-back)": rollback.completed - rollback.started,  # type: ignore[operator]
    }
    return Rep(served=served - visible, receipt=rollback.completed - visible,  # type: ignore[operator]
               parts=parts, healthy_check=(healthy.completed or healthy_done) - posted, polls=polls)


# ---- output ---------------------------------------------------------------------------------------------------
def _mark(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def _p(values: list[float], q: float) -> float:
    return float(np.percentile(values, q * 100, method="linear"))


def _row(label: str, values: list[float]) -> str:
    return (f"{label:<52}{statistics.median(values):>9.3f}{_p(values, 0.9):>9.3f}{max(values):>9.3f}"
            f"{min(values):>9.3f}")


def report(reps: list[Rep], unleash: bool) -> list[str]:
    served = [r.served for r in reps]
    receipt = [r.receipt for r in reps]
    verified = [r.verified for r in reps]
    header = f"{'figure (seconds)':<52}{'median':>9}{'p90':>9}{'max':>9}{'min':>9}"
    where = "Unleash serves control (bench's own poll)" if unleash else "embedded flag serves control (bench read)"
    lines = [header, "-" * len(header), _row(f"breach -> {where}", served),
             _row("breach -> RollbackVariant receipt, read back", receipt),
             _row("breach -> verified rollback (both)", verified),
             _row("healthy alert -> its check receipt", [r.healthy_check for r in reps]),
             "", f"{'breakdown from the history (ms)':<52}{'median':>9}{'p90':>9}{'max':>9}{'min':>9}"]
    for part in reps[0].parts:
        values = [r.parts[part] * 1000 for r in reps]
        lines.append(f"  {part:<50}{statistics.median(values):>9.0f}{_p(values, 0.9):>9.0f}{max(values):>9.0f}"
                     f"{min(values):>9.0f}")
    med = statistics.median(verified)
    lines += [
        "",
        f"baselines (same check -> rollback path after the wait): pull path, hourly checks: bound "
        f"{PULL_INTERVAL_S:.0f} s, expected {PULL_INTERVAL_S / 2:.0f} s for a breach at a uniform time -> "
        f"{PULL_INTERVAL_S / 2 / med:,.0f}x faster at the median ({PULL_INTERVAL_S / med:,.0f}x against the bound); "
        f"Flagger interval x threshold 1m x 10 = {FLAGGER_S:.0f} s -> {FLAGGER_S / med:,.0f}x",
        f"target median < {TARGET_MEDIAN_S:g} s: {med:.3f} s {_mark(med < TARGET_MEDIAN_S)}"
        + ("" if unleash else " (embedded flags, NOT Unleash: see the note above)"),
        f"poll: every {POLL_SECONDS * 1000:.0f} ms, {statistics.median([r.polls for r in reps]):.0f} reads (median) "
        "until control was served",
    ]
    return lines


async def main_async(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    async with running_stack(args.embedded_flags) as stack:
        unleash = stack.flags.http is not None
        print("rollback latency bench: a guardrail breach visible in the metrics source -> verified rollback, by the "
              "push path (Alertmanager webhook -> starter.py alert-receiver -> `alert` signal -> check-alert -> "
              "StopRun -> RollbackVariant)")
        print(f"stack: {stack.servers}")
        if not unleash:
            print(f"*** {stack.flags.note}; the figures below are NOT Unleash's. To run it for real: npm and "
                  "Debian's postgresql on the machine (make test-integration installs them), then "
                  "`.venv/bin/python -m bench.rollback_latency_bench`")
        print(f"{args.repeat} experiments (+{args.warmup} warm-up) on a real-time clock (hour_seconds 3600: no "
              "scheduled check during the run); each: healthy traffic and a healthy alert (a check that must not "
              "roll back), then the breach written to DuckDB and the webhook posted at once")
        print()
        tag = secrets.token_hex(3)
        for i in range(args.warmup):
            await one(stack, f"rb-warm-{tag}-{i}")
        reps = []
        for i in range(args.repeat):
            rep = await one(stack, f"rb-{tag}-{i}")
            reps.append(rep)
            if args.verbose:
                print(f"  rep {i}: verified {rep.verified:.3f} s (served {rep.served:.3f}, receipt {rep.receipt:.3f})"
                      f"; " + ", ".join(f"{k} {v * 1000:.0f}" for k, v in rep.parts.items()), flush=True)
        for text in report(reps, unleash):
            print(text)
    print(f"bench wall time {time.perf_counter() - started:.1f} s (servers started and stopped by pid)")
    return 0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--repeat", type=int, default=10, help="measured experiments (default 10)")
    parser.add_argument("--warmup", type=int, default=1, help="unmeasured experiments first (default 1)")
    parser.add_argument("--embedded-flags", action="store_true",
                        help="skip Unleash: the embedded flag provider (for machines without npm/PostgreSQL)")
    parser.add_argument("--verbose", action="store_true", help="print every repetition")
    args = parser.parse_args(argv)
    sys.exit(asyncio.run(main_async(args)))


if __name__ == "__main__":
    main()
