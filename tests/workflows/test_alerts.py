"""Alerts push a guardrail check now, and nothing else: a flood of them costs one check and one more after the
cool-down (abrollout.run.inbox.ALERT_CHECK_MIN_INTERVAL), and alert checks that find no data open no ticket (only
scheduled checks count towards data.1's). Through the workflow's signal, as the receiver or the raw API sends it."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from temporalio.api.enums.v1 import EventType
from temporalio.testing import WorkflowEnvironment

from abrollout.contracts.records import DecisionState
from abrollout.run.control import AlertRequest, StopRequest
from abrollout.run.inbox import ALERT_CHECK_MIN_INTERVAL
from client.experiments import ExperimentHandle, start_experiment
from tests.support.misbehaving import MetricsMisbehaviour, Misbehaviours
from tests.workflows.conftest import Lab, golden_spec
from tests.workflows.test_misbehaving_systems import _worker
from workflows.experiment import ExperimentWorkflow

PAST_THE_COOL_DOWN = ALERT_CHECK_MIN_INTERVAL + timedelta(seconds=5)


async def _alert_checks(handle: ExperimentHandle) -> list[str]:
    return [r.step for r in await handle.query(ExperimentWorkflow.receipts) if r.step.startswith("check-alert-")]


async def test_a_flood_of_alerts_costs_one_check_and_one_more_after_the_cool_down(lab: Lab) -> None:
    handle = await start_experiment(lab.env.client, golden_spec("steady", name="alert-flood"), lab.task_queue)
    await lab.env.sleep(timedelta(minutes=10))  # set up, its first scheduled check 50 minutes away
    for i in range(300):
        await handle.signal(ExperimentWorkflow.alert, AlertRequest(source="flood", reason=f"alert {i}"))
    await lab.env.sleep(PAST_THE_COOL_DOWN)
    await lab.env.sleep(PAST_THE_COOL_DOWN)
    assert await _alert_checks(handle) == ["check-alert-0", "check-alert-1"]
    report = await handle.execute_update(ExperimentWorkflow.request_stop, StopRequest(reason="enough"))
    assert report.decision.state is DecisionState.rollback
    events = (await handle.fetch_history()).events
    assert not any(e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED for e in events)


async def test_alert_checks_that_find_no_data_open_no_ticket(env: WorkflowEnvironment, tmp_path: Path) -> None:
    faults = Misbehaviours(metrics=MetricsMisbehaviour(empty=True))
    async with _worker(env, tmp_path / "data", faults, "alert-no-data") as clean:
        handle = await start_experiment(env.client, golden_spec("steady", name="alert-no-data"), "alert-no-data")
        await env.sleep(timedelta(minutes=5))
        for _ in range(4):  # more than data.1's grace of 3 checks in a row
            await handle.signal(ExperimentWorkflow.alert, AlertRequest(source="test", reason="looks bad"))
            await env.sleep(PAST_THE_COOL_DOWN)
        assert await _alert_checks(handle) == [f"check-alert-{i}" for i in range(4)]
        report = await handle.query(ExperimentWorkflow.report)
        assert all(c.no_data for c in report.monitoring.checkpoints)
        assert await clean.tickets.list("alert-no-data") == []  # type: ignore[attr-defined]
        await handle.execute_update(ExperimentWorkflow.request_stop, StopRequest(reason="enough"))
