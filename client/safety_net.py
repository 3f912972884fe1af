"""The safety net from a client: the Temporal Schedule every worker keeps, one sweep on demand, and the repair of
an experiment. Shared by the worker (its schedule), `starter.py reconcile` and `status`, and the tests."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleUpdate,
    ScheduleUpdateInput,
    WorkflowExecutionStatus,
)
from temporalio.service import RPCError, RPCStatusCode

from abrollout.run.safety_net import Repair, SweepInput, SweepReport, safety_net_workflow_id
from client.exits import RUNTIME_FAILURE, UserFacingError
from workflows.safety_net import ReconcileWorkflow, SafetyNetWorkflow

SCHEDULE_ID = "abrollout-safety-net"
SWEEP_ID = "abrollout-safety-net-sweep"


def _schedule(task_queue: str, every: timedelta, sweep: SweepInput) -> Schedule:
    return Schedule(action=ScheduleActionStartWorkflow(ReconcileWorkflow.run, sweep, id=SWEEP_ID,
                                                       task_queue=task_queue),
                    spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=every)]),
                    policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP))


async def ensure_schedule(client: Client, task_queue: str, every: timedelta, sweep: SweepInput) -> None:
    """Create the sweep's schedule, or bring it to this worker's settings: every worker calls this at start-up."""
    schedule = _schedule(task_queue, every, sweep)
    try:
        await client.create_schedule(SCHEDULE_ID, schedule)
    except ScheduleAlreadyRunningError:

        def same(_: ScheduleUpdateInput) -> ScheduleUpdate:
            return ScheduleUpdate(schedule=schedule)

        await client.get_schedule_handle(SCHEDULE_ID).update(same)


async def sweep_once(client: Client, task_queue: str, sweep: SweepInput, wait_seconds: float) -> SweepReport:
    handle = await client.start_workflow(
        ReconcileWorkflow.run, sweep, id=f"{SWEEP_ID}-manual-{datetime.now(UTC):%Y%m%dT%H%M%S%fZ}",
        task_queue=task_queue, static_summary="one safety-net sweep, from starter.py reconcile")
    try:
        return await asyncio.wait_for(handle.result(), wait_seconds)
    except TimeoutError:
        raise UserFacingError(f"error: no worker ran the sweep {handle.id} within {wait_seconds:g} s; start one "
                              f"with `python worker.py` (task queue '{task_queue}')", RUNTIME_FAILURE) from None


async def repair_of(client: Client, experiment_workflow_id: str) -> Repair | None:
    """The safety net's repair of an experiment, once it finished; None if there was none."""
    handle = client.get_workflow_handle_for(SafetyNetWorkflow.run, safety_net_workflow_id(experiment_workflow_id))
    try:
        if (await handle.describe()).status != WorkflowExecutionStatus.COMPLETED:
            return None
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return None
        raise
    return await handle.result()
