"""The safety net: an experiment whose workflow is terminated, failed by a broken deploy, or stuck on a workflow task
that keeps failing gets its flag returned to control (read back), its registry slot released and a critical ticket,
by a sweep outside its workflow; `starter.py status` says so. Dev servers (the sweep lists and describes workflows,
and the worker keeps a Temporal Schedule); embedded adapters here, Unleash in tests/integration/test_golden_real.py.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Worker
from temporalio.workflow import NondeterminismError

import devserver
from abrollout.plan.planner import flag_key
from abrollout.run.safety_net import ROLLBACK, TERMINATE, SweepInput
from activities.safety_net import SafetyNetActivities
from activities.tools import Tools
from adapters.local import local_adapters
from adapters.local_flags import LocalFlags
from adapters.local_registry import LocalRegistry
from adapters.local_tickets import LocalTickets
from adapters.protocols import Adapters
from cli.render import REPAIRED
from client.experiments import ExperimentHandle, start_experiment
from client.safety_net import SCHEDULE_ID, repair_of, sweep_once
from tests.cli.test_truthful import _row
from tests.cli.test_validate import ROOT
from tests.support import replay_guard
from tests.support.broken_deploy import BrokenDeploy
from tests.support.temporal_env import dev_server
from tests.workflows.conftest import golden_spec
from workers.assembly import build_worker
from workflows.experiment import ExperimentWorkflow
from workflows.safety_net import ReconcileWorkflow, SafetyNetWorkflow

QUEUE = "safety-net"
_names = itertools.count()


@dataclass
class Stack:
    """A dev server and the embedded stores a worker uses (flags, registry, tickets: SQLite, shared with it)."""

    client: Client
    address: str
    data_dir: Path

    @functools.cached_property
    def adapters(self) -> Adapters:
        """The adapters for a worker in this process (the metrics store is DuckDB: one process only)."""
        return local_adapters(self.data_dir)

    async def running(self, prefix: str) -> ExperimentHandle:
        """An experiment with its traffic allocated, waiting an hour for its first check (a real-time clock)."""
        handle = await start_experiment(self.client, golden_spec("steady", name=f"{prefix}-{next(_names)}"), QUEUE)
        await _until(lambda: self._allocated(handle), "traffic allocated")
        return handle

    async def _allocated(self, handle: ExperimentHandle) -> bool:
        return any(r.step == "allocate-0" and r.ok for r in await handle.query(ExperimentWorkflow.receipts))

    async def served(self, handle: ExperimentHandle) -> list[str]:
        flag = await LocalFlags(self.data_dir / "flags.sqlite").read(flag_key(handle.id.removeprefix("exp-")))
        assert flag is not None
        return [v.name for s in flag.strategies for v in s.variants]

    async def open_keys(self) -> list[str]:
        return [e.exp_key for e in await LocalRegistry(self.data_dir / "registry.sqlite").open_experiments()]

    async def tickets(self, handle: ExperimentHandle) -> list[dict[str, str]]:
        return await LocalTickets(self.data_dir / "tickets.sqlite").list(handle.id.removeprefix("exp-"))


async def _until(condition: Callable[[], Awaitable[bool]], what: str, seconds: float = 120) -> None:
    deadline = asyncio.get_running_loop().time() + seconds
    while not await condition():
        assert asyncio.get_running_loop().time() < deadline, f"not within {seconds} s: {what}"
        await asyncio.sleep(0.1)


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    server = dev_server(tmp_path / "temporal.sqlite")
    try:
        client = await Client.connect(server.address, data_converter=pydantic_data_converter)
        yield Stack(client, server.address, tmp_path / "data")
    finally:
        server.stop()


def _temporal(*args: str) -> None:
    subprocess.run([str(devserver.TEMPORAL), *args], check=True, capture_output=True, timeout=60)


async def _starter(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    """starter.py in a thread: the worker these tests run shares this event loop and must go on meanwhile."""
    env = {**os.environ, "TEMPORAL_ADDRESS": stack.address, "ABROLLOUT_TASK_QUEUE": QUEUE}
    return await asyncio.to_thread(subprocess.run, [sys.executable, str(ROOT / "starter.py"), *args],
                                   capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)


async def _assert_repaired(stack: Stack, handle: ExperimentHandle, status: str) -> None:
    """The flag serves control only, the slot is free, one critical ticket, and `status` says who did it."""
    assert await stack.served(handle) == ["control"]
    assert handle.id.removeprefix("exp-") not in await stack.open_keys()
    tickets = await stack.tickets(handle)
    assert [t["severity"] for t in tickets] == ["critical"], tickets
    repair = await repair_of(stack.client, handle.id)
    assert repair is not None and repair.status == status and repair.returned_to_control
    shown = await _starter(stack, "status", handle.id)
    assert shown.returncode == 0, shown.stderr
    assert "the safety net returned the flag to control" in shown.stdout
    assert f"change {repair.ref(ROLLBACK)}" in shown.stdout and tickets[0]["ticket_id"] in shown.stdout
    listed = await _starter(stack, "list")
    row = _row(listed.stdout, handle.id)
    assert row is not None and row[1] == REPAIRED, listed.stdout


async def test_a_terminated_experiment_is_returned_to_control(stack: Stack) -> None:
    async with build_worker(stack.client, stack.adapters, task_queue=QUEUE):
        handle = await stack.running("terminated")
        other = await stack.running("healthy")
        _temporal("workflow", "terminate", "--address", stack.address, "-w", handle.id, "--reason", "oops")
        assert await stack.served(handle) == ["control", "treatment"], "termination ran no workflow code"
        printed = await _starter(stack, "reconcile")
        assert printed.returncode == 0, printed.stderr
        assert "2 registered experiments counted as running; 1 repaired" in printed.stdout
        assert f"{handle.id.removeprefix('exp-')}: terminated; the safety net returned the flag to control" \
            in printed.stdout
        await _assert_repaired(stack, handle, "terminated")
        assert await stack.served(other) == ["control", "treatment"], "a healthy experiment is left alone"
        again = await sweep_once(stack.client, QUEUE, SweepInput(), 60)
        assert (again.checked, again.repaired) == (1, []), "a second sweep finds nothing more to do"


def broken_worker(client: Client, adapters: Adapters, queue: str, **options: Any) -> Worker:
    """The experiment's workflow replaced by a broken deploy; the tools and the safety net as usual."""
    return Worker(client, task_queue=queue, workflows=[BrokenDeploy, ReconcileWorkflow, SafetyNetWorkflow],
                  activities=[*Tools(adapters).all(), *SafetyNetActivities(client, adapters.registry).all()],
                  **options)


