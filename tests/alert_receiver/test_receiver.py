"""The Alertmanager webhook receiver (alert_receiver/): payload parsing, the HTTP answers, what a hostile caller
can and cannot do (forged alerts, floods, slow requests), and the push path end to end on the time-skipping server:
a firing alert makes the running experiment check its guardrails at once (receipt check-alert-N), and when the
metrics show a breach it stops and rolls back to control.

The experiments here run on a real-time clock (hour_seconds 3600) and the tests never wait for a result while an
experiment should keep running, so the server does not skip ahead to a scheduled check: the alert is the only thing
that can make the check happen within the test."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.testing import WorkflowEnvironment

from abrollout.contracts.records import ReceiptRecord
from abrollout.plan.planner import flag_key
from adapters.local import local_adapters
from adapters.local_metrics import LocalMetrics
from adapters.protocols import Adapters
from alert_receiver import TOKEN_ENV, AlertReceiver, BadPayload, alert_reason, parse_payload
from alert_receiver.auth import Bearer, receiver_token
from alert_receiver.coalesce import IN_FLIGHT_POLL_SECONDS, Coalescer
from alert_receiver.delivery import Delivery
from alert_receiver.payload import FiringAlert
from alert_receiver.trailing import TrailingSignals
from cli import main as cli_main
from client.exits import BAD_INPUT, UserFacingError
from client.experiments import ExperimentHandle, start_experiment
from devserver import free_port
from tests.support.alert_scenario import alert, bearer, breach_rows, healthy_rows, spec, webhook
from tests.support.temporal_env import time_skipping
from workers.assembly import build_worker
from workflows.experiment import ExperimentWorkflow

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "test-alert-token-7f3a9c"
JSON = {"Content-Type": "application/json"}
AUTHORIZED = {**bearer(TOKEN), **JSON}
_names = itertools.count()


def quiet(line: str) -> None:
    """The receiver's per-request log line, not wanted in test output."""


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

    async def post(self, payload: Any, headers: dict[str, str] = AUTHORIZED) -> httpx.Response:
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        return await self.http.post(self.receiver.url, content=body, headers=headers)

    async def running(self, name: str) -> ExperimentHandle:
        """Start the experiment and wait until it is set up and waiting for its first scheduled check."""
        handle = await start_experiment(self.env.client, spec(name), self.queue)
        await until(lambda: self.steps(handle), lambda steps: "snapshot-start" in steps)
        return handle

    async def receipts(self, handle: ExperimentHandle) -> list[ReceiptRecord]:
        return await handle.query(ExperimentWorkflow.receipts)

    async def steps(self, handle: ExperimentHandle) -> list[str]:
        return [r.step for r in await self.receipts(handle)]

    async def checked_on_alert(self, handle: ExperimentHandle) -> list[str]:
        """Once it has one, the experiment's check-alert steps."""
        steps = await until(lambda: self.steps(handle), lambda steps: any(s.startswith("check-alert-") for s in steps))
        return [s for s in steps if s.startswith("check-alert-")]


async def alert_signals_received(handle: ExperimentHandle) -> list[tuple[datetime, str]]:
    """The `alert` signals in the workflow's history, what reached Temporal whatever the workflow did with them: when
    Temporal took each, and its reason."""
    return [(event.event_time.ToDatetime(), json.loads(attrs.input.payloads[0].data)["reason"])
            for event in (await handle.fetch_history()).events
            if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED
            and (attrs := event.workflow_execution_signaled_event_attributes).signal_name == "alert"]


async def alert_signals(handle: ExperimentHandle) -> int:
    return len(await alert_signals_received(handle))


async def exchange(address: tuple[str, int], request: bytes) -> tuple[bytes, bytes]:
    """`request` written on a connection of its own; the answer's head and body (by its Content-Length: the
    receiver may keep the connection open, and drain what it did not read)."""
    reader, writer = await asyncio.open_connection(*address)
    try:
        writer.write(request)
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
        length = re.search(rb"\r\ncontent-length: *(\d+)", head, re.IGNORECASE)
        assert length is not None, head
        return head, await asyncio.wait_for(reader.readexactly(int(length[1])), 30)
    finally:
        writer.close()


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
                # no coalescing window: tests that post twice for one experiment want each answered on its own
                AlertReceiver(env.client, token=TOKEN, port=0, coalesce_seconds=0, log=quiet) as receiver,
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
    assert (args.host, args.port, args.label, args.coalesce_seconds, args.insecure_loopback) == (
        "127.0.0.1", 0, "exp", 5.0, False)


