"""The golden scenarios end to end on real systems: a Temporal dev server, a worker.py process whose adapters are
Unleash (flags), PostgreSQL (warehouse, its checks read from the rollup, and registry) and Prometheus (operational
guardrails), with the traffic simulator writing into PostgreSQL and Prometheus. Plus the crash test: a worker
killed right after Unleash applied AllocateTraffic, and a new worker finishing the experiment with one strategy
change for that key."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.workflow import NondeterminismError

import devserver
from abrollout.run.safety_net import SweepInput
from abrollout.spec.loader import check_raw
from adapters.config import build_adapters, load_config, load_secrets
from client.experiments import start_experiment
from client.safety_net import sweep_once
from tests.cli.test_validate import ROOT
from tests.support import replay_guard
from tests.support.servers.postgres import Postgres
from tests.support.servers.prometheus import Prometheus
from tests.support.servers.unleash import Unleash
from tests.support.temporal_env import dev_server
from tests.workflows.test_safety_net import _failing_for, _status_is, _until, broken_worker
from workers.assembly import build_worker

GOLDEN = ROOT / "examples" / "golden"
HOUR_SECONDS = 0.25
DSN_PASSWORD = "pg-sekret-5e3f9a"
LATENCY_QUERY = 'last_over_time(abrollout_latency_p95{experiment="$experiment"}[$window])'


@dataclass
class RealStack:
    env: dict[str, str]
    tmp: Path
    unleash: Unleash
    postgres: Postgres
    prometheus: Prometheus
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)  # stopped when the module ends

    def cli(self, *args: str, queue: str | None = None) -> subprocess.CompletedProcess[str]:
        env = {**self.env, **({"ABROLLOUT_TASK_QUEUE": queue} if queue else {})}
        return subprocess.run([sys.executable, str(ROOT / "starter.py"), *args], capture_output=True, text=True,
                              cwd=ROOT, env=env, timeout=300)

    def worker(self, name: str, config: Path, queue: str, faults: Path | None = None) -> subprocess.Popen[bytes]:
        """A worker.py process on `config`; given a `faults` file, the same worker with those faults
        (tests/support/faulty_worker.py)."""
        log = self.tmp / f"{name}.log"
        env = {**self.env, "ABROLLOUT_CONFIG": str(config), "ABROLLOUT_TASK_QUEUE": queue}
        command = [sys.executable, str(ROOT / "worker.py")]
        if faults is not None:
            command = [sys.executable, "-m", "tests.support.faulty_worker", "--faults", str(faults)]
        with open(log, "wb") as out:
            process = subprocess.Popen(command, env=env, stdout=out, stderr=out, cwd=ROOT)
        self.workers.append(process)
        deadline = time.monotonic() + 60
        while b"worker started" not in log.read_bytes():
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                pytest.fail(f"worker {name} did not start:\n{log.read_text(errors='replace')[-3000:]}")
            time.sleep(0.2)
        return process

    def spec(self, scenario: str, name: str) -> Path:
        """A golden spec on the accelerated clock; the breach scenario also gets a Prometheus latency guardrail."""
        raw: dict[str, Any] = yaml.safe_load((GOLDEN / f"{scenario}.yaml").read_text())
        raw["name"] = name
        raw["schedule"] = {**raw.get("schedule", {}), "hour_seconds": HOUR_SECONDS}
        if scenario == "guardrail-breach":
            raw["guardrails"].append({"name": "latency_p95", "threshold": 2.5, "direction": "<",
                                      "query": LATENCY_QUERY})
            raw["simulation"]["metrics"]["latency_p95"] = {"mean": 1.9, "sd": 0.2}
        path = self.tmp / f"{name}.yaml"
        path.write_text(yaml.safe_dump(raw, sort_keys=False))
        return path

    def report(self, name: str) -> dict[str, Any]:
        result = self.cli("report", name, "--json")
        assert result.returncode == 0, result.stderr
        body: dict[str, Any] = json.loads(result.stdout)
        return body

    def flag_variants(self, name: str) -> list[str]:
        """The variants the flag serves; none before the experiment created it (`start` returns at registration,
        the flag comes next)."""
        response = httpx.get(f"{self.unleash.url}/api/admin/projects/default/features/abr.{name}",
                             headers={"Authorization": self.unleash.token}, timeout=10)
        if response.status_code == httpx.codes.NOT_FOUND:
            return []
        response.raise_for_status()
        environment = next(e for e in response.json()["environments"] if e["name"] == "development")
        return [v["name"] for s in environment["strategies"] for v in s.get("variants", [])]

    def strategy_events_for(self, name: str, key: str) -> int:
        """Unleash events whose own data carries `key` (the next change carries it only in its preData)."""
        response = httpx.get(f"{self.unleash.url}/api/admin/search/events",
                             params={"feature": f"IS:abr.{name}", "query": key, "limit": "1000"},
                             headers={"Authorization": self.unleash.token}, timeout=10)
        response.raise_for_status()
        events = response.json()["events"]
        return sum(str((e.get("data") or {}).get("title", "")).startswith(f"abrollout {key}: ") for e in events)


def _config(path: Path, unleash: Unleash, prometheus: Prometheus) -> Path:
    path.write_text(f"""
