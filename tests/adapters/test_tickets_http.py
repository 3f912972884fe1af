"""The HTTP ticket adapters against a small recording server on loopback (no real tracker runs here): retries
under one Idempotency-Key, no retry on 4xx, a verifiable signature, GitHub deduplication by marker, no token leaks."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest

from abrollout.contracts.tools import OpenTicketArgs
from adapters.tickets_http import GitHubIssues, TicketError, TicketRefused, WebhookTickets
from devserver import free_port

ARGS = OpenTicketArgs(exp_key="ui-test-exp", title="guardrail stop: latency_p95", description="p95 2.7 >= 2.5",
                      severity="high", owners=["ui-team@example.com", "oncall@example.com"])
KEY = "ui-test-exp:ticket:0123abcd"
TOKEN = "ghp_TESTTOKEN0123456789abcdef"


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def query(self) -> dict[str, list[str]]:
        return parse_qs(urlsplit(self.path).query)


@dataclass(frozen=True)
class Reply:
    status: int
    body: object = None
    headers: tuple[tuple[str, str], ...] = ()
    delay: float = 0.0


Responder = Callable[[Request], Reply]


@dataclass
class Server:
    url: str
    requests: list[Request]


@contextmanager
def serve(respond: Responder) -> Iterator[Server]:
    """An HTTP server on 127.0.0.1 in a thread that records every request and answers with `respond`."""
    recorded: list[Request] = []

    class Handler(BaseHTTPRequestHandler):
        def _handle(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            request = Request(self.command, self.path, dict(self.headers.items()), body)
            recorded.append(request)
            reply = respond(request)
            time.sleep(reply.delay)
            payload = b"" if reply.body is None else json.dumps(reply.body).encode()
            try:
                self.send_response(reply.status)
                for name, value in reply.headers:
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
            except OSError:  # the client gave up (a timeout test)
                pass

        do_GET = do_POST = _handle

        def log_message(self, format: str, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield Server(f"http://127.0.0.1:{httpd.server_address[1]}", recorded)
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def scripted(*replies: Reply) -> Responder:
    """Answer with `replies` in order (the last one repeats)."""
    queue = list(replies)
    return lambda _request: queue.pop(0) if len(queue) > 1 else queue[0]


def webhook(url: str, secret: str | None = None, attempts: int = 5, timeout: float = 10.0) -> WebhookTickets:
    """The adapter with a 10 ms backoff base, so that retry tests take milliseconds."""
    return WebhookTickets(url, secret, attempts, timeout=timeout, backoff_seconds=0.01)


async def test_webhook_retries_5xx_under_the_same_key_and_signs_the_body() -> None:
    with serve(scripted(Reply(503), Reply(502, {"error": "upstream"}), Reply(201, {"id": "TCK-7"}))) as server:
        ticket = await webhook(f"{server.url}/hooks/tickets", secret="s3cret").open(ARGS, KEY)

    assert ticket == "TCK-7"
    assert len(server.requests) == 3
    assert {r.headers["Idempotency-Key"] for r in server.requests} == {KEY}
    assert len({r.body for r in server.requests}) == 1
    first = server.requests[0]
    assert first.method == "POST" and first.path == "/hooks/tickets"
    assert json.loads(first.body) == {"idempotency_key": KEY, "exp_key": "ui-test-exp", "title": ARGS.title,
                                      "description": ARGS.description, "severity": "high", "owners": ARGS.owners}
    expected = hmac.new(b"s3cret", first.body, hashlib.sha256).hexdigest()
    assert first.headers["X-Abrollout-Signature"] == f"sha256={expected}"
    assert all("s3cret" not in value for value in first.headers.values())


async def test_webhook_without_secret_sends_no_signature_and_reads_other_id_places() -> None:
    with serve(scripted(Reply(200, {"ticket_id": 42}))) as server:
        assert await webhook(server.url).open(ARGS, KEY) == "42"
    assert "X-Abrollout-Signature" not in server.requests[0].headers
    with serve(scripted(Reply(202, headers=(("X-Ticket-Id", "OPS-9"),)))) as server:
        assert await webhook(server.url).open(ARGS, KEY) == "OPS-9"
    with serve(scripted(Reply(200, {"ok": True}))) as server, pytest.raises(TicketError, match="without a ticket id"):
        await webhook(server.url).open(ARGS, KEY)


async def test_webhook_4xx_is_final() -> None:
    refusal = scripted(Reply(400, {"error": "unknown severity"}), Reply(201, {"id": "never"}))
    with serve(refusal) as server, pytest.raises(TicketRefused, match=r"refused the ticket: HTTP 400 .*severity"):
        await webhook(server.url, secret="s3cret").open(ARGS, KEY)
    assert len(server.requests) == 1


async def test_webhook_retries_429_and_timeouts() -> None:
    with serve(scripted(Reply(429), Reply(201, {"id": "late"}, delay=1.0), Reply(201, {"id": "TCK-8"}))) as server:
        assert await webhook(server.url, timeout=0.3).open(ARGS, KEY) == "TCK-8"
    assert len(server.requests) == 3


async def test_webhook_gives_up_after_the_attempts_on_connect_errors() -> None:
    url = f"http://127.0.0.1:{free_port()}/hooks/secret-path-token"
    started = time.monotonic()
    with pytest.raises(TicketError, match=r"failed after 3 attempts; last: ConnectError") as raised:
        await webhook(url, attempts=3).open(ARGS, KEY)
    assert time.monotonic() - started < 30  # it gives up (after ~1.5 s of backoff) rather than hang
    assert "secret-path-token" not in str(raised.value)  # a webhook URL's path is often a credential


class FakeGitHub:
    """GitHub's issues API for one repository, two issues per page, newest first, with Link pagination."""

    def __init__(self, existing: int, repo: str = "acme/shop") -> None:
        self.repo = repo
        self.issues = [{"number": n, "body": f"unrelated issue {n}", "labels": [{"name": "abrollout"}]}
                       for n in range(1, existing + 1)]
        self.url = ""

    def __call__(self, request: Request) -> Reply:
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            return Reply(401, {"message": "Bad credentials"})
        path = urlsplit(request.path).path
        if request.method == "POST" and path == f"/repos/{self.repo}/issues":
            created = {**json.loads(request.body), "number": len(self.issues) + 1}
            self.issues.append(created)
            return Reply(201, created)
        if request.method == "GET" and path == f"/repos/{self.repo}/issues":
            page = int(request.query.get("page", ["1"])[0])
            newest_first = self.issues[::-1]
            links: tuple[tuple[str, str], ...] = ()
            if page * 2 < len(newest_first):
                links = (("Link", f'<{self.url}/repos/{self.repo}/issues?state=all&labels=abrollout&per_page=100'
                                  f'&page={page + 1}>; rel="next"'),)
            return Reply(200, newest_first[(page - 1) * 2:page * 2], links)
        return Reply(404, {"message": "Not Found"})


