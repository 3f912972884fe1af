"""The push path from an alerting system into the experiments: an Alertmanager webhook receiver.

    python starter.py alert-receiver [--host 127.0.0.1] [--port 9095] [--label experiment]

`POST /alerts` takes Alertmanager's webhook JSON (version 4: ``{"alerts": [{"status": "firing", "labels": {...},
"annotations": {...}}, ...]}``) and, for every experiment named by a firing alert's `experiment` label (the
experiment key, or its workflow id ``exp-<key>``), sends that workflow's `alert` signal: the experiment runs a
guardrail check at once (receipt step ``check-alert-N``) instead of at its next scheduled check, and stops with a
rollback if the metrics show a breach. An alert never decides anything itself: the check does, on the metrics.
That is also why the endpoint needs no credentials to be safe: the worst a forged alert can cause is an early
check (and a re-sent alert adds no second check while one is pending).

Answers (JSON, ``{"signalled": [...], "unknown": [...], "closed": [...], "resolved_ignored": N}`` or
``{"error": ...}``):

- 200: every firing alert's experiment was signalled (resolved alerts are ignored; a payload with nothing firing
  is a 200 that signals nothing);
- 400: the body is not an Alertmanager payload, or a firing alert has no usable `experiment` label; nothing is
  sent, and the message names the alert and the fix;
- 404: an experiment does not exist; 409: it is no longer running; the others in the same payload were signalled;
- 503: Temporal did not answer (Alertmanager retries 5xx answers, not 4xx).

`GET /healthz` answers 200 once the receiver is connected to Temporal. It listens on loopback unless `--host`
says otherwise, and runs in the foreground until Ctrl-C (SIGINT) or SIGTERM.

The HTTP side is the standard library's threading server; each request hands its signals to the asyncio loop that
owns the Temporal client and waits for them, so the answer says what was actually delivered.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import signal
import sys
import threading
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from abrollout.contracts.spec import EXPERIMENT_NAME_PATTERN
from abrollout.control import AlertRequest
from cli.connect import connect
from cli.exits import OK, RUNTIME_FAILURE, UserFacingError
from cli.settings import Settings
from workflows.experiment import ExperimentWorkflow, workflow_id

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 9095
DEFAULT_LABEL = "experiment"
PATH = "/alerts"
MAX_BODY_BYTES = 1 << 20
"""Alertmanager's payloads are a few kB per alert; `max_alerts` in its webhook_config bounds them."""
SIGNAL_TIMEOUT_SECONDS = 10.0
REASON_CHARS = 500  # AlertRequest.reason's limit
SOURCE = "alertmanager"
_NAME = re.compile(EXPERIMENT_NAME_PATTERN)


class BadPayload(ValueError):
    """The request body is not something this receiver can act on; the message says what and how to fix it."""


@dataclass(frozen=True)
class FiringAlert:
    experiment: str  # the experiment key
    name: str  # alertname, or "alert"
    summary: str  # the summary or description annotation, if any


@dataclass
class Parsed:
    firing: list[FiringAlert]
    resolved: int


def experiment_key(value: str) -> str:
    """The experiment key a label names: the key itself, or its workflow id `exp-<key>`."""
    key = value.removeprefix("exp-") if value.startswith("exp-") and _NAME.match(value[4:]) else value
    if not _NAME.match(key):
        raise ValueError(value)
    return key


def parse_payload(body: bytes, label: str = DEFAULT_LABEL) -> Parsed:
    """The firing alerts of an Alertmanager webhook body (version 4), each with its experiment; BadPayload if
    the body is not one, or a firing alert does not name an experiment in `label`."""
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError) as exc:  # not UTF-8, not JSON, nested too deep, a number too long
        detail = " ".join(str(exc).split())[:120] or type(exc).__name__
        raise BadPayload(f"the body is not JSON ({detail}); send Alertmanager's webhook payload") from None
    if not isinstance(payload, dict):
        raise BadPayload(f"the body is a JSON {type(payload).__name__}, not an object; send Alertmanager's webhook "
                         "payload")
    version = payload.get("version")
    if version is not None and str(version) != "4":
        raise BadPayload(f"webhook payload version {version!r}; this receiver reads version 4")
    alerts = payload.get("alerts")
    if not isinstance(alerts, list):
        raise BadPayload("no `alerts` list in the payload; send Alertmanager's webhook payload (version 4)")
    parsed = Parsed(firing=[], resolved=0)
    for index, alert in enumerate(alerts):
        where = f"alerts[{index}]"
        if not isinstance(alert, dict):
            raise BadPayload(f"{where} is not an object")
        status = alert.get("status")
        if status == "resolved":
            parsed.resolved += 1
            continue
        if status != "firing":
            raise BadPayload(f"{where}.status is {status!r}; expected 'firing' or 'resolved'")
        labels = alert.get("labels")
        annotations = alert.get("annotations") or {}
        if not isinstance(labels, dict) or not all(isinstance(v, str) for v in labels.values()):
            raise BadPayload(f"{where}.labels must be an object of strings")
        if not isinstance(annotations, dict):
            raise BadPayload(f"{where}.annotations must be an object")
        name = labels.get("alertname") or "alert"
        value = labels.get(label)
        if not value:
            raise BadPayload(f"firing alert {name!r} ({where}) has no `{label}` label; fix: add the label with the "
                             f"experiment key to the alerting rule, and route only alerts carrying it here "
                             f"(matcher {label}=~\".+\", group_by: [{label}])")
        try:
            key = experiment_key(value)
        except ValueError:
            raise BadPayload(f"firing alert {name!r} ({where}): `{label}` is {value[:80]!r}, not an experiment key "
                             f"(pattern {EXPERIMENT_NAME_PATTERN})") from None
        summary = annotations.get("summary") or annotations.get("description") or ""
        parsed.firing.append(FiringAlert(experiment=key, name=str(name), summary=str(summary)))
    return parsed