[adapters]
flags = "unleash"
metrics = "postgres"
registry = "postgres"
guardrails = "prometheus"
allow_simulation = true

[unleash]
url = "{unleash.url}"

[postgres]
create_tables = true
rollup = true

[prometheus]
url = "{prometheus.url}"
mirror_metrics = ["latency_p95"]
""")
    return path


@pytest.fixture(scope="module")
def real(postgres: Postgres, unleash: Unleash, prometheus: Prometheus,
         tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealStack]:
    tmp = tmp_path_factory.mktemp("real")
    server = dev_server(tmp / "temporal.sqlite", log_file=tmp / "temporal.log")
    # trust authentication ignores the password, so a recognisable one can ride along to prove it never leaks
    dsn = postgres.create_database("warehouse").replace("postgres@", f"postgres:{DSN_PASSWORD}@")
    env = {**os.environ, "TEMPORAL_ADDRESS": server.address, "UNLEASH_TOKEN": unleash.token,
           "ABROLLOUT_POSTGRES_DSN": dsn, "ABROLLOUT_DATA_DIR": str(tmp / "data"), "ABROLLOUT_METRICS": "off"}
    stack = RealStack(env=env, tmp=tmp, unleash=unleash, postgres=postgres, prometheus=prometheus)
    try:
        stack.worker("worker", _config(tmp / "abrollout.toml", unleash, prometheus), queue="real")
        yield stack
    finally:
        for worker in stack.workers:
            devserver.stop_process(worker, grace_seconds=30)
        server.stop()


def _all_ok(report: dict[str, Any]) -> None:
    assert all(r["ok"] for r in report["receipts"]), [r for r in report["receipts"] if not r["ok"]]


def test_clear_win_promotes_on_unleash_postgres_prometheus(real: RealStack) -> None:
    result = real.cli("start", str(real.spec("clear-win", "real-clear-win")), "--wait", queue="real")
    assert result.returncode == 0, result.stderr
    report = real.report("real-clear-win")
    _all_ok(report)
    assert report["decision"]["state"] == "promote" and report["decision"]["arm"] == "treatment"
    flag_refs = [r["ref"] for r in report["receipts"] if r["tool"] in ("CreateFlag", "AllocateTraffic",
                                                                      "PromoteVariant")]
    assert flag_refs and all(ref.startswith("unleash-event-") for ref in flag_refs)
    assert real.flag_variants("real-clear-win") == ["treatment"]
    exposures = real.postgres.psql("SELECT count(*) FROM exposures WHERE exp_key = 'real-clear-win'", "warehouse")
    assert int(exposures) > 1000, "the simulator writes its traffic into PostgreSQL"
    registered = real.postgres.psql("SELECT count(*) FROM abrollout_experiments WHERE exp_key = 'real-clear-win'",
                                    "warehouse")
    assert int(registered) == 1


def test_guardrail_breach_stops_and_rolls_back_on_real_systems(real: RealStack) -> None:
    result = real.cli("start", str(real.spec("guardrail-breach", "real-breach")), "--wait", queue="real")
    assert result.returncode == 0, result.stderr
    report = real.report("real-breach")
    _all_ok(report)
    assert report["decision"]["state"] == "guardrail_stop"
    last = report["monitoring"]["checkpoints"][-1]
    assert last["breaches"] == ["defect_rate"]
    assert set(last["guardrails"]["latency_p95"]) == {"control", "treatment"}, "observed through Prometheus"
    steps = [r["step"] for r in report["receipts"]]
    assert steps[-4:] == ["stop", "rollback", "ticket", "snapshot-final"]
    final = next(r for r in report["receipts"] if r["step"] == "snapshot-final")
    assert "metrics TSDB snapshot" in final["message"]
    assert real.flag_variants("real-breach") == ["control"]


def test_a_worker_killed_during_allocate_traffic_leaves_one_strategy_change(real: RealStack) -> None:
    dies = real.tmp / "dies.faults.toml"
    dies.write_text('kill = "allocate-0:after"\n')
    doomed = real.worker("doomed", real.tmp / "abrollout.toml", queue="crash", faults=dies)
    # A killed worker's activity is retried once its start-to-close timeout (the tool timeout) has passed.
    started = real.cli("start", str(real.spec("clear-win", "real-crash")), "--tool-timeout", "5", queue="crash")
    assert started.returncode == 0, started.stderr
    assert doomed.wait(timeout=120) == -9, "the fault hook kills the worker with SIGKILL after the change"
    replacement = real.worker("replacement", real.tmp / "abrollout.toml", queue="crash")
    try:
        finished = real.cli("watch", "real-crash", "--quiet", queue="crash")
        assert finished.returncode == 0, finished.stderr
    finally:
        replacement.terminate()
        replacement.wait(timeout=30)
    report = real.report("real-crash")
    allocate = [r for r in report["receipts"] if r["step"] == "allocate-0"]
    assert len(allocate) == 1 and allocate[0]["ok"] and "already applied under this key" in allocate[0]["message"]
    assert real.strategy_events_for("real-crash", allocate[0]["idempotency_key"]) == 1


def test_a_terminated_experiment_is_returned_to_control_in_unleash_by_the_safety_net(real: RealStack) -> None:
    """Termination runs no workflow code: the flag keeps serving treatment until the safety net's sweep returns it
    to control through Unleash (read back), releases the PostgreSQL registry slot and opens a critical ticket."""
    spec = real.spec("steady", "real-terminated")
    raw = yaml.safe_load(spec.read_text())
    spec.write_text(yaml.safe_dump({**raw, "schedule": {"hour_seconds": 3600}}))  # no check during the test
    assert real.cli("start", str(spec), queue="real").returncode == 0
    deadline = time.monotonic() + 120
    while sorted(real.flag_variants("real-terminated")) != ["control", "treatment"]:
        assert time.monotonic() < deadline, "traffic not allocated within 120 s"
        time.sleep(0.2)
    subprocess.run([str(devserver.TEMPORAL), "workflow", "terminate", "--address", real.env["TEMPORAL_ADDRESS"],
                    "-w", "exp-real-terminated", "--reason", "oops"], check=True, capture_output=True, timeout=60)
    assert sorted(real.flag_variants("real-terminated")) == ["control", "treatment"], "nothing ran on termination"
    swept = real.cli("reconcile", queue="real")
    assert swept.returncode == 0, swept.stderr
    assert "real-terminated: terminated; the safety net returned the flag to control (change unleash-event-" \
        in swept.stdout, swept.stdout
    assert real.flag_variants("real-terminated") == ["control"]
    status = real.postgres.psql("SELECT status FROM abrollout_experiments WHERE exp_key = 'real-terminated'",
                                "warehouse")
    assert status.strip() == "stopped", "the registry slot is released"
    shown = real.cli("status", "real-terminated", queue="real")
    assert shown.returncode == 0 and "the safety net returned the flag to control" in shown.stdout, shown


@pytest.mark.parametrize("outcome", ["stuck", "failed"])
async def test_a_stuck_or_failed_experiment_is_returned_to_control_in_unleash_by_the_safety_net(
        real: RealStack, outcome: str) -> None:
    """A broken deploy makes the experiment's workflow task fail on every retry (stuck: the sweep ends the run) or,
    with nondeterminism made fatal, fails the workflow; either way the sweep returns the flag to control through
    Unleash and releases the PostgreSQL registry slot. In this process, so the deploy can be swapped: the same
    adapters as the worker's, on a task queue of their own."""
    name = f"real-{outcome}"
    spec = yaml.safe_load(real.spec("steady", name).read_text())
    checked = check_raw({**spec, "schedule": {"hour_seconds": 3600}})
    assert checked.spec is not None
    client = await Client.connect(real.env["TEMPORAL_ADDRESS"], data_converter=pydantic_data_converter)
    fatal = {"workflow_failure_exception_types": [NondeterminismError]} if outcome == "failed" else {}
    async with AsyncExitStack() as stack:
        config = load_config(str(real.tmp / "abrollout.toml"))
        adapters = await build_adapters(config, real.tmp / f"data-{outcome}", load_secrets(real.env), stack)
        async with build_worker(client, adapters, task_queue=name, max_cached_workflows=0):
            handle = await start_experiment(client, checked.spec, name)
            await _until(lambda: _serves(real, name, ["control", "treatment"]), "traffic allocated")
        if outcome == "failed":
            replay_guard.exempt(handle.id, "failed by a broken deploy on purpose")
        async with broken_worker(client, adapters, name, **fatal):
            await handle.signal("alert")  # a workflow task for the broken code
            if outcome == "failed":
                await _until(lambda: _status_is(handle, WorkflowExecutionStatus.FAILED), "the workflow failed")
            else:
                await _until(lambda: _failing_for(handle, 2.0), "the workflow task failing for 2 s")
            report = await sweep_once(client, name, SweepInput(stuck_after_seconds=1), 60)
    assert [(r.workflow_id, r.status, r.returned_to_control) for r in report.repaired] == [
        (f"exp-{name}", outcome, True)]
    assert real.flag_variants(name) == ["control"]
    status = real.postgres.psql(f"SELECT status FROM abrollout_experiments WHERE exp_key = '{name}'", "warehouse")
    assert status.strip() == "stopped"


