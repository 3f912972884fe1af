"""The safety net's own activities: find abandoned experiments, end a stuck workflow, release a registry slot.

Returning the flag to control and opening the ticket are the experiment's own tools (RollbackVariant, OpenTicket),
called with the safety net's idempotency keys; these three are what only the safety net needs: the registry's
view, Temporal's view (through the worker's client) and the comparison of the two.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from temporalio import activity
from temporalio.client import Client, WorkflowExecutionDescription, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from abrollout.run.safety_net import Abandoned, Closed, Found, Release, SweepInput, Terminate
from adapters.protocols import OpenExperiment, Registry
from workflows.experiment import workflow_id

CLOSED: dict[WorkflowExecutionStatus, Closed] = {
    WorkflowExecutionStatus.TERMINATED: "terminated",
    WorkflowExecutionStatus.FAILED: "failed",
    WorkflowExecutionStatus.TIMED_OUT: "timed_out",
    WorkflowExecutionStatus.CANCELED: "canceled",
}
"""Closed without carrying out a decision. A completed workflow carried its decision out (a promote leaves its
flag serving the winner on purpose), and a continued-as-new one lives on in its next run."""


class SafetyNetActivities:
    def __init__(self, client: Client, registry: Registry) -> None:
        self.client = client
        self.registry = registry

    def all(self) -> list[Callable[..., Any]]:
        return [self.find_abandoned, self.terminate, self.release]

    @activity.defn(name="FindAbandonedExperiments")
    async def find_abandoned(self, sweep: SweepInput) -> Found:
        """Every experiment the registry counts as running whose workflow is closed, gone, or stuck on a failing
        workflow task for longer than `stuck_after_seconds`."""
        open_experiments = await self.registry.open_experiments()
        found = []
        for experiment in open_experiments:
            abandoned = await self._check(experiment, sweep.stuck_after_seconds)
            if abandoned is not None:
                found.append(abandoned)
            activity.heartbeat()
        return Found(checked=len(open_experiments), abandoned=found)

    async def _check(self, experiment: OpenExperiment, stuck_after_seconds: int) -> Abandoned | None:
        wf_id = workflow_id(experiment.exp_key)
        handle = self.client.get_workflow_handle(wf_id)
        try:
            described = await handle.describe()
        except RPCError as exc:
            if exc.status != RPCStatusCode.NOT_FOUND:
                raise
            return Abandoned(exp_key=experiment.exp_key, exp_id=experiment.exp_id, workflow_id=wf_id,
                             status="not_found", why=f"Temporal has no workflow {wf_id}")
        status = described.status
        if status in CLOSED:
            closed = described.close_time.isoformat(timespec="seconds") if described.close_time else "?"
            return Abandoned(exp_key=experiment.exp_key, exp_id=experiment.exp_id, workflow_id=wf_id,
                             status=CLOSED[status], why=f"{CLOSED[status].replace('_', ' ')} at {closed}",
                             owners=await self._owners(described))
        if status is WorkflowExecutionStatus.RUNNING:
            why = _stuck(described, stuck_after_seconds)
            if why is not None:
                return Abandoned(exp_key=experiment.exp_key, exp_id=experiment.exp_id, workflow_id=wf_id,
                                 status="stuck", why=why, owners=await self._owners(described))
        return None

    async def _owners(self, described: WorkflowExecutionDescription) -> list[str]:
        """The spec's owners, from the run's input (the registry does not keep them); none if unreadable."""
        handle = self.client.get_workflow_handle(described.id, run_id=described.run_id)
        async for event in handle.fetch_history_events(page_size=1):
            payloads = event.workflow_execution_started_event_attributes.input.payloads
            try:
                owners = json.loads(payloads[0].data)["spec"]["owners"]
            except (IndexError, KeyError, TypeError, ValueError):
                return []
            return [str(o) for o in owners][:20] if isinstance(owners, list) else []
        return []

    @activity.defn(name="TerminateStuckWorkflow")
    async def terminate(self, request: Terminate) -> str:
        """End a stuck experiment's run, so it cannot act after the safety net has taken over; its run id."""
        handle = self.client.get_workflow_handle(request.workflow_id)
        described = await handle.describe()
        if described.status is WorkflowExecutionStatus.RUNNING:
            await handle.terminate(reason=request.reason[:1000])
        return described.run_id or request.workflow_id

    @activity.defn(name="ReleaseExperiment")
    async def release(self, request: Release) -> str:
        return await self.registry.release(request.exp_id, request.reason, request.idempotency_key)


def _stuck(described: WorkflowExecutionDescription, stuck_after_seconds: int) -> str | None:
    task = described.raw_description.pending_workflow_task
    if not described.raw_description.HasField("pending_workflow_task") or task.attempt <= 1:
        return None
    since = task.original_scheduled_time.ToDatetime(tzinfo=UTC)
    failing = (datetime.now(UTC) - since).total_seconds()
    if failing < stuck_after_seconds:
        return None
    return (f"stuck: its workflow task has failed {task.attempt - 1} times since {since.isoformat(timespec='seconds')}"
            f" ({failing / 60:.0f} min); a code or deploy fault that only a person can fix")
