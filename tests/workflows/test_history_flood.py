"""Junk signals against a real server's history limits, and signals sent the way people send them (`temporal workflow
signal`, as the Temporal UI's Signal dialog does).

Every signal is written to history before the workflow sees it, dropped or not: 28 junk signals of 1.9 MB once grew
an experiment's history to the server's 50 MB limit, and the server terminated it with its flag at 100% exposure
(no workflow code runs then). This dev server's limits are lowered so that the same flood reaches them in seconds:
the experiment must continue as new each time Temporal suggests it, never be terminated, and still stop on request.

The flood is sent one signal after another, each once the workflow has handled the one before. Against a sender
faster than the workflow's tasks the outcome is a race the workflow cannot win for sure: the server refuses a
continue-as-new while a signal arrives (UnhandledCommand), force-closes a task once over 2 MiB of signals wait for it,
and holds a run continued within a second of its start for about a second before its first task.
Experiments run on a real-time clock (golden steady: a check every real hour), so nothing scheduled happens during a
test: every check in these histories was caused by a signal."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.enums.v1 import EventType
from temporalio.api.workflowservice.v1 import GetWorkflowExecutionHistoryReverseRequest
from temporalio.client import Client, WorkflowExecutionDescription, WorkflowHistory
from temporalio.client import WorkflowExecutionStatus as Status
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.service import RPCError

from abrollout.contracts.records import DecisionState
from abrollout.plan.planner import flag_key
from abrollout.run.control import StopRequest
from adapters.local import local_adapters
from adapters.protocols import Adapters
from client.experiments import ExperimentHandle, start_experiment
from devserver import TEMPORAL, DevServer
from tests.support.temporal_env import dev_server
from tests.workflows.conftest import golden_spec
from tests.workflows.test_hostile_messages import _json, _signal
from tests.workflows.test_replay_after_query import _until
from workers.assembly import build_worker
from workflows.experiment import ExperimentWorkflow

MiB = 1024 * 1024
ERROR_LIMIT = 12 * MiB
DEFAULT_SUGGEST_AT = 4 * MiB  # Temporal's own
SUGGEST_AT = 3 * MiB  # below the default, so a suggestion under 4 MiB shows this value took effect
LIMITS = {"limit.historySize.error": ERROR_LIMIT, "limit.historySize.warn": 8 * MiB,
          "limit.historySize.suggestContinueAsNew": SUGGEST_AT}
JUNK = _json({"reason": 5, "junk": "x" * 1_900_000})  # unreadable by `stop`; under the 2 MiB limit on one payload
FLOOD = 28
FLOOD_NAMES = ("stop", "drop-everything")  # a signal that drops the payload, and one that does not exist
UNHANDLED = (EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED, EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED)


@dataclass
class Stack:
    client: Client
    adapters: Adapters
    queue: str
    address: str


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevServer]:
    tmp = tmp_path_factory.mktemp("history-flood")
    running = dev_server(tmp / "temporal.sqlite", log_file=tmp / "temporal.log", dynamic_config=LIMITS)
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
async def stack(server: DevServer, tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Stack]:
    """A worker of the test's own, on its own task queue, over fresh embedded adapters."""
    client = await Client.connect(server.address, data_converter=pydantic_data_converter)
    adapters = local_adapters(tmp_path / "data")
    queue = request.node.name[:60]
    async with build_worker(client, adapters, task_queue=queue):
        yield Stack(client, adapters, queue, server.address)


@dataclass
class Run:
    description: WorkflowExecutionDescription
    history: WorkflowHistory

    @property
    def size(self) -> int:
        return self.description.raw_description.workflow_execution_info.history_size_bytes

    def events(self, event_type: EventType.ValueType) -> int:
        return sum(e.event_type == event_type for e in self.history.events)

    def first_suggestion(self) -> int | None:
        """The history size at which Temporal first suggested continuing as new, if it did."""
        return next((e.workflow_task_started_event_attributes.history_size_bytes for e in self.history.events
                     if e.workflow_task_started_event_attributes.suggest_continue_as_new), None)