async def _serves(real: RealStack, name: str, arms: list[str]) -> bool:
    return sorted(await asyncio.to_thread(real.flag_variants, name)) == arms


def test_no_secret_appears_in_any_history_report_dashboard_or_log(real: RealStack) -> None:
    """After the scenarios above ran: the Unleash token and the DSN password occur nowhere a person can read."""
    secrets = {real.unleash.token.split(".", 1)[1], DSN_PASSWORD}
    texts: dict[str, str] = {}
    scenarios = ("real-clear-win", "real-breach", "real-crash", "real-terminated", "real-stuck", "real-failed")
    for name in scenarios:
        shown = subprocess.run([str(devserver.TEMPORAL), "workflow", "show", "--address", real.env["TEMPORAL_ADDRESS"],
                                "--workflow-id", f"exp-{name}", "--output", "json"], capture_output=True, text=True,
                               timeout=60, check=True)
        texts[f"history {name}"] = shown.stdout
        texts[f"report {name}"] = real.cli("report", name, "--json").stdout
    for page in (real.tmp / "data").rglob("*.html"):
        texts[str(page)] = page.read_text(errors="replace")
    for log in real.tmp.glob("*.log"):
        texts[str(log)] = log.read_text(errors="replace")
    assert len(texts) > 8
    leaks = [(where, secret) for where, text in texts.items() for secret in secrets if secret in text]
    assert leaks == []
