"""One time-skipping Temporal server for the workflow tests, and a worker over fresh embedded adapters.

The server is shared, and it skips time only while no workflow or activity task is outstanding: a workflow a
failed test left running, with its worker gone, would stop the clock for every later test (they would hang).
So each `lab` terminates the workflows it started that are still running when its test ends."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment

from abrollout.contracts.spec import ExperimentSpec
from abrollout.spec.loader import check_text
from adapters.local import local_adapters
from adapters.protocols import Adapters
from tests.support.temporal_env import StartedWorkflows, time_skipping
from workers.assembly import build_worker

GOLDEN = Path(__file__).resolve().parents[2] / "examples" / "golden"
_queues = itertools.count()


def golden_spec(scenario: str, **overrides: object) -> ExperimentSpec:
    check = check_text((GOLDEN / f"{scenario}.yaml").read_text(), scenario)
    assert check.spec is not None, [str(p) for p in check.problems]
    return check.spec.model_copy(update=overrides)


_started = StartedWorkflows()


@dataclass
class Lab:
    env: WorkflowEnvironment
    adapters: Adapters
    task_queue: str
    data_dir: Path


@pytest.fixture(scope="session")
async def env() -> AsyncIterator[WorkflowEnvironment]:
    environment = await time_skipping(interceptors=[_started])
    yield environment
    await environment.shutdown()


@pytest.fixture
async def lab(env: WorkflowEnvironment, tmp_path: Path) -> AsyncIterator[Lab]:
    data_dir = tmp_path / "data"
    adapters = local_adapters(data_dir)
    queue = f"golden-{next(_queues)}"
    already = len(_started.ids)
    async with build_worker(env.client, adapters, task_queue=queue):
        yield Lab(env=env, adapters=adapters, task_queue=queue, data_dir=data_dir)
    for workflow_id in dict.fromkeys(_started.ids[already:]):
        try:
            await env.client.get_workflow_handle(workflow_id).terminate("the test ended with it still running")
        except RPCError as error:
            if error.status is not RPCStatusCode.NOT_FOUND:  # NOT_FOUND: it had finished, nothing to stop
                raise
