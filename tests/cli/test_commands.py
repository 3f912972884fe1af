"""The starter's Temporal commands called in-process (`cli.main.main`, as `starter.py` does) against a real dev
server and a real worker over the embedded adapters: what a person sees (stdout, stderr, exit code) and what
reached Temporal. This file holds the harness and what every command shares (an unknown experiment, an unreachable
server, bad input); test_commands_{start,control,inspect}.py hold each command's own cases.

Why a dev server and not the time-skipping one: that one implements neither DescribeTaskQueue (`start` asks
whether a worker polls) nor ListWorkflowExecutions (`list`). Experiments here run in real time and do nothing
for an hour after their set-up, so a test sees exactly the commands it sent."""

from __future__ import annotations

import asyncio
import io
import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, redirect_stderr, redirect_stdout
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
import yaml
from structlog.testing import capture_logs
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.service import RPCError, RPCStatusCode

import devserver
from adapters.local import local_adapters
from adapters.protocols import Adapters
from cli.main import main
from client.exits import BAD_INPUT, RUNTIME_FAILURE
from client.experiments import ExperimentHandle
from tests.support.temporal_env import dev_server
from workers.assembly import build_worker
from workflows.experiment import ExperimentWorkflow, workflow_id

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "examples" / "golden"
STEADY = GOLDEN / "steady.yaml"
UI = "http://ui.test"
SETUP_RECEIPTS = 5  # register, flag, run, allocate-0, snapshot-start
_queues = itertools.count()


@dataclass(frozen=True)
class Shown:
    """What a person sees after one command."""

    code: int
    out: str
    err: str


async def starter(*argv: str) -> Shown:
    """`python starter.py ARGV` in-process: main() runs its own event loop (asyncio.run), so it runs in a thread
    while this test's loop keeps the worker going; one command at a time, as sys.stdout is the process's.
    argparse's refusals are SystemExit, as in the process."""
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        try:
            code = await asyncio.to_thread(main, list(argv))
        except SystemExit as exc:
            code = int(exc.code or 0)
    return Shown(code, out.getvalue(), err.getvalue())


@dataclass
class Lab:
    """A dev server and a worker on it over embedded adapters, shared by a module's tests, the tests' own client to
    see what reached Temporal, and the CLI pointed at both."""

    client: Client
    address: str
    task_queue: str
    adapters: Adapters
    data_dir: Path

    async def starter(self, *argv: str) -> Shown:
        return await starter(*argv, "--address", self.address, "--task-queue", self.task_queue)

    @asynccontextmanager
    async def alone(self, data_dir: Path) -> AsyncIterator[Lab]:
        """The same server and CLI with a worker of its own over fresh adapters, stopped when the block ends: its
        own registry (nobody else's experiments count against a max_concurrent)."""
        adapters = local_adapters(data_dir)
        queue = f"cli-alone-{next(_queues)}"
        async with build_worker(self.client, adapters, task_queue=queue):
            await polled(self.client, queue)
            yield replace(self, task_queue=queue, adapters=adapters, data_dir=data_dir)

    def spec(self, source: Path, name: str, **fields: Any) -> str:
        """A copy of a spec file under another name (and other fields): experiment names are workflow ids, never
        reused on one server."""
        raw: dict[str, Any] = yaml.safe_load(source.read_text())
        raw.update(name=name, **fields)
        path = self.data_dir.parent / f"{name}.yaml"
        path.write_text(yaml.safe_dump(raw, sort_keys=False))
        return str(path)

    def handle(self, name: str) -> ExperimentHandle:
        return self.client.get_workflow_handle_for(ExperimentWorkflow.run, workflow_id(name))

    async def started(self, name: str, source: Path = STEADY, **fields: Any) -> ExperimentHandle:
        """An experiment started with `start` and past its set-up."""
        shown = await self.starter("start", self.spec(source, name, **fields))
        assert shown.code == 0, shown.err
        return await self.settled(name)

    async def settled(self, name: str) -> ExperimentHandle:
        """The experiment once it has started, finished its set-up and has nothing outstanding: its history then
        stays as it is until its first hourly check, so a test can compare it before and after a command."""
        handle = self.handle(name)
        for _ in range(400):
            try:
                raw = (await handle.describe()).raw_description
            except RPCError as exc:
                if exc.status != RPCStatusCode.NOT_FOUND:
                    raise
            else:
                if not raw.pending_activities and not raw.HasField("pending_workflow_task") and \
                        len((await handle.query(ExperimentWorkflow.report)).receipts) >= SETUP_RECEIPTS:
                    return handle
            await asyncio.sleep(0.05)
        raise AssertionError(f"{handle.id} did not finish its set-up within 20 s")

    async def checked(self, name: str) -> None:
        """Wait until the experiment has run a guardrail check (as an alert asks it to)."""
        handle = self.handle(name)
        for _ in range(200):
            if any(r.tool == "CheckMetrics" for r in (await handle.query(ExperimentWorkflow.report)).receipts):
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"{handle.id} ran no guardrail check within 10 s")

    async def events(self, name: str) -> int:
        return len((await self.handle(name).fetch_history()).events)


async def polled(client: Client, task_queue: str) -> None:
    """Wait until the server has seen a worker poll the queue: until then `start` warns that no worker polls it
    (tests/cli/test_truthful.py covers that case), true of a worker that has only just started too."""
    request = DescribeTaskQueueRequest(namespace="default", task_queue=TaskQueue(name=task_queue))
    for _ in range(200):
        if (await client.workflow_service.describe_task_queue(request)).pollers:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"no worker polled {task_queue} within 10 s")


