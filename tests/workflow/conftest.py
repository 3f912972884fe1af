"""One time-skipping Temporal server for the workflow tests, and a worker over fresh embedded adapters."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from temporalio.testing import WorkflowEnvironment

from abrollout.contracts.spec import ExperimentSpec
from abrollout.spec_loader import check_text
from adapters.local import local_adapters
from adapters.protocols import Adapters
from cli.worker_setup import build_worker
from tests.temporal_env import time_skipping

GOLDEN = Path(__file__).resolve().parents[2] / "examples" / "golden"
_queues = itertools.count()


def golden_spec(scenario: str, **overrides: object) -> ExperimentSpec:
    check = check_text((GOLDEN / f"{scenario}.yaml").read_text(), scenario)
    assert check.spec is not None, [str(p) for p in check.problems]
    return check.spec.model_copy(update=overrides)


@dataclass
class Lab:
    env: WorkflowEnvironment
    adapters: Adapters
    task_queue: str
    data_dir: Path


@pytest.fixture(scope="session")
async def env() -> AsyncIterator[WorkflowEnvironment]:
    environment = await time_skipping()
    yield environment
    await environment.shutdown()


@pytest.fixture
async def lab(env: WorkflowEnvironment, tmp_path: Path) -> AsyncIterator[Lab]:
    data_dir = tmp_path / "data"
    adapters = local_adapters(data_dir)
    queue = f"golden-{next(_queues)}"
    async with build_worker(env.client, adapters, task_queue=queue):
        yield Lab(env=env, adapters=adapters, task_queue=queue, data_dir=data_dir)
