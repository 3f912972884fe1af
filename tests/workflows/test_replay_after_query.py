"""The nondeterminism seen in the fault matrix, reproduced step by step.

A worker dies right after a flag change; its workflow stays sticky to it, so the next workflow task waits on the
dead worker's queue. Meanwhile a query (`starter.py watch` polls one every second) reaches the replacement worker,
which has no cached copy: it replays the history, and the SDK runs the workflow code past the activity completion
that no workflow task has processed yet, with the clock of the last one that did (seconds earlier), and keeps that
state for the real task. A command chosen by comparing that clock with a due time differs from the replay's, which
reads the real task's clock: `[TMPRL1100] Nondeterminism error: Timer machine does not handle this event`.
Checks that each wait on their own timer choose no command by the clock, so the history replays."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import yaml
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from abrollout.run.control import StopRequest
from abrollout.spec.loader import check_raw
from adapters.local import local_adapters
from client.experiments import start_experiment
from tests.cli.test_validate import ROOT
from tests.support.temporal_env import dev_server
from workers.assembly import build_worker
from workflows.experiment import ExperimentWorkflow

QUEUE = "query-mid-task"
TOOL_TIMEOUT = 6  # the dead worker's allocate-0 is retried this long after it started
STICKY_SECONDS = 15  # a query or task sent to the dead worker's sticky queue moves on after this


def _spec() -> object:
    raw = yaml.safe_load((ROOT / "examples" / "golden" / "guardrail-breach.yaml").read_text())
    raw.update(name="query-mid-task", schedule={"hour_seconds": 1.0})  # a check is far shorter than an hour
    check = check_raw(raw)
    assert check.spec is not None, [str(p) for p in check.problems]
    return check.spec


async def _until(condition: object, what: str, seconds: float = 120) -> None:
    deadline = asyncio.get_running_loop().time() + seconds
    while not await condition():  # type: ignore[operator]
        assert asyncio.get_running_loop().time() < deadline, f"not within {seconds} s: {what}"
        await asyncio.sleep(0.05)


async def test_a_query_answered_by_a_replacement_worker_mid_task_leaves_a_replayable_history(tmp_path: Path) -> None:
    server = dev_server(tmp_path / "temporal.sqlite")
    dying = subprocess.Popen([sys.executable, "-m", "tests.support.sticky_worker", server.address, QUEUE,
                              str(tmp_path / "data"), "allocate-0:after", str(STICKY_SECONDS)],
                             cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        assert dying.stdout is not None and b"worker started" in dying.stdout.readline()
        client = await Client.connect(server.address, data_converter=pydantic_data_converter)
        handle = await start_experiment(client, _spec(), QUEUE, tool_timeout_seconds=TOOL_TIMEOUT)  # type: ignore[arg-type]
        assert await asyncio.to_thread(dying.wait, 120) == -9, "the first worker dies after allocate-0's change"
        # Sent now, the query waits on the dead worker's sticky queue until STICKY_SECONDS after now; allocate-0 is
        # retried TOOL_TIMEOUT seconds after it started, and its workflow task waits STICKY_SECONDS after that. So
        # the replacement answers the query first, from a history that ends with the retried allocate-0.
        query = asyncio.create_task(handle.query(ExperimentWorkflow.report, rpc_timeout=timedelta(seconds=90)))
        async with build_worker(client, local_adapters(tmp_path / "data"), task_queue=QUEUE):
            report = await query

            async def checking() -> bool:
                return any(e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
                           and e.activity_task_scheduled_event_attributes.activity_type.name == "CheckMetrics"
                           for e in (await handle.fetch_history()).events)

            await _until(checking, "the first check after the replacement took over")
            result = await handle.execute_update(ExperimentWorkflow.request_stop, StopRequest(reason="enough"))
        history = await handle.fetch_history()
    finally:
        dying.kill()
        dying.wait()
        server.stop()
    replayed = await Replayer(workflows=[ExperimentWorkflow], data_converter=pydantic_data_converter) \
        .replay_workflow(history, raise_on_replay_failure=False)
    assert replayed.replay_failure is None, replayed.replay_failure
    assert report.allocation.exposure_percent == 100, "the query saw allocate-0 done before any task processed it"
    assert result.decision.state.value in ("rollback", "guardrail_stop")  # stopped, or the breach came first