# ---- who may send alerts ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("header", "accepted"),
    [(b"Bearer " + TOKEN.encode(), True), (b"bearer   " + TOKEN.encode() + b" ", True), (None, False), (b"", False),
     (b"Bearer", False), (b"Bearer ", False), (b"Basic " + TOKEN.encode(), False), (b"Bearer " + TOKEN.encode() + b"x",
     False), (b"Bearer " + TOKEN[:-1].encode(), False), (b"Bearer \xff\xfe", False)],
)
def test_the_bearer_token_must_match_exactly(header: bytes | None, accepted: bool) -> None:
    assert Bearer(TOKEN).accepts(header) is accepted


@pytest.mark.parametrize(
    ("environ", "host", "insecure", "message"),
    [({}, "127.0.0.1", False, f"{TOKEN_ENV} is not set"),
     ({TOKEN_ENV: ""}, "127.0.0.1", False, f"{TOKEN_ENV} is empty"),
     ({TOKEN_ENV: " \n"}, "127.0.0.1", True, f"{TOKEN_ENV} is empty"),
     ({TOKEN_ENV: "tökén"}, "127.0.0.1", False, "other than printable ASCII"),
     ({TOKEN_ENV: "two words"}, "127.0.0.1", False, "other than printable ASCII"),
     ({}, "0.0.0.0", True, "--insecure-loopback listens on loopback only, not --host 0.0.0.0"),
     ({TOKEN_ENV: TOKEN}, "receiver.example", True, "not --host receiver.example")],
)
def test_a_token_that_cannot_work_is_refused_before_anything_starts(environ: dict[str, str], host: str,
                                                                    insecure: bool, message: str) -> None:
    with pytest.raises(UserFacingError, match=message) as refused:
        receiver_token(environ, host, insecure)
    assert refused.value.code == BAD_INPUT and "fix: " in refused.value.message
    assert TOKEN not in refused.value.message


def test_the_token_comes_from_the_environment_and_loopback_may_go_without() -> None:
    assert receiver_token({TOKEN_ENV: f" {TOKEN}\n"}, "0.0.0.0", False) == TOKEN  # trimmed like a credentials_file
    assert receiver_token({}, "127.0.0.1", True) is None
    assert receiver_token({}, "::1", True) is None
    assert receiver_token({}, "localhost", True) is None


def test_the_coalescer_takes_one_signal_per_experiment_and_window() -> None:
    now = [100.0]
    coalescer = Coalescer(window=5, clock=lambda: now[0])
    assert coalescer.claim(["exp-a", "exp-b"]) == ["exp-a", "exp-b"]
    assert coalescer.claim(["exp-a", "exp-c"]) == ["exp-c"]  # a is in flight
    coalescer.release(["exp-a", "exp-b"], signalled=["exp-a"])  # b's signal failed: no window for it
    coalescer.release(["exp-c"], signalled=["exp-c"])
    assert coalescer.claim(["exp-a", "exp-b", "exp-c"]) == ["exp-b"]
    coalescer.release(["exp-b"], signalled=[])
    now[0] += 4.9
    assert coalescer.claim(["exp-a"]) == []
    assert coalescer.wait("exp-a") == pytest.approx(0.1)  # the rest of its window
    assert coalescer.wait("exp-b") == 0.0  # its signal failed: free at once
    coalescer.claim(["exp-d"])
    assert coalescer.wait("exp-d") == IN_FLIGHT_POLL_SECONDS
    now[0] += 0.1
    assert coalescer.claim(["exp-a", "exp-a"]) == ["exp-a"]
    assert Coalescer(window=0).claim(["exp-a"]) == ["exp-a"]


class _Signals:
    """A stand-in for Temporal taking `alert` signals: what each carried, in order."""

    def __init__(self) -> None:
        self.sent: list[dict[str, list[FiringAlert]]] = []
        self.arrived = asyncio.Event()
        self.on_send: Callable[[], None] = lambda: None

    async def __call__(self, groups: dict[str, list[FiringAlert]]) -> Delivery:
        self.sent.append(groups)
        self.on_send()
        self.arrived.set()
        return Delivery(signalled=list(groups))


def _firing(name: str) -> dict[str, list[FiringAlert]]:
    return {"exp-a": [FiringAlert("a", name, "")]}