@pytest.fixture(name="lab", scope="module")
async def lab_fixture(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Lab]:
    """One dev server and one worker per test module, both stopped at its end (the server by its pid); the replay
    guard reads the server's histories when the session ends. The environment is the settings' defaults except a
    UI address to find in the links; the worker's tool log lines are kept out of the CLI's stdout (in a process of
    its own they would be)."""
    tmp = tmp_path_factory.mktemp("cli-commands")
    running = dev_server(tmp / "temporal.sqlite", log_file=tmp / "temporal.log")
    try:
        client = await Client.connect(running.address, data_converter=pydantic_data_converter)
        adapters = local_adapters(tmp / "data")
        queue = f"cli-{next(_queues)}"
        with pytest.MonkeyPatch.context() as env, capture_logs():
            for name in ("TEMPORAL_ADDRESS", "TEMPORAL_NAMESPACE", "ABROLLOUT_TASK_QUEUE", "ABROLLOUT_DATA_DIR"):
                env.delenv(name, raising=False)
            env.setenv("TEMPORAL_UI_URL", UI)
            async with build_worker(client, adapters, task_queue=queue):
                await polled(client, queue)
                yield Lab(client, running.address, queue, adapters, tmp / "data")
    finally:
        running.stop()


def no_experiment(name: str) -> str:
    return f"error: no experiment exp-{name}; fix: check the name with `starter.py list`\n"


async def absent(lab: Lab, name: str) -> bool:
    try:
        await lab.handle(name).describe()
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return True
        raise
    return False


ID_COMMANDS = {
    "status": (), "report": (), "watch": (), "history": (), "alert": (),
    "stop": ("--reason", "not needed"), "promote": ("--variant", "treatment"), "allocate": ("--ramp-step", "1"),
}


@pytest.mark.parametrize("command", ID_COMMANDS)
@pytest.mark.parametrize("given", ["nope", "exp-nope"], ids=["bare name", "workflow id"])
async def test_an_unknown_experiment_exits_2_naming_it_and_starts_nothing(lab: Lab, command: str, given: str) -> None:
    shown = await lab.starter(command, given, *ID_COMMANDS[command])
    assert (shown.code, shown.out, shown.err) == (BAD_INPUT, "", no_experiment("nope"))
    assert await absent(lab, "nope")


@pytest.fixture
def closed_port() -> str:
    """A loopback address where nothing listens."""
    return f"127.0.0.1:{devserver.free_port()}"


UNREACHABLE_COMMANDS = [("start", str(STEADY)), ("list",),
                        *((name, "any", *rest) for name, rest in ID_COMMANDS.items())]


@pytest.mark.parametrize("argv", UNREACHABLE_COMMANDS, ids=[argv[0] for argv in UNREACHABLE_COMMANDS])
async def test_an_unreachable_server_is_one_line_and_exit_1(closed_port: str, argv: tuple[str, ...]) -> None:
    shown = await starter(*argv, "--address", closed_port)
    assert (shown.code, shown.out) == (RUNTIME_FAILURE, "")
    assert shown.err == (f"error: cannot reach Temporal at {closed_port} (Connection refused); start a local server "
                         "with `make server` or set TEMPORAL_ADDRESS\n")


BAD_FLAGS = {
    "a required flag left out": ("stop", (), "the following arguments are required: --reason"),
    "a number that is not one": ("allocate", ("--ramp-step", "next"), "argument --ramp-step: invalid int value"),
    "a flag that does not exist": ("promote", ("--variant", "treatment", "--now"), "unrecognized arguments: --now"),
    "a split it cannot read": ("allocate", ("--split", "control:70"),
                               "error: --split 'control:70'; fix: write it as control=50,treatment=50"),
}


@pytest.fixture(scope="module")
async def running(lab: Lab) -> str:
    """A running experiment past its set-up, which the tests given it must leave as it is."""
    await lab.started("left-alone")
    return "left-alone"


@pytest.mark.parametrize("case", BAD_FLAGS)
async def test_bad_flags_exit_2_naming_the_flag_and_send_nothing(lab: Lab, running: str, case: str) -> None:
    """Checked before anything is asked of the experiment: its history stays as it was."""
    command, flags, said = BAD_FLAGS[case]
    before = await lab.events(running)
    shown = await lab.starter(command, running, *flags)
    assert (shown.code, shown.out) == (BAD_INPUT, ""), shown.err
    assert said in shown.err and "Traceback" not in shown.err
    assert await lab.events(running) == before


@pytest.mark.parametrize("argv", [("list",), ("start", str(STEADY))], ids=["list", "start"])
async def test_a_namespace_the_server_lacks_is_its_answer_and_exit_1(lab: Lab, argv: tuple[str, ...]) -> None:
    shown = await lab.starter(*argv, "--namespace", "no-such-namespace")
    assert (shown.code, shown.out) == (RUNTIME_FAILURE, "")
    assert shown.err == f"error: Temporal at {lab.address} answered NOT_FOUND: Namespace no-such-namespace is not " \
                        "found.\n"


async def test_a_namespace_the_server_lacks_is_named_by_commands_on_one_experiment(lab: Lab, running: str) -> None:
    shown = await lab.starter("status", running, "--namespace", "no-such-namespace")
    assert shown.code == RUNTIME_FAILURE
    assert "Namespace no-such-namespace is not found" in shown.err and "no experiment" not in shown.err
