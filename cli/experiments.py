"""Client-side operations on experiments, shared by starter.py, the tests and the benchmarks."""

from __future__ import annotations

from temporalio.client import Client, WorkflowHandle
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)

from abrollout.contracts.report import Report
from abrollout.contracts.spec import ExperimentSpec
from workflows.experiment import ExperimentInput, ExperimentWorkflow, workflow_id
from workflows.search_attributes import EXPERIMENT_DOMAIN, EXPERIMENT_STATE, PRIMARY_METRIC

ExperimentHandle = WorkflowHandle[ExperimentWorkflow, Report]


def search_attributes(spec: ExperimentSpec) -> TypedSearchAttributes:
    return TypedSearchAttributes([SearchAttributePair(EXPERIMENT_DOMAIN, spec.domain.value),
                                  SearchAttributePair(EXPERIMENT_STATE, "running"),
                                  SearchAttributePair(PRIMARY_METRIC, spec.primary_metric.name)])


async def start_experiment(client: Client, spec: ExperimentSpec, task_queue: str,
                           max_history_events: int | None = None, tool_timeout_seconds: int = 60) -> ExperimentHandle:
    """Start the experiment's workflow; a second start of the same name is refused by Temporal itself
    (the workflow id is the experiment key and ids are never reused), never duplicated."""
    if spec.name is None:
        raise ValueError("start_experiment needs a normalised spec")
    return await client.start_workflow(
        ExperimentWorkflow.run, ExperimentInput(spec=spec, max_history_events=max_history_events,
                                                tool_timeout_seconds=tool_timeout_seconds),
        id=workflow_id(spec.name), task_queue=task_queue, search_attributes=search_attributes(spec),
        id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE, id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
        static_summary=f"{spec.domain.value} experiment {spec.name}: {spec.primary_metric.name}, "
                       f"MDE {spec.mde.describe()}"[:200],
        static_details=spec.hypothesis or "")