async def test_alerts_coalesced_behind_a_signal_are_owed_one_trailing_signal_with_the_latest() -> None:
    coalescer, signals = Coalescer(window=0.2), _Signals()
    trailing = TrailingSignals(coalescer, signals, quiet)
    assert coalescer.claim(["exp-a"]) == ["exp-a"]  # the leading signal, in flight
    for n in range(20):  # a burst meanwhile: no await in between, so all of it is coalesced
        trailing.owe(_firing(f"Burst{n}"))
    coalescer.release(["exp-a"], signalled=["exp-a"])
    await asyncio.wait_for(signals.arrived.wait(), 30)
    assert signals.sent == [_firing("Burst19")]
    await asyncio.sleep(0.5)  # past the trailing signal's own window: nothing more was owed
    assert len(signals.sent) == 1
    await trailing.aclose()


async def test_an_alert_posted_while_the_trailing_signal_is_sent_is_owed_another() -> None:
    coalescer, signals = Coalescer(window=0.05), _Signals()
    trailing = TrailingSignals(coalescer, signals, quiet)
    signals.on_send = lambda: trailing.owe(_firing("Later")) if len(signals.sent) == 1 else None
    trailing.owe(_firing("First"))
    await until(lambda: asyncio.sleep(0, len(signals.sent)), lambda sent: sent == 2)
    assert signals.sent == [_firing("First"), _firing("Later")]
    await trailing.aclose()


async def test_a_stopping_receiver_cancels_what_it_owes_and_says_so() -> None:
    said: list[str] = []
    coalescer, signals = Coalescer(window=600), _Signals()
    trailing = TrailingSignals(coalescer, signals, said.append)
    coalescer.claim(["exp-a"])
    coalescer.release(["exp-a"], signalled=["exp-a"])
    trailing.owe(_firing("Owed"))
    await trailing.aclose()
    assert signals.sent == [] and said == ["stopping: 1 coalesced alert(s) not sent: exp-a"]


# ---- HTTP ---------------------------------------------------------------------------------------------------
async def test_bad_payloads_get_400_and_send_nothing(stack: Stack) -> None:
    handle = await stack.running(f"ar-bad-{next(_names)}")
    for body in (b"{not json", b"", webhook(alert(handle.id), alert(None))):
        response = await stack.post(body)
        assert response.status_code == 400, response.text
        assert response.json()["error"].startswith("bad Alertmanager payload: ")
    assert await alert_signals(handle) == 0  # each answer came after anything it would have sent
    async def chunked() -> AsyncIterator[bytes]:
        yield json.dumps(webhook(alert(None, status="resolved")))[:20].encode()
        yield json.dumps(webhook(alert(None, status="resolved")))[20:].encode()

    streamed = await stack.http.post(stack.receiver.url, content=chunked(), headers=AUTHORIZED)  # chunked
    assert streamed.status_code == 200 and streamed.json()["resolved_ignored"] == 1, streamed.text
    assert (await stack.http.get(stack.receiver.url)).status_code == 405
    assert (await stack.http.post(stack.receiver.url.replace("/alerts", "/nope"), content=b"{}")).status_code == 404
    health = await stack.http.get(stack.receiver.url.replace("/alerts", "/healthz"))  # no token needed
    assert health.status_code == 200 and health.json() == {"status": "ok"}
    too_big = await stack.post(b" " * ((1 << 20) + 1))
    assert too_big.status_code == 413


async def test_forged_alerts_get_401_signal_nothing_and_open_no_ticket(stack: Stack) -> None:
    """Unlike forged alerts, one real alert reaches the experiment: once its check is in, the history shows the
    forged ones were never signalled (and so never checked: three checks without data would open a ticket)."""
    name = f"ar-forged-{next(_names)}"
    handle = await stack.running(name)
    wrong = "guessed-token-0123"
    for headers in ({}, bearer(wrong), {"Authorization": f"Basic {TOKEN}"}, bearer(TOKEN + "x")):
        for _ in range(3):
            response = await stack.post(webhook(alert(name)), headers={**headers, **JSON})
            assert response.status_code == 401, response.text
            assert response.headers["www-authenticate"].startswith("Bearer")
            assert wrong not in response.text and TOKEN not in response.text
            assert "bearer token" in response.json()["error"]
    assert await alert_signals(handle) == 0
    assert (await stack.post(webhook(alert(name)))).json()["signalled"] == [handle.id]
    assert len(await stack.checked_on_alert(handle)) == 1
    assert await alert_signals(handle) == 1
    assert await stack.adapters.tickets.list(name) == []  # type: ignore[attr-defined]
    await handle.terminate("test done")


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded",
                                          "application/jsonl", "multipart/form-data; boundary=x"])
