"""How a worker is assembled: the experiment workflow and its ten tool activities over the chosen adapters, and the
safety net (its sweep, its repairs and their activities). Shared by worker.py, the tests and the benchmarks so they
all run the same thing."""

from __future__ import annotations

from typing import Any

from temporalio.client import Client
from temporalio.worker import Worker

from activities.safety_net import SafetyNetActivities
from activities.tools import Tools
from adapters.protocols import Adapters
from client.settings import DEFAULT_TASK_QUEUE
from workflows.experiment import ExperimentWorkflow
from workflows.safety_net import ReconcileWorkflow, SafetyNetWorkflow

WORKFLOWS = [ExperimentWorkflow, ReconcileWorkflow, SafetyNetWorkflow]


def build_worker(client: Client, adapters: Adapters, task_queue: str = DEFAULT_TASK_QUEUE,
                 max_concurrent_activities: int = 64, **worker_options: Any) -> Worker:
    """Activities are async (adapters do their blocking work in threads), so no activity executor is needed.
    `worker_options`: further temporalio Worker options (the benchmarks try some)."""
    activities = [*Tools(adapters).all(), *SafetyNetActivities(client, adapters.registry).all()]
    return Worker(client, task_queue=task_queue, workflows=WORKFLOWS, activities=activities,
                  max_concurrent_activities=max_concurrent_activities, **worker_options)