async def _runs(client: Client, workflow_id: str) -> list[Run]:
    """Every run of the workflow, first to last, following continue-as-new back from the latest."""
    runs: list[Run] = []
    run_id: str | None = None
    while run_id != "":
        handle = client.get_workflow_handle(workflow_id, run_id=run_id)
        runs.insert(0, Run(await handle.describe(), await handle.fetch_history()))
        run_id = runs[0].history.events[0].workflow_execution_started_event_attributes.continued_execution_run_id
    return runs


async def _receipt(handle: ExperimentHandle, step: str) -> None:
    async def recorded() -> bool:
        return any(r.step == step for r in await handle.query(ExperimentWorkflow.receipts))

    await _until(recorded, f"receipt {step}", 60)


async def _handled(client: Client, workflow_id: str) -> None:
    """Until the latest run has handled every signal sent so far and has no workflow task to do. A run continued
    as new less than a second after it started waits out a backoff before its first task (the server's
    `history.workflowIdReuseMinimalInterval`): until then its history ends with its start or a signal."""
    async def idle() -> bool:
        description = await client.get_workflow_handle(workflow_id).describe()
        size = description.raw_description.workflow_execution_info.history_size_bytes
        assert description.status is not Status.TERMINATED, f"the server terminated the run at {size / MiB:.1f} MiB"
        if description.status is not Status.RUNNING or description.raw_description.HasField("pending_workflow_task"):
            return False
        latest = await client.workflow_service.get_workflow_execution_history_reverse(
            GetWorkflowExecutionHistoryReverseRequest(
                namespace=client.namespace, maximum_page_size=1,
                execution=WorkflowExecution(workflow_id=workflow_id, run_id=description.run_id)))
        return latest.history.events[-1].event_type not in UNHANDLED

    await _until(idle, "the signals handled", 60)


def _sent(run: Run) -> list[tuple[str, list[bytes]]]:
    """Each signal in the run: its name and the encoding of each payload."""
    signals = [e.workflow_execution_signaled_event_attributes for e in run.history.events
               if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED]
    return [(s.signal_name, [p.metadata["encoding"] for p in s.input.payloads]) for s in signals]


def _failed_tasks(runs: list[Run]) -> int:
    return sum(r.events(EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED) for r in runs)


def _checks(runs: list[Run]) -> list[str]:
    """The summary of every CheckMetrics activity in these runs ("<step>: CheckMetrics")."""
    return [json.loads(e.user_metadata.summary.data) for r in runs for e in r.history.events
            if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
            and e.activity_task_scheduled_event_attributes.activity_type.name == "CheckMetrics"]


async def _stopped_at_control(stack: Stack, name: str) -> None:
    flag = await stack.adapters.flags.read(flag_key(name))
    assert flag is not None and [v.name for s in flag.strategies for v in s.variants] == ["control"]
    assert name not in [e.exp_key for e in await stack.adapters.registry.open_experiments()]


async def test_the_lowered_history_limit_terminates_a_run_that_never_continues_as_new(server: DevServer) -> None:
    """The control: an experiment no worker runs (its worker down) grows with every signal until the server
    terminates it, at this server's 12 MiB rather than Temporal's 50 MiB."""
    client = await Client.connect(server.address, data_converter=pydantic_data_converter)
    handle = await start_experiment(client, golden_spec("steady", name="unrun"), "no-worker-polls-this")
    sent = 0
    with pytest.raises(RPCError, match="history size exceeds limit"):  # the signal after the limit is refused
        for sent in range(1, FLOOD + 1):
            await _signal(client, handle.id, FLOOD_NAMES[sent % 2], [JUNK])
    (run,) = await _runs(client, handle.id)
    signalled = run.events(EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED)
    assert signalled == ERROR_LIMIT // len(JUNK.data) + 1, "the signal that took it over the limit was written"
    assert run.size > ERROR_LIMIT and run.description.status is Status.TERMINATED
    assert sent == signalled + 1, "the next one was refused, and the run terminated"