async def test_only_json_is_taken(stack: Stack, content_type: str | None) -> None:
    handle = await stack.running(f"ar-type-{next(_names)}")
    headers = bearer(TOKEN) | ({"Content-Type": content_type} if content_type else {})
    response = await stack.post(webhook(alert(handle.id)), headers=headers)
    assert response.status_code == 415 and "application/json" in response.json()["error"], response.text
    assert await alert_signals(handle) == 0
    with_charset = await stack.post(webhook(alert(handle.id)), headers=bearer(TOKEN) | {
        "Content-Type": "Application/JSON; charset=utf-8"})
    assert with_charset.status_code == 200 and with_charset.json()["signalled"] == [handle.id], with_charset.text
    await handle.terminate("test done")


async def test_a_chunked_body_is_read_whatever_its_chunks_carry(stack: Stack) -> None:
    body = json.dumps(webhook(alert("no-such-experiment"))).encode()
    chunks = [body[:7], body[7:300], body[300:]]
    framed = b"".join(b"%X;note=%s\r\n%s\r\n" % (len(chunk), b"x" * 150, chunk) for chunk in chunks)
    head = (b"POST /alerts HTTP/1.1\r\nHost: receiver\r\nTransfer-Encoding: chunked\r\n"
            b"Content-Type: application/json\r\nAuthorization: Bearer " + TOKEN.encode() + b"\r\n\r\n")
    status, answer = await exchange(stack.receiver.address, head + framed + b"0\r\nX-Trailer: yes\r\n\r\n")
    assert status.startswith(b"HTTP/1.1 404 "), status + answer  # the body was read: it names an unknown experiment
    assert json.loads(answer)["unknown"] == ["exp-no-such-experiment"]
    over = b"".join(b"%X\r\n%s\r\n" % (1 << 16, b" " * (1 << 16)) for _ in range(17))  # 1 MiB + 64 kB
    status, _ = await exchange(stack.receiver.address, head + over + b"0\r\n\r\n")
    assert status.startswith(b"HTTP/1.1 413 "), status


async def test_unknown_experiments_get_404_and_the_others_are_signalled(stack: Stack) -> None:
    handle = await stack.running(f"ar-known-{next(_names)}")
    response = await stack.post(webhook(alert(handle.id), alert("no-such-experiment")))
    assert response.status_code == 404, response.text
    body = response.json()
    assert (body["signalled"], body["unknown"]) == ([handle.id], ["exp-no-such-experiment"])
    assert "the `experiment` label must be the experiment key" in body["error"]
    await stack.checked_on_alert(handle)


async def test_nothing_firing_is_ok_and_signals_nothing(stack: Stack) -> None:
    response = await stack.post(webhook(alert("no-such-experiment", status="resolved")))
    assert response.status_code == 200
    assert response.json() == {"signalled": [], "coalesced": [], "unknown": [], "closed": [], "resolved_ignored": 1}


async def test_without_a_token_the_receiver_takes_unauthenticated_alerts(env: WorkflowEnvironment) -> None:
    """What `--insecure-loopback` runs: no Authorization header needed."""
    async with (AlertReceiver(env.client, token=None, port=0, log=quiet) as receiver,
                httpx.AsyncClient(timeout=30) as http):
        response = await http.post(receiver.url, json=webhook(alert(None, status="resolved")))
    assert response.status_code == 200 and response.json()["resolved_ignored"] == 1, response.text


# ---- floods and slow callers -----------------------------------------------------------------------------------
async def test_a_burst_of_300_alerts_for_one_experiment_sends_one_signal(stack: Stack) -> None:
    """The window outlasts any burst here, so exactly one of the 300 gets through, however loaded the machine."""
    handle = await stack.running(f"ar-burst-{next(_names)}")
    async with (AlertReceiver(stack.env.client, token=TOKEN, port=0, coalesce_seconds=600, log=quiet) as receiver,
                httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=16)) as http):
        body = json.dumps(webhook(alert(handle.id))).encode()
        answers = await asyncio.gather(*(http.post(receiver.url, content=body, headers=AUTHORIZED)
                                         for _ in range(300)))
    assert await alert_signals(handle) == 1
    assert {a.status_code for a in answers} == {200}, {a.text for a in answers if a.status_code != 200}
    outcomes = [(tuple(a.json()["signalled"]), tuple(a.json()["coalesced"])) for a in answers]
    assert sorted(set(outcomes)) == [((), (handle.id,)), ((handle.id,), ())]
    assert outcomes.count(((handle.id,), ())) == 1
    assert len(await stack.checked_on_alert(handle)) == 1
    await handle.terminate("test done")