@contextmanager
def github(fake: FakeGitHub) -> Iterator[tuple[GitHubIssues, Server]]:
    with serve(fake) as server:
        fake.url = server.url
        yield GitHubIssues(fake.repo, TOKEN, api_url=server.url), server


async def test_github_opens_once_per_key_found_again_through_pagination() -> None:
    fake = FakeGitHub(existing=3)
    with github(fake) as (issues, server):
        ref = await issues.open(ARGS, KEY)
        posts = [r for r in server.requests if r.method == "POST"]
        assert ref == "acme/shop#4" and len(posts) == 1
        sent = json.loads(posts[0].body)
        assert sent["title"] == ARGS.title and sent["labels"] == ["abrollout", "severity:high"]
        assert f"<!-- abrollout:{KEY} -->" in sent["body"] and "oncall@example.com" in sent["body"]
        first_list = server.requests[0]
        assert first_list.query == {"state": ["all"], "labels": ["abrollout"], "per_page": ["100"]}

        fake.issues += [{"number": 5, "body": "newer"}, {"number": 6, "body": "newer still"}]  # ours is on page 2
        assert await issues.open(ARGS, KEY) == ref
        assert len([r for r in server.requests if r.method == "POST"]) == 1
        assert [r.query.get("page") for r in server.requests[-2:]] == [None, ["2"]]
        assert {r.headers["Authorization"] for r in server.requests} == {f"Bearer {TOKEN}"}


async def test_github_listing_is_bounded() -> None:
    fake = FakeGitHub(existing=100)
    with serve(fake) as server:
        fake.url = server.url
        ref = await GitHubIssues(fake.repo, TOKEN, api_url=server.url, max_pages=3).open(ARGS, "other:key:1")
    assert ref == "acme/shop#101"
    assert [r.method for r in server.requests] == ["GET", "GET", "GET", "POST"]


async def test_github_follows_no_link_to_another_origin() -> None:
    def respond(request: Request) -> Reply:
        return Reply(200, [], (("Link", '<http://127.0.0.2:1/steal?page=2>; rel="next"'),))

    with serve(respond) as server, pytest.raises(TicketError, match="another origin"):
        await GitHubIssues("acme/shop", TOKEN, api_url=server.url).open(ARGS, KEY)
    assert len(server.requests) == 1


async def test_github_token_never_in_errors() -> None:
    def echo_credentials(request: Request) -> Reply:  # a misbehaving proxy that echoes what it got
        return Reply(401, {"message": f"Bad credentials: {request.headers.get('Authorization')}"})

    with serve(echo_credentials) as server, pytest.raises(TicketRefused, match="HTTP 401") as refused:
        await GitHubIssues("acme/shop", TOKEN, api_url=server.url).open(ARGS, KEY)
    with pytest.raises(TicketError, match="ConnectError") as unreachable:
        await GitHubIssues("acme/shop", TOKEN, api_url=f"http://127.0.0.1:{free_port()}", timeout=2).open(ARGS, KEY)
    for raised in (refused, unreachable):
        assert TOKEN not in "".join(traceback.format_exception(raised.value))