async def test_an_experiment_failed_by_a_broken_deploy_is_returned_to_control(stack: Stack) -> None:
    async with build_worker(stack.client, stack.adapters, task_queue=QUEUE, max_cached_workflows=0):
        handle = await stack.running("failed")
    replay_guard.exempt(handle.id, "failed by a broken deploy on purpose")
    fails_the_workflow = [NondeterminismError]
    async with broken_worker(stack.client, stack.adapters, QUEUE, workflow_failure_exception_types=fails_the_workflow):
        await handle.signal("alert")  # a workflow task for the broken code
        await _until(lambda: _status_is(handle, WorkflowExecutionStatus.FAILED), "the workflow failed")
        report = await sweep_once(stack.client, QUEUE, SweepInput(), 60)
    assert [r.status for r in report.repaired] == ["failed"]
    await _assert_repaired(stack, handle, "failed")


async def test_an_experiment_stuck_on_a_failing_workflow_task_is_ended_and_returned_to_control(stack: Stack) -> None:
    async with build_worker(stack.client, stack.adapters, task_queue=QUEUE, max_cached_workflows=0):
        handle = await stack.running("stuck")
    async with broken_worker(stack.client, stack.adapters, QUEUE):
        await handle.signal("alert")
        await _until(lambda: _failing_for(handle, 2.0), "the workflow task failing again and again for 2 s")
        early = await sweep_once(stack.client, QUEUE, SweepInput(stuck_after_seconds=3600), 60)
        assert early.repaired == [], "failing for less than stuck_after is not stuck yet"
        report = await sweep_once(stack.client, QUEUE, SweepInput(stuck_after_seconds=1), 60)
    assert [r.status for r in report.repaired] == ["stuck"]
    assert report.repaired[0].ref(TERMINATE) is not None
    assert (await handle.describe()).status == WorkflowExecutionStatus.TERMINATED
    await _assert_repaired(stack, handle, "stuck")


async def _status_is(handle: ExperimentHandle, status: WorkflowExecutionStatus) -> bool:
    return (await handle.describe()).status == status


async def _failing_for(handle: ExperimentHandle, seconds: float) -> bool:
    task = (await handle.describe()).raw_description.pending_workflow_task
    since = task.original_scheduled_time.ToDatetime(tzinfo=UTC)
    return task.attempt >= 2 and (datetime.now(UTC) - since).total_seconds() >= seconds


def test_the_worker_keeps_a_schedule_that_repairs_a_terminated_experiment_unasked(tmp_path: Path) -> None:
    """worker.py creates the sweep's Temporal Schedule at start-up; a terminated experiment is repaired with nobody
    running `reconcile`."""
    server = dev_server(tmp_path / "temporal.sqlite")
    config = tmp_path / "worker.toml"
    config.write_text("[safety_net]\nevery_minutes = 0.05\n")  # every 3 s
    env = {**os.environ, "TEMPORAL_ADDRESS": server.address, "ABROLLOUT_TASK_QUEUE": QUEUE, "ABROLLOUT_METRICS": "off",
           "ABROLLOUT_DATA_DIR": str(tmp_path / "data"), "ABROLLOUT_CONFIG": str(config)}
    log = tmp_path / "worker.log"
    with open(log, "wb") as out:
        worker = subprocess.Popen([sys.executable, str(ROOT / "worker.py")], env=env, stdout=out, stderr=out, cwd=ROOT)
    try:
        asyncio.run(_scheduled_repair(server.address, tmp_path / "data", log))
    finally:
        devserver.stop_process(worker)
        server.stop()


async def _scheduled_repair(address: str, data_dir: Path, log: Path) -> None:
    await _until(_log_says(log, b"worker started"), "the worker to start", 60)
    assert json.dumps(SCHEDULE_ID)[1:-1].encode() in log.read_bytes()
    client = await Client.connect(address, data_converter=pydantic_data_converter)
    schedule = await client.get_schedule_handle(SCHEDULE_ID).describe()
    assert schedule.schedule.spec.intervals[0].every == timedelta(seconds=3)
    stack = Stack(client, address, data_dir)
    handle = await stack.running("scheduled")
    _temporal("workflow", "terminate", "--address", address, "-w", handle.id, "--reason", "oops")
    await _until(lambda: _repaired(stack, handle), "the scheduled sweep's repair", 60)
    await _assert_repaired(stack, handle, "terminated")


def _log_says(log: Path, text: bytes) -> Callable[[], Awaitable[bool]]:
    async def says() -> bool:
        return text in log.read_bytes()

    return says


async def _repaired(stack: Stack, handle: ExperimentHandle) -> bool:
    return await repair_of(stack.client, handle.id) is not None
