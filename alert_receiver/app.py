"""The receiver's HTTP answers, as a plain ASGI application (the package docstring lists them): the routes, the
bearer token, the JSON content type and the body cap are checked in that order, before anything is sent."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

from temporalio.client import Client

from alert_receiver.auth import Bearer
from alert_receiver.coalesce import Coalescer
from alert_receiver.delivery import TEMPORAL_UNAVAILABLE, Delivery, brief, deliver
from alert_receiver.payload import BadPayload, FiringAlert, parse_payload
from alert_receiver.trailing import TrailingSignals

PATH = "/alerts"
HEALTH_PATH = "/healthz"
MAX_BODY_BYTES = 1 << 20
"""Alertmanager's payloads are a few kB per alert; `max_alerts` in its webhook_config bounds them."""
SIGNAL_TIMEOUT_SECONDS = 10.0

Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Log = Callable[[str], None]


@dataclass
class Answer:
    status: HTTPStatus
    body: dict[str, Any]
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)


class ClientGone(Exception):
    """The client left, or was cut off by the read deadline, before its body was complete: nobody to answer."""


def is_json(content_type: bytes | None) -> bool:
    """`application/json`, with or without parameters such as a charset."""
    return (content_type or b"").split(b";", 1)[0].strip().lower() == b"application/json"


async def read_body(receive: Receive, limit: int) -> bytes | None:
    """The request body (h11 has undone any chunking), or None as soon as it is over `limit` bytes."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _not_allowed(method: str) -> Answer:
    return Answer(HTTPStatus.METHOD_NOT_ALLOWED, {"error": f"use {method}"}, [(b"allow", method.encode())])


class AlertApp:
    """POST /alerts and GET /healthz. `bearer` None takes alerts without a token (`--insecure-loopback`)."""

    def __init__(self, client: Client, bearer: Bearer | None, label: str, coalescer: Coalescer, log: Log) -> None:
        self.client = client
        self.bearer = bearer
        self.label = label
        self.coalescer = coalescer
        self.log = log
        self.trailing = TrailingSignals(coalescer, self.signal, log)

    async def signal(self, groups: dict[str, list[FiringAlert]], delivery: Delivery | None = None) -> Delivery:
        """One `alert` signal per experiment, within the deadline; what became of each is added to `delivery`."""
        delivery = delivery or Delivery()
        async with asyncio.timeout(SIGNAL_TIMEOUT_SECONDS):
            await deliver(self.client, groups, delivery)
        return delivery

    async def __call__(self, scope: Message, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # the server runs without lifespan events and websockets
            return
        started = time.perf_counter()
        try:
            answer = await self.route(scope, receive)
        except ClientGone:
            return
        data = json.dumps(answer.body).encode() + b"\n"
        await send({"type": "http.response.start", "status": answer.status.value,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode()),
                                *answer.headers]})
        await send({"type": "http.response.body", "body": data})
        if scope["method"] == "POST" and scope["path"] == PATH:
            client = scope.get("client") or ("?", 0)
            self.log(f"POST {PATH} {answer.status.value} from {client[0]} in "
                     f"{(time.perf_counter() - started) * 1000:.0f} ms: {_outcome(answer.body)}")

    async def route(self, scope: Message, receive: Receive) -> Answer:
        path, method = scope["path"], scope["method"]
        if path == HEALTH_PATH:
            return Answer(HTTPStatus.OK, {"status": "ok"}) if method in ("GET", "HEAD") else _not_allowed("GET")
        if path != PATH:
            return Answer(HTTPStatus.NOT_FOUND, {"error": f"no such endpoint; POST {PATH}, or GET {HEALTH_PATH}"})
        if method != "POST":
            return _not_allowed("POST")
        headers = dict(scope["headers"])
        if self.bearer is not None and not self.bearer.accepts(headers.get(b"authorization")):
            return Answer(HTTPStatus.UNAUTHORIZED,
                          {"error": "missing or wrong bearer token; fix: give the webhook_config http_config."
                           "authorization with the receiver's token"},
                          [(b"www-authenticate", b'Bearer realm="abrollout-alerts"')])
        if not is_json(headers.get(b"content-type")):
            return Answer(HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
                          {"error": "the body must be sent as Content-Type: application/json"})
        body = await read_body(receive, MAX_BODY_BYTES)
        if body is None:
            return Answer(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                          {"error": f"body over {MAX_BODY_BYTES} bytes; lower max_alerts in the webhook_config"})
        return await self.alerts(body)

    async def alerts(self, body: bytes) -> Answer:
        """Signal every experiment a firing alert names; those a signal was just taken for get one more when
        their window ends."""
        try:
            parsed = parse_payload(body, self.label)
        except BadPayload as exc:
            return Answer(HTTPStatus.BAD_REQUEST, {"error": f"bad Alertmanager payload: {exc}"})
        groups = parsed.by_workflow()
        fresh = self.coalescer.claim(groups)
        coalesced = {wf_id: alerts for wf_id, alerts in groups.items() if wf_id not in fresh}
        self.trailing.owe(coalesced)
        delivery = Delivery(coalesced=list(coalesced))
        try:
            await self.signal({wf_id: groups[wf_id] for wf_id in fresh}, delivery)
        except TEMPORAL_UNAVAILABLE as exc:
            return Answer(HTTPStatus.SERVICE_UNAVAILABLE, {"error": f"Temporal did not take the signal: {brief(exc)}"})
        finally:
            self.coalescer.release(fresh, delivery.signalled)
        answer: dict[str, Any] = {"signalled": delivery.signalled, "coalesced": delivery.coalesced,
                                  "unknown": delivery.unknown, "closed": delivery.closed,
                                  "resolved_ignored": parsed.resolved}
        if delivery.unknown:
            answer["error"] = (f"no experiment {', '.join(delivery.unknown)}; fix: the `{self.label}` label must be "
                               "the experiment key (see `starter.py list`)")
        elif delivery.closed:
            answer["error"] = f"{', '.join(delivery.closed)} no longer running: nothing to check"
        return Answer(delivery.status(), answer)


def _outcome(body: dict[str, Any]) -> str:
    if "signalled" not in body:
        return str(body.get("error"))
    done = f"signalled {', '.join(body['signalled']) or 'nothing'}"
    if body["coalesced"]:
        done += f"; coalesced {', '.join(body['coalesced'])}"
    done += f"; {body['resolved_ignored']} resolved ignored"
    return f"{done}; {body['error']}" if "error" in body else done
