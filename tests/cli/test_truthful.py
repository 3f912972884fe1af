"""The CLI says what happened, against a real dev server and worker: `start` answers once the experiment is
registered (or refused, exit 2), `list` shows a workflow that ended without a decision as what it is, every policy
refusal exits 2, and a reader that leaves a pipe early is no error."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

import devserver
from tests.cli.test_against_server import GOLDEN, cli, running_stack, wait_for
from tests.cli.test_validate import ROOT

CONCURRENCY_CLAUSE = "exp_policy.v5#concurrency.1"
NO_DECISION = "no decision"  # the state `list` shows for a workflow that ended before deciding (`list --help`)
STEADY = "truthful-steady"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    with running_stack(tmp_path_factory.mktemp("cli-truthful")) as env:
        yield env


def _spec(env: dict[str, str], source: Path, name: str, **fields: Any) -> str:
    raw: dict[str, Any] = yaml.safe_load(source.read_text())
    raw.update(name=name, **fields)
    path = Path(env["ABROLLOUT_DATA_DIR"]).parent / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return str(path)


def _row(listing: str, workflow_id: str) -> list[str] | None:
    """The `list` row of one workflow split on runs of two spaces (a cell such as `no decision` keeps its space)."""
    for line in listing.splitlines():
        if line.startswith(f"{workflow_id} "):
            return [cell.strip() for cell in line.split("  ") if cell.strip()]
    return None


@pytest.fixture(scope="module")
def steady(stack: dict[str, str]) -> None:
    """A running experiment past its set-up (a report, a receipt trail and a list row to print)."""
    assert cli(stack, "start", _spec(stack, GOLDEN / "steady.yaml", STEADY)).returncode == 0
    wait_for(lambda: "receipts: 5 tool calls" in cli(stack, "status", STEADY).stdout, "the set-up")


@pytest.fixture(scope="module")
def refused(stack: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Two policies experiments with max_concurrent 1: the first takes the slot, the second is refused at
    registration; the result of starting the second, once its workflow has failed."""
    policies = ROOT / "examples" / "policies-refund-auto-approve.yaml"
    first = cli(stack, "start", _spec(stack, policies, "slot-taken", max_concurrent=1))
    assert first.returncode == 0, first.stderr
    assert "started exp-slot-taken" in first.stdout
    second = cli(stack, "start", _spec(stack, policies, "slot-refused", max_concurrent=1))
    wait_for(lambda: "failed" in (_row(cli(stack, "list").stdout, "exp-slot-refused") or []), "the refusal")
    return second


def test_start_refused_by_max_concurrent_exits_2_with_the_clause(refused: subprocess.CompletedProcess[str]) -> None:
    assert refused.returncode == 2, refused.stderr
    assert "started" not in refused.stdout
    assert "refused: exp-slot-refused was not started: 1 policies experiments are running and max_concurrent is " \
           f"1 [{CONCURRENCY_CLAUSE}]" in refused.stderr


def test_a_refused_experiment_leaves_nothing_running(stack: dict[str, str],
                                                    refused: subprocess.CompletedProcess[str]) -> None:
    row = _row(cli(stack, "list", "--domain", "policies").stdout, "exp-slot-refused")
    assert row is not None and row[1:3] == [NO_DECISION, "failed"], row
    running = cli(stack, "list", "--state", "running", "--domain", "policies").stdout
    assert _row(running, "exp-slot-taken") is not None and _row(running, "exp-slot-refused") is None, running


@pytest.mark.parametrize("command", ["status", "report", "watch", "history"])
def test_every_look_at_a_refused_experiment_exits_2_with_the_clause(stack: dict[str, str], command: str,
                                                                    refused: subprocess.CompletedProcess[str]) -> None:
    shown = cli(stack, command, "slot-refused")
    assert shown.returncode == 2, shown.stderr
    assert "refused: exp-slot-refused ended without a decision: 1 policies experiments are running and " \
           f"max_concurrent is 1 [{CONCURRENCY_CLAUSE}]" in shown.stderr


def test_a_terminated_experiment_is_listed_as_ended_without_a_decision(stack: dict[str, str]) -> None:
    started = cli(stack, "start", _spec(stack, GOLDEN / "steady.yaml", "terminated-by-hand"))
    assert started.returncode == 0, started.stderr
    subprocess.run([str(devserver.TEMPORAL), "workflow", "terminate", "--address", stack["TEMPORAL_ADDRESS"],
                    "--workflow-id", "exp-terminated-by-hand", "--reason", "by hand"], capture_output=True,
                   timeout=60, check=True)

    row = _row(cli(stack, "list").stdout, "exp-terminated-by-hand")
    assert row is not None and row[1:3] == [NO_DECISION, "terminated"], row
    assert _row(cli(stack, "list", "--state", "running").stdout, "exp-terminated-by-hand") is None
    status = cli(stack, "status", "terminated-by-hand")
    assert status.returncode == 1 and "terminated (by hand)" in status.stderr, status.stderr


def test_start_without_a_worker_says_so_and_exits_1_within_its_bound(stack: dict[str, str]) -> None:
    """Nobody polls the task queue: a bounded wait (tool timeout + 30 s), the reason, and the queued experiment
    left to a worker that may come."""
    spec = _spec(stack, GOLDEN / "steady.yaml", "no-worker")
    started = cli(stack, "start", spec, "--task-queue", "nobody-polls", "--tool-timeout", "1")
    assert started.returncode == 1, started.stderr
    assert "started" not in started.stdout
    assert "warning: no worker polls task queue 'nobody-polls'" in started.stderr
    assert "exp-no-worker is not registered after 31 s: no worker polls task queue 'nobody-polls'" in started.stderr
    assert "stays queued" in started.stderr and "Traceback" not in started.stderr
    assert _row(cli(stack, "list", "--state", "running").stdout, "exp-no-worker") is not None, "queued for a worker"


@pytest.mark.usefixtures("steady")
@pytest.mark.parametrize("unbuffered", [True, False], ids=["unbuffered", "buffered"])
@pytest.mark.parametrize("args", [("report", STEADY, "--json"), ("history", STEADY), ("list",)], ids=lambda a: a[0])
def test_a_reader_that_leaves_the_pipe_is_no_error(stack: dict[str, str], args: tuple[str, ...],
                                                   unbuffered: bool) -> None:
    """`starter.py report ID --json | head -1` at its earliest: the reader closes the pipe before the first line.
    The starter exits 0 and says nothing, whether Python writes each line (PYTHONUNBUFFERED) or at exit."""
    env = {key: value for key, value in stack.items() if key != "PYTHONUNBUFFERED"}
    if unbuffered:
        env["PYTHONUNBUFFERED"] = "1"
    starter = subprocess.Popen([sys.executable, str(ROOT / "starter.py"), *args], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, cwd=ROOT, env=env)
    assert starter.stdout is not None and starter.stderr is not None
    starter.stdout.close()
    stderr = starter.stderr.read()
    assert starter.wait(timeout=120) == 0, stderr
    assert stderr == b""