async def test_a_flood_of_junk_signals_continues_as_new_instead_of_reaching_the_history_limit(stack: Stack) -> None:
    handle = await start_experiment(stack.client, golden_spec("steady", name="flood"), stack.queue)
    await _receipt(handle, "snapshot-start")
    first_run = (await handle.describe()).run_id
    began = time.monotonic()
    for n in range(FLOOD):
        await _signal(stack.client, handle.id, FLOOD_NAMES[n % 2], [JUNK])
        await _handled(stack.client, handle.id)
    flood_seconds = time.monotonic() - began
    runs = await _runs(stack.client, handle.id)
    print(f"\nflood: {FLOOD} signals of {len(JUNK.data) / 1e6:.1f} MB ({FLOOD * len(JUNK.data) / MiB:.0f} MiB) in "
          f"{flood_seconds:.1f} s; {len(runs)} runs ({len(runs) - 1} continued as new), largest history "
          f"{max(r.size for r in runs) / MiB:.2f} MiB (limit {ERROR_LIMIT / MiB:.0f} MiB), "
          f"{sum(len(r.history.events) for r in runs)} events")

    assert runs[0].description.run_id == first_run
    assert runs[0].description.status is Status.CONTINUED_AS_NEW
    assert runs[-1].description.run_id != first_run and runs[-1].description.status is Status.RUNNING
    suggested = runs[0].first_suggestion()
    assert suggested is not None and SUGGEST_AT <= suggested < DEFAULT_SUGGEST_AT, "the lowered suggestion applies"
    assert not any(r.description.status is Status.TERMINATED for r in runs)
    assert all(r.size < ERROR_LIMIT for r in runs)
    assert sum(r.events(EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED) for r in runs) == FLOOD
    assert _failed_tasks(runs) == 0
    assert _checks(runs) == [], "junk decided nothing and ran no check"

    report = await handle.execute_update(ExperimentWorkflow.request_stop, StopRequest(reason="flood over"))
    assert report.decision.state is DecisionState.rollback
    await handle.result()
    await _stopped_at_control(stack, "flood")


async def _temporal_signal(stack: Stack, workflow_id: str, name: str, *flags: str) -> None:
    process = await asyncio.create_subprocess_exec(
        str(TEMPORAL), "workflow", "signal", "--address", stack.address, "--workflow-id", workflow_id,
        "--name", name, *flags, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    output, _ = await process.communicate()
    assert process.returncode == 0, output.decode()


async def test_signals_from_the_temporal_cli_are_read_or_dropped_and_an_empty_stop_stops(stack: Stack) -> None:
    handle = await start_experiment(stack.client, golden_spec("steady", name="cli-signals"), stack.queue)
    await _receipt(handle, "snapshot-start")
    reasons = [json.dumps({"reason": "first"}), json.dumps({"reason": "second"})]
    await _temporal_signal(stack, handle.id, "promote", "--input-meta", "encoding=binary/null", "--input", "")
    await _temporal_signal(stack, handle.id, "stop", "--input", reasons[0], "--input", reasons[1])
    await _temporal_signal(stack, handle.id, "Stop")
    await _temporal_signal(stack, handle.id, "alert")
    await _receipt(handle, "check-alert-0")
    await _temporal_signal(stack, handle.id, "stop")  # the Temporal UI's Signal dialog, box left empty

    report = await handle.result()
    assert report.decision.state is DecisionState.rollback
    assert report.decision.rationale == "manual stop: no reason given"
    runs = await _runs(stack.client, handle.id)
    assert len(runs) == 1
    assert _sent(runs[0]) == [("promote", [b"binary/null"]), ("stop", [b"json/plain", b"json/plain"]), ("Stop", []),
                              ("alert", []), ("stop", [])], "what the CLI sends: one null, two inputs, none"
    assert _failed_tasks(runs) == 0
    assert _checks(runs) == ["check-alert-0: CheckMetrics"], "the alert ran one check; nothing else did"
    await _stopped_at_control(stack, "cli-signals")