async def test_an_alert_coalesced_after_a_signal_goes_with_one_more_signal_when_the_window_ends(
        stack: Stack) -> None:
    """A healthy alert, then a breach alerted within the window: the breach is not dropped. One more signal carries
    it once the window has passed (the window is long beside one local POST, so the second one is coalesced)."""
    window = 5.0
    handle = await stack.running(f"ar-trailing-{next(_names)}")
    async with AlertReceiver(stack.env.client, token=TOKEN, port=0, coalesce_seconds=window, log=quiet) as receiver:
        first = await stack.http.post(receiver.url, json=webhook(alert(handle.id, name="Healthy")),
                                      headers=AUTHORIZED)
        second = await stack.http.post(receiver.url, json=webhook(alert(handle.id, name="DefectRateHigh")),
                                       headers=AUTHORIZED)
        assert (first.json()["signalled"], second.json()["coalesced"]) == ([handle.id], [handle.id])
        signals = await until(lambda: alert_signals_received(handle), lambda signals: len(signals) == 2,
                              timeout=window + 30)
    (first_at, first_reason), (second_at, second_reason) = signals
    assert "Healthy" in first_reason and "DefectRateHigh" in second_reason
    assert (second_at - first_at).total_seconds() >= window - 0.01, "not before the window ends"
    await handle.terminate("test done")


async def test_beyond_the_cap_requests_get_503_at_once_and_the_receiver_recovers(env: WorkflowEnvironment) -> None:
    cap = 4
    async with (AlertReceiver(env.client, token=TOKEN, port=0, max_concurrent=cap, read_seconds=600, log=quiet)
                as receiver,
                httpx.AsyncClient(timeout=30) as http):
        held = [await asyncio.open_connection(*receiver.address) for _ in range(cap)]
        for _, writer in held:
            writer.write(b"POST /alerts HTTP/1.1\r\nHost: receiver\r\n")  # a head that never ends
        status, _ = await exchange(receiver.address, b"GET /healthz HTTP/1.1\r\nHost: receiver\r\n\r\n")
        assert status.startswith(b"HTTP/1.1 503 "), status
        for _, writer in held:
            writer.close()
        health = await until(lambda: http.get(receiver.url.replace("/alerts", "/healthz")),
                             lambda response: response.status_code == 200)
        assert health.json() == {"status": "ok"}
        response = await http.post(receiver.url, json=webhook(alert(None, status="resolved")), headers=bearer(TOKEN))
        assert response.status_code == 200, response.text


HEAD_START = b"POST /alerts HTTP/1.1\r\nHost: receiver\r\n"


@pytest.mark.parametrize(
    ("prefix", "answered_first"),
    [(HEAD_START, False),  # the head, trickled
     (HEAD_START + b"Content-Length: 9000\r\nContent-Type: application/json\r\nAuthorization: Bearer "
      + TOKEN.encode() + b"\r\n\r\n", False),  # the body, trickled
     (HEAD_START, True)],  # the next request on a kept-alive connection, trickled
    ids=["head", "body", "kept-alive"],
)
async def test_a_request_trickled_byte_by_byte_is_cut_off(env: WorkflowEnvironment, prefix: bytes,
                                                          answered_first: bool) -> None:
    """Every byte restarts uvicorn's own keep-alive timer; the read deadline still closes the connection. (Two
    seconds: enough for the first request of the kept-alive case to be answered on a loaded machine.)"""
    async with AlertReceiver(env.client, token=TOKEN, port=0, read_seconds=2, log=quiet) as receiver:
        reader, writer = await asyncio.open_connection(*receiver.address)
        if answered_first:
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: receiver\r\n\r\n")
            assert (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)).startswith(b"HTTP/1.1 200 ")
            await asyncio.wait_for(reader.readuntil(b"\n"), 30)  # the body: one line of JSON
        writer.write(prefix)

        async def trickle() -> None:
            for byte in itertools.cycle(b"X-Pad: abc\r\n"):
                writer.write(bytes([byte]))
                await writer.drain()
                await asyncio.sleep(0.05)

        async def until_closed() -> bytes:
            received = b""
            with contextlib.suppress(ConnectionResetError):  # a byte that came after the close makes it a reset
                while chunk := await reader.read(1 << 16):
                    received += chunk
            return received

        trickling = asyncio.create_task(trickle())
        try:
            assert await asyncio.wait_for(until_closed(), 30) == b""  # closed by the receiver, nothing answered
        finally:
            trickling.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                await trickling
            writer.close()


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
ENTRIES = {"module": [sys.executable, "-m", "alert_receiver"],
           "starter": [sys.executable, str(ROOT / "starter.py"), "alert-receiver"]}
