"""The CLI as a person uses it, against a real `temporal server start-dev` and a real worker process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

import devserver
from tests.cli.test_validate import ROOT, run_cli
from tests.support.temporal_env import dev_server

GOLDEN = ROOT / "examples" / "golden"


@contextmanager
def running_stack(tmp: Path) -> Iterator[dict[str, str]]:
    """A dev server on free loopback ports and a worker.py process, both stopped by pid afterwards; yields the
    environment that points starter.py at them."""
    server = dev_server(tmp / "temporal.sqlite", log_file=tmp / "temporal.log")
    env = {**os.environ, "TEMPORAL_ADDRESS": server.address, "ABROLLOUT_DATA_DIR": str(tmp / "data"),
           "ABROLLOUT_TASK_QUEUE": "cli-test", "ABROLLOUT_METRICS": f"127.0.0.1:{devserver.free_port()}"}
    with open(tmp / "worker.log", "wb") as log:
        worker = subprocess.Popen([sys.executable, str(ROOT / "worker.py")], env=env, stdout=log, stderr=log,
                                  cwd=ROOT)
    try:
        wait_for(lambda: b"worker started" in (tmp / "worker.log").read_bytes(), "the worker to start")
        yield env
    finally:
        try:
            devserver.stop_process(worker, grace_seconds=20)
        finally:
            server.stop()
    assert b"worker stopped" in (tmp / "worker.log").read_bytes(), "SIGTERM must stop the worker gracefully"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    with running_stack(tmp_path_factory.mktemp("cli-server")) as env:
        yield env


def wait_for(condition: object, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(ROOT / "starter.py"), *args], capture_output=True, text=True,
                          cwd=ROOT, env=env, timeout=120)


def _events(env: dict[str, str], workflow_id: str) -> int:
    out = subprocess.run([str(devserver.TEMPORAL), "workflow", "show", "--address", env["TEMPORAL_ADDRESS"],
                          "--workflow-id", workflow_id, "--output", "json"], capture_output=True, text=True,
                         timeout=60, check=True).stdout
    return len(json.loads(out)["events"])


def test_start_status_stop_report(stack: dict[str, str]) -> None:
    started = cli(stack, "start", str(GOLDEN / "steady.yaml"))
    assert started.returncode == 0, started.stderr
    assert "started exp-golden-steady" in started.stdout and "/workflows/exp-golden-steady/" in started.stdout
    assert "registered as EXP-" in started.stdout, "start answers once the registry has registered it"
    wait_for(lambda: "receipts: 5 tool calls" in cli(stack, "status", "golden-steady").stdout, "the set-up")
    status = cli(stack, "status", "exp-golden-steady")
    assert status.returncode == 0 and "golden-steady: running" in status.stdout
    stopped = cli(stack, "stop", "golden-steady", "--reason", "CLI test")
    assert stopped.returncode == 0, stopped.stderr
    assert "rollback" in stopped.stdout and "manual stop: CLI test" in stopped.stdout
    report = json.loads(cli(stack, "report", "golden-steady", "--json").stdout)
    assert report["decision"]["state"] == "rollback"
    assert [r["step"] for r in report["receipts"]][-3:] == ["stop", "rollback", "snapshot-final"]
    history = cli(stack, "history", "golden-steady").stdout.splitlines()
    assert history[0].startswith("#") and "RegisterExperiment" in history[0]
    listed = cli(stack, "list", "--state", "rollback").stdout
    assert "exp-golden-steady" in listed
    again = cli(stack, "stop", "golden-steady", "--reason", "twice")
    assert again.returncode == 2 and "refused" in again.stderr


def test_a_bad_spec_exits_2_and_starts_nothing(stack: dict[str, str]) -> None:
    bad = cli(stack, "start", str(ROOT / "tests" / "bad_specs" / "split-sum.yaml"))
    assert bad.returncode == 2 and "exp_policy.v5#split.1" in bad.stderr and "Traceback" not in bad.stderr
    assert "exp-ui" not in cli(stack, "list").stdout
    missing = cli(stack, "status", "no-such-experiment")
    assert missing.returncode == 2 and "no experiment exp-no-such-experiment" in missing.stderr


def test_a_refused_split_change_exits_2_naming_the_clause_and_writes_nothing(stack: dict[str, str]) -> None:
    spec = ROOT / "examples" / "golden" / "steady.yaml"
    renamed = Path(stack["ABROLLOUT_DATA_DIR"]).parent / "refused.yaml"
    renamed.write_text(spec.read_text().replace("name: golden-steady", "name: cli-refused"))
    assert cli(stack, "start", str(renamed)).returncode == 0
    wait_for(lambda: "receipts: 5 tool calls" in cli(stack, "status", "cli-refused").stdout, "the set-up")
    before = _events(stack, "exp-cli-refused")
    refused = cli(stack, "allocate", "cli-refused", "--split", "control=70,treatment=30")
    assert refused.returncode == 2
    assert "exp_policy.v5#prereg.2" in refused.stderr
    assert _events(stack, "exp-cli-refused") == before, "a rejected update must leave no trace in the history"
    stopped = cli(stack, "stop", "cli-refused", "--reason", "done")
    assert stopped.returncode == 0, stopped.stderr


def test_an_unreachable_server_is_one_line_and_exit_1() -> None:
    env = {**os.environ, "TEMPORAL_ADDRESS": f"127.0.0.1:{devserver.free_port()}"}
    result = cli(env, "status", "anything")
    assert result.returncode == 1
    assert "cannot reach Temporal at 127.0.0.1" in result.stderr and "make server" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_run_cli_helper_is_shared() -> None:
    assert run_cli("--help").returncode == 0


def test_the_worker_exports_the_sdk_metrics_to_prometheus(stack: dict[str, str]) -> None:
    body = httpx.get(f"http://{stack['ABROLLOUT_METRICS']}/metrics", timeout=10).text
    assert "temporal_" in body and "task_queue=\"cli-test\"" in body