def alert_reason(alerts: list[FiringAlert]) -> str:
    """What fired, for the receipt: `alertmanager: HighDefectRate (summary); OtherAlert`, within the limit."""
    parts = [f"{a.name} ({' '.join(a.summary.split())})" if a.summary else a.name for a in alerts]
    text = f"{SOURCE}: " + "; ".join(dict.fromkeys(parts))
    return text if len(text) <= REASON_CHARS else text[: REASON_CHARS - 3] + "..."


@dataclass
class Delivery:
    signalled: list[str] = field(default_factory=list)  # workflow ids
    unknown: list[str] = field(default_factory=list)
    closed: list[str] = field(default_factory=list)

    def status(self) -> HTTPStatus:
        if self.unknown:
            return HTTPStatus.NOT_FOUND
        if self.closed:
            return HTTPStatus.CONFLICT
        return HTTPStatus.OK


async def deliver(client: Client, firing: list[FiringAlert]) -> Delivery:
    """One `alert` signal per experiment (concurrently); a signal to a missing or finished workflow fails with
    NOT_FOUND, and only then does a describe tell which. Other RPC errors propagate (the answer is a 503)."""
    by_experiment: dict[str, list[FiringAlert]] = {}
    for alert in firing:
        by_experiment.setdefault(alert.experiment, []).append(alert)

    async def one(key: str, alerts: list[FiringAlert]) -> tuple[str, str]:
        handle = client.get_workflow_handle_for(ExperimentWorkflow.run, workflow_id(key))
        try:
            await handle.signal(ExperimentWorkflow.alert, AlertRequest(source=SOURCE, reason=alert_reason(alerts)))
            return handle.id, "signalled"
        except RPCError as exc:
            if exc.status != RPCStatusCode.NOT_FOUND:
                raise
        try:
            await handle.describe()
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:
                return handle.id, "unknown"
            raise
        return handle.id, "closed"

    delivery = Delivery()
    for wf_id, outcome in await asyncio.gather(*(one(k, a) for k, a in by_experiment.items())):
        getattr(delivery, outcome).append(wf_id)
    return delivery


class AlertReceiver:
    """The HTTP server; `start()` binds and serves from a thread, signals go out on the caller's event loop."""

    def __init__(self, client: Client, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
                 label: str = DEFAULT_LABEL, log: Any = None) -> None:
        self.client = client
        self.label = label
        self._log = log or (lambda line: print(line, file=sys.stderr, flush=True))
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server = ThreadingHTTPServer((host, port), _handler(self))
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    @property
    def url(self) -> str:
        host, port = self.address
        return f"http://{host}:{port}{PATH}"

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._server.serve_forever, name="alert-receiver", daemon=True)
        self._thread.start()

    async def aclose(self) -> None:
        if self._thread is not None:
            await asyncio.to_thread(self._server.shutdown)
            self._thread.join()
        self._server.server_close()

    async def __aenter__(self) -> AlertReceiver:
        self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def run_on_loop(self, coro: Coroutine[Any, Any, Delivery]) -> Delivery:
        """From a request thread: run `coro` on the client's loop and wait for it (cancelled on timeout)."""
        assert self._loop is not None, "start() the receiver first"
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result(SIGNAL_TIMEOUT_SECONDS)
        except TimeoutError:
            future.cancel()
            raise

    def handle(self, body: bytes) -> tuple[HTTPStatus, dict[str, Any]]:
        """The answer to one POST body (called from a request thread)."""
        try:
            parsed = parse_payload(body, self.label)
        except BadPayload as exc:
            return HTTPStatus.BAD_REQUEST, {"error": f"bad Alertmanager payload: {exc}"}
        answer: dict[str, Any] = {"signalled": [], "unknown": [], "closed": [], "resolved_ignored": parsed.resolved}
        if not parsed.firing:
            return HTTPStatus.OK, answer
        try:
            delivery = self.run_on_loop(deliver(self.client, parsed.firing))
        except (RPCError, TimeoutError, RuntimeError) as exc:  # Temporal unreachable or slow: worth a retry
            detail = " ".join(str(exc).split())[:200] or type(exc).__name__
            return HTTPStatus.SERVICE_UNAVAILABLE, {"error": f"Temporal did not take the signal: {detail}"}
        except Exception as exc:  # a bug of ours: answer rather than drop the connection
            return HTTPStatus.INTERNAL_SERVER_ERROR, {"error": f"the receiver failed: {type(exc).__name__}"}
        answer.update(signalled=delivery.signalled, unknown=delivery.unknown, closed=delivery.closed)
        if delivery.unknown:
            answer["error"] = (f"no experiment {', '.join(delivery.unknown)}; fix: the `{self.label}` label must be "
                               "the experiment key (see `starter.py list`)")
        elif delivery.closed:
            answer["error"] = f"{', '.join(delivery.closed)} no longer running: nothing to check"
        return delivery.status(), answer

    def log(self, line: str) -> None:
        self._log(line)


