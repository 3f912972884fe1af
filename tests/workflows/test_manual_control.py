"""Manual control: a stop signal, a promote update, a refused split change (validator: history unchanged),
duplicate delivery, and exactly-once effects when an activity fails after applying its change."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowUpdateFailedError, WorkflowUpdateStage
from temporalio.testing import WorkflowEnvironment

from abrollout.contracts.records import DecisionState
from abrollout.flags.evaluate import FlagState
from abrollout.run.control import AllocationChange, Control, PromoteRequest, StopRequest
from adapters.local import local_adapters
from adapters.local_flags import LocalFlags
from adapters.protocols import Adapters, Change
from client.experiments import start_experiment
from tests.workflows.conftest import Lab, golden_spec
from workers.assembly import build_worker
from workflows.experiment import ExperimentWorkflow


async def _settled(lab: Lab, workflow_id: str) -> None:
    """Wait until the workflow has no activity or workflow task outstanding: a checkpoint's timer fires at the
    skipped-to time, but its activities take real time, and their events would land after any `before`."""
    handle = lab.env.client.get_workflow_handle(workflow_id)
    for _ in range(600):
        raw = (await handle.describe()).raw_description
        if not raw.pending_activities and not raw.HasField("pending_workflow_task"):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{workflow_id} still busy after 30 s: {raw.pending_activities}")


async def _recorded_events(lab: Lab, workflow_id: str) -> list[int]:
    """Event types of the history without workflow-task bookkeeping: the time-skipping test server records
    a workflow task even for an update its validator rejects, where a real server (which runs validators on a
    speculative task) records nothing; tests/cli/test_against_server.py checks the exact history on a real server."""
    history = await lab.env.client.get_workflow_handle(workflow_id).fetch_history()
    bookkeeping = {EventType.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED, EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED,
                   EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED}
    return [e.event_type for e in history.events if e.event_type not in bookkeeping]


async def test_stop_signal_stops_and_rolls_back(lab: Lab) -> None:
    handle = await start_experiment(lab.env.client, golden_spec("steady", name="manual-stop"), lab.task_queue)
    await lab.env.sleep(timedelta(hours=5))
    await handle.signal(ExperimentWorkflow.stop, StopRequest(reason="launch freeze"))
    await handle.signal(ExperimentWorkflow.stop, StopRequest(reason="launch freeze"))  # duplicate delivery
    report = await handle.result()
    assert report.decision.state is DecisionState.rollback
    assert report.decision.rationale == "manual stop: launch freeze"
    closing = [(r.step, r.tool) for r in report.receipts if r.tool != "CheckMetrics"][5:]
    assert closing == [("stop", "StopRun"), ("rollback", "RollbackVariant"), ("snapshot-final", "SnapshotDashboard")]
    assert "exp_policy.v5#manual.1" in report.citations


async def test_promote_update_answers_with_the_carried_out_decision(lab: Lab) -> None:
    handle = await start_experiment(lab.env.client, golden_spec("steady", name="manual-promote"), lab.task_queue)
    await lab.env.sleep(timedelta(hours=3))
    report = await handle.execute_update(ExperimentWorkflow.request_promote,
                                         PromoteRequest(variant="treatment", reason="PM decision after review"))
    assert report.decision.state is DecisionState.promote
    assert [r.step for r in report.receipts][-3:] == ["promote", "stop", "snapshot-final"]
    flag = await lab.adapters.flags.read("abr.manual-promote")
    assert flag is not None and [v.name for v in flag.strategies[0].variants] == ["treatment"]
    assert (await handle.result()).decision.state is DecisionState.promote


async def test_refused_requests_cite_the_clause_and_leave_history_unchanged(lab: Lab) -> None:
    handle = await start_experiment(lab.env.client, golden_spec("steady", name="manual-refused"), lab.task_queue)
    await lab.env.sleep(timedelta(hours=2))
    await _settled(lab, handle.id)
    before = await _recorded_events(lab, handle.id)
    refusals: list[tuple[Any, Control, str]] = [
        (ExperimentWorkflow.change_allocation, AllocationChange(split={"control": 70, "treatment": 30}), "prereg.2"),
        (ExperimentWorkflow.change_allocation, AllocationChange(exposure_rules=['country == "US"']), "prereg.2"),
        (ExperimentWorkflow.change_allocation, AllocationChange(ramp_step=3), "prereg.3"),
        (ExperimentWorkflow.request_promote, PromoteRequest(variant="nope"), "manual.2"),
        (ExperimentWorkflow.request_promote, PromoteRequest(variant="control"), "manual.1"),
    ]
    for update, request, clause in refusals:
        with pytest.raises(WorkflowUpdateFailedError) as caught:
            await handle.execute_update(update, request)
        assert f"exp_policy.v5#{clause}" in str(caught.value.cause)
    assert await _recorded_events(lab, handle.id) == before
    await handle.execute_update(ExperimentWorkflow.request_stop, StopRequest(reason="done"))
    report = await handle.result()
    assert report.allocation.traffic_split == {"control": 50.0, "treatment": 50.0}


async def test_starting_the_same_experiment_twice_is_refused(lab: Lab) -> None:
    spec = golden_spec("steady", name="twice")
    handle = await start_experiment(lab.env.client, spec, lab.task_queue)
    with pytest.raises(Exception, match="already"):
        await start_experiment(lab.env.client, spec, lab.task_queue)
    await handle.signal(ExperimentWorkflow.stop, StopRequest(reason="done"))
    await handle.result()


class FailsAfterApplying(LocalFlags):
    """A flag provider whose first apply succeeds in the store and then fails before returning, as a worker
    crash or a lost response would."""

    failed = False

    async def apply(self, flag_key: str, desired: FlagState, idempotency_key: str, reason: str) -> Change:
        change = await super().apply(flag_key, desired, idempotency_key, reason)
        if not self.failed:
            FailsAfterApplying.failed = True
            raise ConnectionError("response lost after the change was applied")
        return change


async def test_a_retried_activity_leaves_one_change_and_one_receipt(env: WorkflowEnvironment, tmp_path: Path) -> None:
    base = local_adapters(tmp_path)
    flags = FailsAfterApplying(tmp_path / "flags.sqlite")
    adapters = Adapters(flags=flags, registry=base.registry, metrics=base.metrics, dashboards=base.dashboards,
                        tickets=base.tickets)
    async with build_worker(env.client, adapters, task_queue="exactly-once"):
        handle = await start_experiment(env.client, golden_spec("no-effect", name="exactly-once"), "exactly-once")
        report = await handle.result()
    assert FailsAfterApplying.failed
    changes = await flags.changes("abr.exactly-once")
    keys = [key for _, key, _ in changes]
    assert len(keys) == len(set(keys)), "a change was applied twice"
    allocate = [r for r in report.receipts if r.step == "allocate-0"]
    assert len(allocate) == 1 and allocate[0].ok
    assert "already applied under this key" in allocate[0].message


async def test_a_ramp_step_requested_twice_at_once_is_applied_once(lab: Lab) -> None:
    handle = await start_experiment(lab.env.client, golden_spec("abn", name="double-ramp"), lab.task_queue)
    await lab.env.sleep(timedelta(hours=2))
    request = AllocationChange(ramp_step=1, reason="looks healthy")
    first = await handle.start_update(ExperimentWorkflow.change_allocation, request,
                                      wait_for_stage=WorkflowUpdateStage.ACCEPTED)
    second = await handle.start_update(ExperimentWorkflow.change_allocation, request,
                                       wait_for_stage=WorkflowUpdateStage.ACCEPTED)  # both accepted at step 0
    reports = [await first.result(), await second.result()]
    assert [r.allocation.exposure_percent for r in reports] == [100.0, 100.0]
    changes = await lab.adapters.flags.changes("abr.double-ramp")  # type: ignore[attr-defined]
    assert [key.split(":")[1] for _, key, _ in changes] == ["flag", "allocate-0", "allocate-1"]
    await handle.execute_update(ExperimentWorkflow.request_stop, StopRequest(reason="done"), id="stop-once")
    again = await handle.execute_update(ExperimentWorkflow.request_stop, StopRequest(reason="done"), id="stop-once")
    assert again.decision.state is DecisionState.rollback  # the same update id: Temporal answers it once
    report = await handle.result()
    assert [r.step for r in report.receipts].count("stop") == 1
    assert [r.step for r in report.receipts].count("allocate-1") == 1