"""The receiver's two entries, one parser and one handler: its own, and starter.py's subcommand."""
entry = pytest.mark.parametrize("command", list(ENTRIES.values()), ids=list(ENTRIES))


def _environ(token: str | None) -> dict[str, str]:
    environ = {k: v for k, v in os.environ.items() if k != TOKEN_ENV} | {"PYTHONUNBUFFERED": "1"}
    return environ | ({TOKEN_ENV: token} if token is not None else {})


@entry
def test_the_command_serves_until_ctrl_c(env: WorkflowEnvironment, command: list[str]) -> None:
    address = env.client.service_client.config.target_host
    port = free_port()
    process = subprocess.Popen([*command, "--address", address, "--port", str(port)], cwd=ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_environ(TOKEN))
    wrong = "guessed-token-0123"
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        assert f"alert receiver on http://127.0.0.1:{port}/alerts" in first and "Ctrl-C stops it" in first, first
        url = f"http://127.0.0.1:{port}/alerts"
        response = httpx.post(url, json=webhook(alert("no-such-experiment")), headers=bearer(TOKEN), timeout=30)
        assert response.status_code == 404, response.text
        forged = httpx.post(url, json=webhook(alert("no-such-experiment")), headers=bearer(wrong), timeout=30)
        assert forged.status_code == 401, forged.text
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, err
    assert "alert receiver stopped" in out
    assert "POST /alerts 404" in err and "POST /alerts 401" in err
    assert TOKEN not in out + err and wrong not in out + err


@pytest.mark.parametrize(
    ("token", "flags", "message"),
    [(None, [], f"error: {TOKEN_ENV} is not set"),
     (None, ["--insecure-loopback", "--host", "0.0.0.0"], "error: --insecure-loopback listens on loopback only"),
     ("tökén", [], f"error: {TOKEN_ENV} holds characters other than printable ASCII")],
)
@entry
def test_the_command_refuses_to_start_without_a_usable_token(token: str | None, flags: list[str], message: str,
                                                             command: list[str]) -> None:
    """Exit 2 with one line, before connecting: the Temporal address here has no server, which would be exit 1."""
    done = subprocess.run([*command, "--address", f"127.0.0.1:{free_port()}", "--port", "0", *flags], cwd=ROOT,
                          capture_output=True, text=True, timeout=60, env=_environ(token))
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith(message) and done.stderr.count("\n") == 1, done.stderr
    assert "fix: " in done.stderr and done.stdout == ""


@entry
def test_the_command_says_when_temporal_is_unreachable(command: list[str]) -> None:
    done = subprocess.run([*command, "--address", f"127.0.0.1:{free_port()}", "--port", "0"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60, env=_environ(TOKEN))
    assert done.returncode == 1
    assert "cannot reach Temporal" in done.stderr


@entry
def test_the_command_explains_itself(command: list[str]) -> None:
    done = subprocess.run([*command, "--help"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "Alertmanager" in done.stdout and "--coalesce-seconds" in done.stdout and "--address" in done.stdout


@entry
@pytest.mark.parametrize(
    ("flags", "message"),
    [(["--port", "70000"], "argument --port: '70000' is not a TCP port; fix: give 0 to 65535"),
     (["--port", "nine"], "argument --port: 'nine' is not a TCP port"),
     (["--coalesce-seconds", "-1"], "argument --coalesce-seconds: '-1' is not a number of seconds >= 0"),
     (["--no-such-option"], "unrecognized arguments: --no-such-option")],
)
def test_a_bad_option_exits_2_naming_it(command: list[str], flags: list[str], message: str) -> None:
    """argparse's answer, before the token is read or Temporal is called: usage, then one line naming the option."""
    done = subprocess.run([*command, *flags], cwd=ROOT, capture_output=True, text=True, timeout=60,
                          env=_environ(TOKEN))
    assert done.returncode == 2, done.stderr
    last = done.stderr.rstrip().splitlines()[-1]
    assert done.stderr.startswith("usage: ") and f"error: {message}" in last, done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""
