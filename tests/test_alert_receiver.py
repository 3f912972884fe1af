"""The Alertmanager webhook receiver (cli/alert_receiver.py): payload parsing, the HTTP answers, and the push path
end to end on the time-skipping server: a firing alert makes the running experiment check its guardrails at once
(receipt check-alert-N), and when the metrics show a breach it stops and rolls back to control.

The experiments here run on a real-time clock (hour_seconds 3600) and the tests never wait for a result while an
experiment should keep running, so the server does not skip ahead to a scheduled check: the alert is the only thing
that can make the check happen within the test."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from temporalio.testing import WorkflowEnvironment

from abrollout.contracts.records import ReceiptRecord
from abrollout.planner import flag_key
from adapters.local import local_adapters
from adapters.local_metrics import LocalMetrics
from adapters.protocols import Adapters
from cli import main as cli_main
from cli.alert_receiver import AlertReceiver, BadPayload, alert_reason, parse_payload
from cli.devserver import free_port
from cli.experiments import ExperimentHandle, start_experiment
from cli.worker_setup import build_worker
from tests.alert_scenario import alert, breach_rows, healthy_rows, spec, webhook
from tests.temporal_env import time_skipping
from workflows.experiment import ExperimentWorkflow

ROOT = Path(__file__).resolve().parents[1]
_names = itertools.count()


@dataclass
class Stack:
    env: WorkflowEnvironment
    adapters: Adapters
    queue: str
    receiver: AlertReceiver
    http: httpx.AsyncClient

    @property
    def metrics(self) -> LocalMetrics:
        assert isinstance(self.adapters.metrics, LocalMetrics)
        return self.adapters.metrics

    async def post(self, payload: Any) -> httpx.Response:
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        return await self.http.post(self.receiver.url, content=body, headers={"Content-Type": "application/json"})

    async def running(self, name: str) -> ExperimentHandle:
        """Start the experiment and wait until it is set up and waiting for its first scheduled check."""
        handle = await start_experiment(self.env.client, spec(name), self.queue)
        await until(lambda: self.steps(handle), lambda steps: "snapshot-start" in steps)
        return handle

    async def receipts(self, handle: ExperimentHandle) -> list[ReceiptRecord]:
        return await handle.query(ExperimentWorkflow.receipts)

    async def steps(self, handle: ExperimentHandle) -> list[str]:
        return [r.step for r in await self.receipts(handle)]


async def until(get: Any, done: Any, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = await get()
        if done(value):
            return value
        assert time.monotonic() < deadline, f"timed out; last value {value}"
        await asyncio.sleep(0.05)


@pytest.fixture(scope="module")
async def env() -> AsyncIterator[WorkflowEnvironment]:
    environment = await time_skipping()
    yield environment
    await environment.shutdown()


@pytest.fixture
async def stack(env: WorkflowEnvironment, tmp_path: Path) -> AsyncIterator[Stack]:
    adapters = local_adapters(tmp_path / "data")
    queue = f"alert-receiver-{next(_names)}"
    async with (build_worker(env.client, adapters, task_queue=queue),
                AlertReceiver(env.client, port=0, log=lambda line: None) as receiver,
                httpx.AsyncClient(timeout=30) as http):
        yield Stack(env=env, adapters=adapters, queue=queue, receiver=receiver, http=http)
    adapters.metrics.close()  # type: ignore[attr-defined]


# ---- parsing ----------------------------------------------------------------------------------------------
def test_firing_alerts_name_their_experiments_and_resolved_ones_are_ignored() -> None:
    body = json.dumps(webhook(alert("checkout-v2"), alert("exp-ranking-v3", name="LatencyHigh", summary=""),
                              alert("checkout-v2", status="resolved"))).encode()
    parsed = parse_payload(body)
    assert [(a.experiment, a.name) for a in parsed.firing] == [("checkout-v2", "DefectRateHigh"),
                                                                ("ranking-v3", "LatencyHigh")]
    assert parsed.resolved == 1
    assert alert_reason(parsed.firing) == "alertmanager: DefectRateHigh (defect rate over 3%); LatencyHigh"
    long = parse_payload(json.dumps(webhook(*(alert("a-b", name=f"A{i}", summary="s" * 90) for i in range(9))))
                         .encode())
    assert len(alert_reason(long.firing)) == 500


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "not JSON"),
        (b"\xff\xfe", "not JSON"),
        (b"[" * 100_000, "not JSON"),
        (b'{"alerts": [], "n": ' + b"9" * 5000 + b"}", "not JSON"),
        (b"[]", "JSON list, not an object"),
        (json.dumps({"version": "3", "alerts": []}).encode(), "version '3'"),
        (json.dumps({"status": "firing"}).encode(), "no `alerts` list"),
        (json.dumps({"alerts": {"a": 1}}).encode(), "no `alerts` list"),
        (json.dumps({"alerts": ["firing"]}).encode(), r"alerts\[0\] is not an object"),
        (json.dumps(webhook({**alert("a-b"), "status": "pending"})).encode(), "status is 'pending'"),
        (json.dumps(webhook({**alert("a-b"), "labels": ["x"]})).encode(), "labels must be an object of strings"),
        (json.dumps(webhook({**alert("a-b"), "labels": {"experiment": 7}})).encode(), "object of strings"),
        (json.dumps(webhook({**alert("a-b"), "annotations": "x"})).encode(), "annotations must be an object"),
        (json.dumps(webhook(alert("a-b"), alert(None))).encode(),
         r"firing alert 'DefectRateHigh' \(alerts\[1\]\) has no `experiment` label; fix: add the label"),
        (json.dumps(webhook(alert("Checkout V2!"))).encode(), "not an experiment key"),
    ],
)
def test_bad_payloads_are_refused_with_what_is_wrong(body: bytes, message: str) -> None:
    with pytest.raises(BadPayload, match=message):
        parse_payload(body)


def test_a_resolved_alert_needs_no_label() -> None:
    assert parse_payload(json.dumps(webhook(alert(None, status="resolved"))).encode()).resolved == 1


def test_the_label_is_configurable() -> None:
    payload = webhook({**alert(None), "labels": {"alertname": "X", "exp": "checkout-v2"}})
    assert parse_payload(json.dumps(payload).encode(), label="exp").firing[0].experiment == "checkout-v2"


def test_starter_has_the_subcommand() -> None:
    args = cli_main.build_parser().parse_args(["alert-receiver", "--port", "0", "--label", "exp"])
    assert (args.host, args.port, args.label) == ("127.0.0.1", 0, "exp")


# ---- HTTP ---------------------------------------------------------------------------------------------------
async def test_bad_payloads_get_400_and_send_nothing(stack: Stack) -> None:
    handle = await stack.running(f"ar-bad-{next(_names)}")
    for body in (b"{not json", webhook(alert(handle.id), alert(None))):
        response = await stack.post(body)
        assert response.status_code == 400, response.text
        assert response.json()["error"].startswith("bad Alertmanager payload: ")
    await asyncio.sleep(0.5)
    assert not any(step.startswith("check-alert") for step in await stack.steps(handle))
    async def chunked() -> AsyncIterator[bytes]:
        yield json.dumps(webhook(alert(None, status="resolved")))[:20].encode()
        yield json.dumps(webhook(alert(None, status="resolved")))[20:].encode()

    streamed = await stack.http.post(stack.receiver.url, content=chunked())  # Transfer-Encoding: chunked
    assert streamed.status_code == 200 and streamed.json()["resolved_ignored"] == 1, streamed.text
    host, port = stack.receiver.address
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(b"POST /alerts HTTP/1.1\r\nHost: x\r\n\r\n")  # neither a length nor chunks
    assert (await reader.readline()).startswith(b"HTTP/1.1 411")
    writer.close()
    assert (await stack.http.get(stack.receiver.url)).status_code == 405
    assert (await stack.http.post(stack.receiver.url.replace("/alerts", "/nope"), content=b"{}")).status_code == 404
    assert (await stack.http.get(stack.receiver.url.replace("/alerts", "/healthz"))).json() == {"status": "ok"}
    too_big = await stack.post(b" " * ((1 << 20) + 1))
    assert too_big.status_code == 413


async def test_unknown_experiments_get_404_and_the_others_are_signalled(stack: Stack) -> None:
    handle = await stack.running(f"ar-known-{next(_names)}")
    response = await stack.post(webhook(alert(handle.id), alert("no-such-experiment")))
    assert response.status_code == 404, response.text
    body = response.json()
    assert (body["signalled"], body["unknown"]) == ([handle.id], ["exp-no-such-experiment"])
    assert "the `experiment` label must be the experiment key" in body["error"]
    await until(lambda: stack.steps(handle), lambda steps: any(s.startswith("check-alert-") for s in steps))


async def test_nothing_firing_is_ok_and_signals_nothing(stack: Stack) -> None:
    response = await stack.post(webhook(alert("no-such-experiment", status="resolved")))
    assert response.status_code == 200
    assert response.json() == {"signalled": [], "unknown": [], "closed": [], "resolved_ignored": 1}


# ---- the push path ---------------------------------------------------------------------------------------------
async def test_a_firing_alert_runs_a_check_now_and_healthy_metrics_keep_the_run_going(stack: Stack) -> None:
    name = f"ar-healthy-{next(_names)}"
    handle = await stack.running(name)
    stack.metrics.write_rows(name, healthy_rows())
    response = await stack.post(webhook(alert(name), alert(name, name="LatencyHigh")))
    assert response.status_code == 200, response.text
    assert response.json()["signalled"] == [handle.id]
    receipts = await until(lambda: stack.receipts(handle),
                           lambda rs: any(r.step.startswith("check-alert-") for r in rs))
    checks = [r for r in receipts if r.step.startswith("check-alert-")]
    assert len(checks) == 1 and checks[0].tool == "CheckMetrics" and checks[0].ok  # two alerts, one signal
    report = await handle.query(ExperimentWorkflow.report)
    assert report.decision.state.value == "running"
    assert not any(r.tool == "RollbackVariant" for r in report.receipts)
    await handle.terminate("test done")


async def test_a_firing_alert_on_a_breach_stops_and_rolls_back_at_once(stack: Stack) -> None:
    name = f"ar-breach-{next(_names)}"
    handle = await stack.running(name)
    stack.metrics.write_rows(name, healthy_rows())
    stack.metrics.write_rows(name, breach_rows())
    started = time.monotonic()
    response = await stack.post(webhook(alert(name)))
    assert response.status_code == 200, response.text
    report = await handle.result()
    assert time.monotonic() - started < 30
    assert report.decision.state.value == "guardrail_stop"
    steps = [r.step for r in report.receipts]
    check = next(r for r in report.receipts if r.step.startswith("check-alert-"))
    assert check.tool == "CheckMetrics" and check.ok
    assert steps.index(check.step) < steps.index("rollback")
    assert not any(s.startswith("check-guardrail-") or s.startswith("check-analysis-") for s in steps)
    rollback = next(r for r in report.receipts if r.step == "rollback")
    assert rollback.tool == "RollbackVariant" and rollback.ok and "read back and matched" in rollback.message
    flag = await stack.adapters.flags.read(flag_key(name))
    assert flag is not None and [v.name for s in flag.strategies for v in s.variants] == ["control"]
    assert "defect_rate" in report.decision.rationale
    later = await stack.post(webhook(alert(name)))
    assert later.status_code == 409 and later.json()["closed"] == [handle.id]


# ---- the command ---------------------------------------------------------------------------------------------
def test_the_command_serves_until_ctrl_c(env: WorkflowEnvironment) -> None:
    address = env.client.service_client.config.target_host
    port = free_port()
    process = subprocess.Popen([sys.executable, str(ROOT / "starter.py"), "alert-receiver", "--address", address,
                                "--port", str(port)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        assert f"alert receiver on http://127.0.0.1:{port}/alerts" in first and "Ctrl-C stops it" in first, first
        response = httpx.post(f"http://127.0.0.1:{port}/alerts", json=webhook(alert("no-such-experiment")),
                              timeout=30)
        assert response.status_code == 404, response.text
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, err
    assert "alert receiver stopped" in out
    assert "POST /alerts 404" in err


def test_the_command_says_when_temporal_is_unreachable() -> None:
    done = subprocess.run([sys.executable, str(ROOT / "starter.py"), "alert-receiver", "--address",
                           f"127.0.0.1:{free_port()}", "--port", "0"], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 1
    assert "cannot reach Temporal" in done.stderr
