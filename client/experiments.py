"""Client-side operations on experiments, shared by starter.py, the tests and the benchmarks."""

from __future__ import annotations

import asyncio
import contextlib

from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHandle
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)

from abrollout.contracts.report import Report
from abrollout.contracts.spec import ExperimentSpec
from abrollout.contracts.tools import ToolReceipt
from abrollout.plan.planner import ExperimentPlan, plan
from abrollout.run.input import ExperimentInput
from workflows.experiment import ExperimentWorkflow, workflow_id
from workflows.search_attributes import EXPERIMENT_DOMAIN, EXPERIMENT_STATE, PRIMARY_METRIC

ExperimentHandle = WorkflowHandle[ExperimentWorkflow, Report]


def search_attributes(spec: ExperimentSpec) -> TypedSearchAttributes:
    return TypedSearchAttributes([SearchAttributePair(EXPERIMENT_DOMAIN, spec.domain.value),
                                  SearchAttributePair(EXPERIMENT_STATE, "running"),
                                  SearchAttributePair(PRIMARY_METRIC, spec.primary_metric.name)])


async def start_experiment(client: Client, spec: ExperimentSpec, task_queue: str,
                           max_history_events: int | None = None, tool_timeout_seconds: int = 60,
                           experiment_plan: ExperimentPlan | None = None) -> ExperimentHandle:
    """Start the experiment's workflow with its plan (made here unless the caller already made it); a second start
    of the same name is refused by Temporal itself (ids are never reused), never duplicated. The UI shows the plan's
    policy and hash."""
    if spec.name is None:
        raise ValueError("start_experiment needs a normalised spec")
    planned = experiment_plan or plan(spec)
    return await client.start_workflow(
        ExperimentWorkflow.run, ExperimentInput(spec=spec, plan=planned, max_history_events=max_history_events,
                                                tool_timeout_seconds=tool_timeout_seconds),
        id=workflow_id(spec.name), task_queue=task_queue, search_attributes=search_attributes(spec),
        id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE, id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
        memo={"policy": planned.policy_id, "plan_hash": planned.plan_hash},
        static_summary=f"{spec.domain.value} experiment {spec.name}: {spec.primary_metric.name}, "
                       f"MDE {spec.mde.describe()}"[:200],
        static_details=f"{spec.hypothesis or ''}\n\npolicy {planned.policy_id} · plan {planned.plan_hash}")


async def registration(client: Client, handle: ExperimentHandle, timeout_seconds: float) -> str | None:
    """The registry's exp id from the ok `register` receipt, as soon as the history holds it; None when the workflow
    closed without one (its result says why) or `timeout_seconds` passed. It reads the history, which the server
    answers by itself, so a worker that died right after registering does not hide the registration."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout_seconds):
            async for event in handle.fetch_history_events(wait_new_event=True):
                if event.event_type != EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
                    continue
                payloads = event.activity_task_completed_event_attributes.result.payloads
                receipt: ToolReceipt = (await client.data_converter.decode(payloads, [ToolReceipt]))[0]
                if receipt.step == "register" and receipt.ok:
                    return receipt.ref
    return None
