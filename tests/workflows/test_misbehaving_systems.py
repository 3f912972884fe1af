"""Outside systems that misbehave (tests/support/misbehaving.py): transient errors are retried with backoff and change
nothing; a flag edited by hand is never reported as success and stops the experiment safely; stale or empty
metrics decide nothing and open a ticket. The same faults in a real worker process:
tests/workers/test_fault_matrix.py.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from abrollout.contracts.records import DecisionState
from abrollout.contracts.report import Report
from abrollout.flags.states import single_arm_state
from abrollout.run.control import StopRequest
from adapters.local import local_adapters
from adapters.protocols import Adapters, MetricsSnapshot, MetricsSource, Registered
from client.experiments import start_experiment
from tests.support.misbehaving import (
    FlagMisbehaviour,
    MetricsMisbehaviour,
    Misbehaviour,
    Misbehaviours,
    misbehaving,
)
from tests.support.temporal_env import time_skipping
from tests.workflows.conftest import golden_spec
from workers.assembly import build_worker
from workflows.experiment import HEARTBEAT_TIMEOUT, ExperimentWorkflow


@asynccontextmanager
async def _worker(env: WorkflowEnvironment, data_dir: Path, faults: Misbehaviours,
                  queue: str) -> AsyncIterator[Adapters]:
    clean = local_adapters(data_dir)
    async with build_worker(env.client, misbehaving(clean, faults), task_queue=queue):
        yield clean


async def _run(env: WorkflowEnvironment, tmp_path: Path, scenario: str, name: str,
               faults: Misbehaviours) -> tuple[Report, Adapters, WorkflowHandle[Any, Report]]:
    async with _worker(env, tmp_path / name, faults, name) as clean:
        handle = await start_experiment(env.client, golden_spec(scenario, name=name), name)
        return await handle.result(), clean, handle


async def _retried_tools(handle: WorkflowHandle[Any, Report]) -> dict[str, int]:
    """The most attempts any call of each tool needed, for tools that needed more than one."""
    history = await handle.fetch_history()
    scheduled = {e.event_id: e.activity_task_scheduled_event_attributes.activity_type.name for e in history.events
                 if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED}
    attempts: dict[str, int] = {}
    for event in history.events:
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            started = event.activity_task_started_event_attributes
            tool = scheduled[started.scheduled_event_id]
            attempts[tool] = max(attempts.get(tool, 1), started.attempt)
    return {tool: n for tool, n in attempts.items() if n > 1}


def _course(report: Report) -> list[tuple[str, str, bool]]:
    return [(r.step, r.tool, r.ok) for r in report.receipts]


async def test_transient_faults_are_retried_with_backoff_and_change_nothing(env: WorkflowEnvironment,
                                                                             tmp_path: Path) -> None:
    calm = await time_skipping()  # its own server: the same experiment name, so the same users and data
    try:
        clean_report, _, _ = await _run(calm, tmp_path / "calm", "guardrail-breach", "flaky-systems", Misbehaviours())
    finally:
        await calm.shutdown()
    faults = Misbehaviours(
        flags=FlagMisbehaviour(error="5xx", fail_calls=[1, 2, 5]),
        registry=Misbehaviour(error="refused", fail_calls=[1]),
        metrics=MetricsMisbehaviour(error="timeout", fail_calls=[1], delay_seconds=0.001),
        dashboards=Misbehaviour(error="5xx", fail_calls=[1]),
        tickets=Misbehaviour(error="refused", fail_calls=[1, 2]))
    report, clean, handle = await _run(env, tmp_path, "guardrail-breach", "flaky-systems", faults)
    assert report.decision.state is clean_report.decision.state is DecisionState.guardrail_stop
    assert _course(report) == _course(clean_report)
    assert await _retried_tools(handle) == {"RegisterExperiment": 2, "CreateFlag": 3, "AllocateTraffic": 2,
                                            "SnapshotDashboard": 2, "CheckMetrics": 2, "OpenTicket": 3}
    changes = await clean.flags.changes("abr.flaky-systems")  # type: ignore[attr-defined]
    assert len({key for _, key, _ in changes}) == len(changes), "one change per idempotency key"
    assert [t["severity"] for t in await clean.tickets.list("flaky-systems")] == ["high"]  # type: ignore[attr-defined]


async def test_a_flag_edited_by_hand_is_a_discrepancy_that_stops_safely(env: WorkflowEnvironment,
                                                                         tmp_path: Path) -> None:
    faults = Misbehaviours(flags=FlagMisbehaviour(hand_edit_after=["allocate-0"]))
    report, clean, _ = await _run(env, tmp_path, "clear-win", "hand-edited", faults)
    allocate = next(r for r in report.receipts if r.step == "allocate-0")
    assert not allocate.ok and "read-back mismatch" in allocate.message
    assert "strategy 1 rollout: expected 100, observed 50" in allocate.message, allocate.message
    assert report.decision.state is DecisionState.guardrail_stop
    assert "read-back mismatch" in report.decision.rationale and "stopping safely" in report.decision.rationale
    assert "exp_policy.v5#receipts.1" in report.citations
    assert not any(r.tool == "CheckMetrics" for r in report.receipts), "no traffic is judged on an unknown flag"
    rollback = next(r for r in report.receipts if r.step == "rollback")
    assert rollback.ok and "read back and matched" in rollback.message
    served = await clean.flags.read("abr.hand-edited")
    assert served == single_arm_state(served, "abr.hand-edited", "control"), "the flag serves control only"
    tickets = await clean.tickets.list("hand-edited")  # type: ignore[attr-defined]
    assert [t["severity"] for t in tickets] == ["critical"]


async def test_a_rollback_edited_by_hand_is_never_reported_as_done(env: WorkflowEnvironment, tmp_path: Path) -> None:
    faults = Misbehaviours(flags=FlagMisbehaviour(hand_edit_after=["rollback"]))
    report, clean, _ = await _run(env, tmp_path, "guardrail-breach", "rollback-edited", faults)
    rollback = next(r for r in report.receipts if r.step == "rollback")
    assert not rollback.ok and "read-back mismatch" in rollback.message
    tickets = {t["title"]: t["severity"] for t in await clean.tickets.list("rollback-edited")}  # type: ignore
    assert tickets["Unverified flag change: rollback-edited"] == "critical"
    assert report.decision.state is DecisionState.guardrail_stop


async def _never_decides_on(env: WorkflowEnvironment, tmp_path: Path, name: str, faults: Misbehaviours,
                            reason: Callable[[str], bool]) -> None:
    report, clean, _ = await _run(env, tmp_path, "clear-win", name, faults)
    assert report.decision.state is DecisionState.inconclusive, "a clear win is never promoted on such data"
    looks = [c for c in report.monitoring.checkpoints if c.kind == "analysis"]
    assert len(looks) == 14 and all(c.no_data for c in looks) and reason(looks[-1].summary), looks[-1]
    assert "no usable data" in report.decision.rationale
    tickets = await clean.tickets.list(name)  # type: ignore[attr-defined]
    assert [t["title"] for t in tickets][:1] == [f"No metrics data: {name}"]


async def test_stale_metrics_decide_nothing_and_open_a_ticket(env: WorkflowEnvironment, tmp_path: Path) -> None:
    faults = Misbehaviours(metrics=MetricsMisbehaviour(stale_after_hours=2))
    await _never_decides_on(env, tmp_path, "stale-metrics", faults, lambda why: "stale data" in why)


async def test_empty_metrics_decide_nothing_and_open_a_ticket(env: WorkflowEnvironment, tmp_path: Path) -> None:
    faults = Misbehaviours(metrics=MetricsMisbehaviour(empty=True))
    await _never_decides_on(env, tmp_path, "empty-metrics", faults, lambda why: "no " in why)


class _SlowFirstCheck:
    """A warehouse whose first query runs longer than the heartbeat timeout, in a thread as a real driver's does."""

    def __init__(self, inner: MetricsSource) -> None:
        self.inner = inner
        self.name = "slow-first-check"
        self.calls = 0

    async def snapshot(self, registered: Registered, run_id: str, at_seconds: int,
                       metrics: list[str]) -> MetricsSnapshot:
        self.calls += 1
        if self.calls == 1:
            await asyncio.to_thread(time.sleep, HEARTBEAT_TIMEOUT.total_seconds() + 3)
        return await self.inner.snapshot(registered, run_id, at_seconds, metrics)


async def test_a_check_longer_than_the_heartbeat_timeout_keeps_its_attempt(env: WorkflowEnvironment,
                                                                           tmp_path: Path) -> None:
    adapters = local_adapters(tmp_path / "data")
    slow = _SlowFirstCheck(adapters.metrics)
    async with build_worker(env.client, dataclasses.replace(adapters, metrics=slow), task_queue="slow-check"):
        handle = await start_experiment(env.client, golden_spec("steady", name="slow-check"), "slow-check")
        await env.sleep(timedelta(hours=1, minutes=30))
        assert slow.calls >= 1
        report = await handle.execute_update(ExperimentWorkflow.request_stop, StopRequest(reason="enough"))
    first_check = next(r for r in report.receipts if r.tool == "CheckMetrics")
    assert first_check.ok, first_check
    assert "CheckMetrics" not in await _retried_tools(handle), "the long check kept its first attempt"