def _handler(receiver: AlertReceiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as Alertmanager's client expects; every answer has a length
        server_version = "abrollout-alert-receiver"
        timeout = 60  # an idle keep-alive connection is closed after this

        def do_POST(self) -> None:
            started = time.perf_counter()
            body = self._body()  # read before anything else, so a keep-alive connection stays in step
            if body is None:
                return
            if self.path.split("?", 1)[0] != PATH:
                self._answer(HTTPStatus.NOT_FOUND, {"error": f"no such endpoint {self.path}; POST {PATH}"})
                return
            status, answer = receiver.handle(body)
            self._answer(status, answer)
            what = answer.get("error") or (f"signalled {', '.join(answer['signalled']) or 'nothing'}; "
                                           f"{answer['resolved_ignored']} resolved ignored")
            receiver.log(f"POST {PATH} {status.value} in {(time.perf_counter() - started) * 1000:.0f} ms: {what}")

        def _body(self) -> bytes | None:
            """The request body (Content-Length or chunked), or None after answering 411/413 and closing."""
            too_large = {"error": f"body over {MAX_BODY_BYTES} bytes; lower max_alerts in the webhook_config"}
            if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
                return self._chunked(too_large)
            length = self.headers.get("Content-Length") or ""
            if not length.isdigit():
                self._answer(HTTPStatus.LENGTH_REQUIRED, {"error": "send the body with a Content-Length"},
                             close=True)
                return None
            if int(length) > MAX_BODY_BYTES:
                remaining = int(length) if int(length) <= 8 * MAX_BODY_BYTES else 0  # drain what is sane to
                while remaining > 0 and (read := len(self.rfile.read(min(remaining, 1 << 16)))):
                    remaining -= read
                self._answer(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, too_large, close=True)
                return None
            return self.rfile.read(int(length))

        def _chunked(self, too_large: dict[str, Any]) -> bytes | None:
            chunks, size = [], 0
            try:
                while (length := int(self.rfile.readline(100).split(b";")[0].strip() or b"0", 16)) > 0:
                    size += length
                    if size > MAX_BODY_BYTES:
                        self._answer(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, too_large, close=True)
                        return None
                    chunks.append(self.rfile.read(length))
                    self.rfile.readline(100)
            except ValueError:
                self._answer(HTTPStatus.BAD_REQUEST, {"error": "malformed chunked body"}, close=True)
                return None
            while self.rfile.readline(1000) not in (b"\r\n", b"\n", b""):  # trailers, up to the blank line
                pass
            return b"".join(chunks)

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/healthz":
                self._answer(HTTPStatus.OK, {"status": "ok"})
            elif path == PATH:
                self._answer(HTTPStatus.METHOD_NOT_ALLOWED, {"error": f"POST {PATH}"}, allow="POST")
            else:
                self._answer(HTTPStatus.NOT_FOUND, {"error": f"no such endpoint {path}; POST {PATH}"})

        def _answer(self, status: HTTPStatus, body: dict[str, Any], allow: str | None = None,
                    close: bool = False) -> None:
            data = json.dumps(body).encode() + b"\n"
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            if allow:
                self.send_header("Allow", allow)
            if close:
                self.send_header("Connection", "close")
                self.close_connection = True
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            """Silence the per-request access log: do_POST logs one line with the outcome instead."""

    return Handler


async def cmd_alert_receiver(args: argparse.Namespace, s: Settings) -> int:
    """`starter.py alert-receiver`: serve until Ctrl-C or SIGTERM."""
    client = await connect(s)
    try:
        receiver = AlertReceiver(client, host=args.host, port=args.port, label=args.label)
    except OSError as exc:
        raise UserFacingError(f"error: cannot listen on {args.host}:{args.port} ({exc.strerror or exc}); fix: "
                              "choose another --port", RUNTIME_FAILURE) from None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with receiver:
        print(f"alert receiver on {receiver.url} (label '{args.label}') -> Temporal {s.address}, namespace "
              f"{s.namespace}; Ctrl-C stops it", flush=True)
        await stop.wait()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(Exception):
            loop.remove_signal_handler(sig)
    print("alert receiver stopped", flush=True)
    return OK


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default=DEFAULT_HOST, help=f"address to listen on (default {DEFAULT_HOST}: "
                        "loopback only)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT}; 0 picks a "
                        "free one, printed at start)")
    parser.add_argument("--label", default=DEFAULT_LABEL, help="the alert label naming the experiment key "
                        f"(default '{DEFAULT_LABEL}')")
