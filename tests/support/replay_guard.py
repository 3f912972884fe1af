"""The suite-wide replay guard: every workflow history the test suite produces is replayed against the current code
when the session ends, and one nondeterministic history fails the run.

Time-skipping servers keep histories in memory, so theirs are saved when the environment shuts down (tests/
temporal_env.py); dev servers keep them in their SQLite file, which is reopened at the end and read whole (every
run, continued-as-new ones included). A test that breaks a workflow on purpose names it in `exempt`.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from temporalio.client import Client, WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.service import RPCError
from temporalio.worker import Replayer

import devserver
from workers.assembly import WORKFLOWS

_saved = Path(tempfile.mkdtemp(prefix="abrollout-histories-"))
_databases: list[Path] = []
_exempt: dict[str, str] = {}


def exempt(workflow_id: str, why: str) -> None:
    """Leave a history out of the guard: a test made it nondeterministic on purpose (a broken deploy)."""
    _exempt[workflow_id] = why


def dev_server_database(db_file: Path) -> None:
    """Replay everything in this dev server's SQLite file at the end of the session."""
    if db_file not in _databases:
        _databases.append(db_file)


async def save(client: Client, workflow_ids: Iterable[str]) -> None:
    """Save each workflow's runs, latest first, following continue-as-new back to the first."""
    for workflow_id in dict.fromkeys(workflow_ids):
        run_id: str | None = None
        while True:
            try:
                history = await client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()
            except RPCError:
                break  # gone, e.g. a run of an environment already shut down
            _write(history)
            started = history.events[0].workflow_execution_started_event_attributes
            run_id = started.continued_execution_run_id or None
            if run_id is None:
                break


def _write(history: WorkflowHistory) -> None:
    path = _saved / f"{len(list(_saved.iterdir())):05d}.json"
    path.write_text(json.dumps({"workflow_id": history.workflow_id, "history": history.to_json_dict()}))


def _read(path: Path) -> WorkflowHistory:
    saved = json.loads(path.read_text())
    return WorkflowHistory.from_json(saved["workflow_id"], saved["history"])


@dataclass
class Outcome:
    replayed: int = 0
    servers: int = 0
    exempted: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def line(self) -> str:
        return (f"replay guard: {self.replayed} workflow histories produced by this run (from {self.servers} dev "
                f"servers and the time-skipping ones) replayed against the current code; "
                f"{len(self.failures)} nondeterministic"
                + (f"; {len(self.exempted)} left out on purpose ({', '.join(sorted(set(self.exempted)))})"
                   if self.exempted else ""))


async def _replay(histories: Iterable[WorkflowHistory], outcome: Outcome) -> None:
    replayer = Replayer(workflows=WORKFLOWS, data_converter=pydantic_data_converter)
    for history in histories:
        if history.workflow_id in _exempt:
            outcome.exempted.append(history.workflow_id)
            continue
        result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
        outcome.replayed += 1
        if result.replay_failure is not None:
            outcome.failures.append(f"{history.workflow_id}: {str(result.replay_failure)[:400]}")


async def _from_database(db_file: Path, outcome: Outcome) -> None:
    server = devserver.start(db_file, devserver.free_port(), None)
    try:
        client = await _connect(server.address)
        histories = [await client.get_workflow_handle(wf.id, run_id=wf.run_id).fetch_history()
                     async for wf in client.list_workflows()]
        await _replay(histories, outcome)
        outcome.servers += 1
    except (RPCError, RuntimeError) as exc:  # the guard could not do its check: that fails the run too
        outcome.failures.append(f"{db_file}: not replayed ({' '.join(str(exc).split())[:300]})")
    finally:
        server.stop()


async def _connect(address: str, seconds: float = 60) -> Client:
    """A client once the frontend is healthy: it accepts connections a moment before it answers."""
    deadline = asyncio.get_running_loop().time() + seconds
    while True:
        try:
            return await Client.connect(address, data_converter=pydantic_data_converter)
        except RuntimeError:
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.2)


async def _replay_all() -> Outcome:
    outcome = Outcome()
    await _replay((_read(path) for path in sorted(_saved.iterdir())), outcome)
    for db_file in _databases:
        if db_file.exists():
            await _from_database(db_file, outcome)
    return outcome


def replay_all() -> Outcome:
    try:
        return asyncio.run(_replay_all())
    finally:
        shutil.rmtree(_saved, ignore_errors=True)
