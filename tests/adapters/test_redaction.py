"""Secrets never survive into a quoted outside answer: masked in every form before the text is cut, by the function
itself, by each HTTP adapter at every position of the secret in a long error body, and through a whole experiment
whose flag provider is the real Unleash adapter talking to an Unleash that echoes its token."""

from __future__ import annotations

import base64
import json
import logging
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote as percent_encode

import httpx
import pytest
from structlog.testing import capture_logs

from abrollout.contracts.records import DecisionState
from abrollout.contracts.tools import OpenTicketArgs
from adapters.local_dashboards import LocalDashboards
from adapters.local_metrics import LocalMetrics
from adapters.local_registry import LocalRegistry
from adapters.local_tickets import LocalTickets
from adapters.postgres_metrics import Database
from adapters.prometheus import PrometheusGuardrails, PrometheusQueryError
from adapters.prometheus_remote_write import RemoteWriteError, Sample, remote_write
from adapters.protocols import AdapterConfigError, Adapters
from adapters.redaction import MASK, quote, url_secrets
from adapters.tickets_http import GitHubIssues, TicketError, TicketRefused, WebhookTickets
from adapters.unleash import UnleashError, UnleashFlags
from client.experiments import start_experiment
from tests.support.temporal_env import time_skipping
from tests.workflows.conftest import golden_spec
from workers.assembly import build_worker

UNLEASH_TOKEN = "*:*.9f2c4e6a8b0d1f3a5c7e9b2d4f6a8c0e1b3d5f7a9c2e4b6d8f0a1c3e5b7d9f2a4c"
GITHUB_TOKEN = "ghp_Q7wE9rT2yU4iO6pA8sD0fG3hJ5kL1zX7cV9bN"
SIGNING_SECRET = "whsec_M3n5B7v9C1x3Z5l7K9j1H3g5F7d9S1a3"
PATH_TOKEN = "B07QK2M9XR4TZ8WLNC5VDJ3H"
FILLER = "upstream said no; " * 60
"""An error body 1,080 characters long that shares no 8 characters with any secret above."""
SLICE = 8
KEY = "leak-test:ticket:0123abcd"
ARGS = OpenTicketArgs(exp_key="leak-test", title="t", description="d", severity="high", owners=[])


def leaked(text: str, secret: str) -> list[str]:
    """Every SLICE-character piece of `secret` found in `text`."""
    return [secret[i:i + SLICE] for i in range(len(secret) - SLICE + 1) if secret[i:i + SLICE] in text]


def echoing(secret: str, offset: int) -> str:
    return FILLER[:offset] + secret + FILLER[offset:]


OFFSETS = range(len(FILLER) + 1)


# --- the function ---------------------------------------------------------------------------------------------

SPECIAL = 'p@ss/w"rd:9f2c4e6a8b0d+1f3a<5c7e>'
"""A secret with characters that JSON, URLs and HTML each escape."""


@pytest.mark.parametrize("form", [
    SPECIAL,
    'p@ss/w\\"rd:9f2c4e6a8b0d+1f3a\\u003c5c7e\\u003e',  # JSON, as Go's encoder writes it
    'p@ss\\/w\\"rd:9f2c4e6a8b0d+1f3a<5c7e>',  # JSON with escaped slashes
    "p%40ss%2Fw%22rd%3A9f2c4e6a8b0d%2B1f3a%3C5c7e%3E",  # percent-encoded
    "p%40ss%2fw%22rd%3a9f2c4e6a8b0d%2b1f3a%3c5c7e%3e",  # percent-encoded, lower-case hex
    "p@ss/w&quot;rd:9f2c4e6a8b0d+1f3a&lt;5c7e&gt;",  # HTML
])
def test_every_form_is_masked_at_every_offset_before_the_cut(form: str) -> None:
    for limit in (200, 300):
        for offset in OFFSETS:
            quoted = quote(echoing(form, offset), [SPECIAL], limit)
            assert len(quoted) <= limit
            assert not leaked(quoted, form), (limit, offset)


def test_text_without_secrets_is_only_cut_and_empty_secrets_mask_nothing() -> None:
    assert quote(FILLER, ["", GITHUB_TOKEN], 300) == FILLER[:300]
    assert quote(FILLER, []) == FILLER
    assert quote(f"a {GITHUB_TOKEN} b \"{GITHUB_TOKEN}\"", [GITHUB_TOKEN]) == f'a {MASK} b "{MASK}"'


def test_a_url_gives_its_password_and_token_like_parts_only() -> None:
    url = f"https://bot:p%40ss@hooks.example.com/services/T000/{PATH_TOKEN}?token=abcdefabcdefabcdef&x=1"
    basic = base64.b64encode(b"bot:p@ss").decode()
    assert set(url_secrets(url)) == {"p@ss", basic, PATH_TOKEN, "abcdefabcdefabcdef"}
    assert url_secrets("http://127.0.0.1:9090/api/v1/write") == ()


# --- the HTTP adapters, at every offset of the secret in an error body ------------------------------------------

@dataclass
class Answer:
    """What the fake system answers to every request, read at the time of the request."""

    status: int
    body: str = ""

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(lambda _request: httpx.Response(self.status, text=self.body))


async def test_unleash_errors_never_carry_the_token_wherever_the_body_puts_it() -> None:
    answer = Answer(500)
    flags = UnleashFlags("http://unleash.test", UNLEASH_TOKEN, transport=answer.transport())
    for offset in OFFSETS:
        answer.body = echoing(UNLEASH_TOKEN, offset)
        with pytest.raises(UnleashError) as raised:
            await flags.create_flag("abr.leak-test", "", KEY)
        assert str(raised.value).startswith("Unleash refused to search the event log of abr.leak-test: HTTP 500 ")
        assert not leaked(str(raised.value), UNLEASH_TOKEN), offset
    await flags.aclose()


async def test_unleash_messages_name_its_url_without_the_credentials_in_it() -> None:
    def unreachable(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    flags = UnleashFlags("http://admin:pa55-unleash-basic-secret@127.0.0.1:4242", "*:*.token",
                         transport=httpx.MockTransport(unreachable))
    with pytest.raises(AdapterConfigError) as caught:
        await flags.check()
    assert "pa55-unleash-basic-secret" not in str(caught.value) and "127.0.0.1:4242" in str(caught.value)
    await flags.aclose()


@pytest.mark.parametrize("echoed", [SIGNING_SECRET, PATH_TOKEN])
async def test_webhook_errors_never_carry_its_secret_or_url_token(echoed: str) -> None:
    answer = Answer(400)
    tickets = WebhookTickets(f"http://hooks.test/hooks/{PATH_TOKEN}", SIGNING_SECRET, attempts=1,
                             transport=answer.transport())
    for offset in OFFSETS:
        answer.body = echoing(echoed, offset)
        with pytest.raises(TicketRefused) as raised:
            await tickets.open(ARGS, KEY)
        assert str(raised.value).startswith("webhook at http://hooks.test refused the ticket: HTTP 400 ")
        assert not leaked(str(raised.value), echoed), offset
    answer.status, answer.body = 503, echoing(echoed, 195)  # the last 5xx is quoted when retries run out
    with pytest.raises(TicketError, match="failed after 1 attempts; last: HTTP 503") as gave_up:
        await tickets.open(ARGS, KEY)
    assert not leaked(str(gave_up.value), echoed)


async def test_github_errors_never_carry_the_token_wherever_the_body_puts_it() -> None:
    answer = Answer(401)
    issues = GitHubIssues("acme/shop", GITHUB_TOKEN, api_url="http://github.test", transport=answer.transport())
    for offset in OFFSETS:
        answer.body = echoing(f"Bearer {GITHUB_TOKEN}", offset)
        with pytest.raises(TicketRefused) as raised:
            await issues.open(ARGS, KEY)
        assert str(raised.value).startswith("GitHub at http://github.test refused listing issues in acme/shop: "
                                            "HTTP 401 ")
        assert not leaked(str(raised.value), GITHUB_TOKEN), offset
    answer.status, answer.body = 502, echoing(GITHUB_TOKEN, 195)
    with pytest.raises(TicketError, match="HTTP 502") as failed:
        await issues.open(ARGS, KEY)
    assert not leaked(str(failed.value), GITHUB_TOKEN)


PROMETHEUS_PASSWORD = "Pr0m-Pa55w0rd-7Kq2"
PROMETHEUS = f"http://writer:{PROMETHEUS_PASSWORD}@prom.test"


def _echoing_credentials(answer: Answer, offset: int) -> httpx.MockTransport:
    """Answers with `answer`'s status and its body with the request's Authorization header at `offset`."""
    return httpx.MockTransport(lambda request: httpx.Response(
        answer.status, text=echoing(request.headers.get("Authorization", "") + PROMETHEUS_PASSWORD, offset)))


async def test_prometheus_errors_never_carry_the_urls_credentials() -> None:
    for offset in OFFSETS:
        prometheus = PrometheusGuardrails(PROMETHEUS, transport=_echoing_credentials(Answer(500), offset))
        with pytest.raises(PrometheusQueryError) as raised:
            await prometheus.tsdb_snapshot()
        assert str(raised.value).startswith("TSDB snapshot failed at http://prom.test: HTTP 500 ")
        assert not leaked(str(raised.value), PROMETHEUS_PASSWORD), offset
        assert not leaked(str(raised.value), base64.b64encode(f"writer:{PROMETHEUS_PASSWORD}".encode()).decode())
        await prometheus.aclose()


async def test_remote_write_errors_never_carry_the_urls_credentials() -> None:
    sample = [Sample("abrollout_latency", {"arm": "control"}, 1.0, 0)]
    for offset in OFFSETS:
        async with httpx.AsyncClient(transport=_echoing_credentials(Answer(400), offset)) as client:
            with pytest.raises(RemoteWriteError) as raised:
                await remote_write(client, f"{PROMETHEUS}/api/v1/write", sample)
        assert str(raised.value).startswith(f"remote write to http://writer:{MASK}@prom.test/api/v1/write refused: "
                                            "HTTP 400 ")
        assert not leaked(str(raised.value), PROMETHEUS_PASSWORD), offset


async def test_postgres_messages_never_carry_the_dsn_password_in_any_form() -> None:
    password = "p@ss/w0rd-9f2c4e6a"
    database = Database(f"postgresql://abr:{percent_encode(password, safe='')}@127.0.0.1:1/analytics", 1, 1, 1.0, 1.0)
    for echoed in (password, percent_encode(password, safe="")):
        for offset in OFFSETS:
            assert not leaked(database.redact(echoing(echoed, offset)), echoed), offset


# --- through a whole experiment ---------------------------------------------------------------------------------

STRADDLE = 290
"""The token starts 10 characters before the old 300-character cut of Unleash's error body."""


def _payload_text(node: Any) -> Iterator[str]:
    """Every string in a history's JSON, with each payload's base64 `data` decoded (receipts, the report)."""
    if isinstance(node, dict):
        if "metadata" in node and isinstance(node.get("data"), str):
            yield base64.b64decode(node["data"]).decode("utf-8", errors="replace")
        for value in node.values():
            yield from _payload_text(value)
    elif isinstance(node, list):
        for value in node:
            yield from _payload_text(value)
    elif isinstance(node, str):
        yield node


async def test_an_experiment_on_an_unleash_that_echoes_its_token_never_records_it(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]) -> None:
    caplog.set_level(logging.INFO)
    answer = Answer(500, echoing(UNLEASH_TOKEN, STRADDLE))
    data = tmp_path / "data"
    data.mkdir()
    with capture_logs() as structured:
        env = await time_skipping()
        flags = UnleashFlags("http://unleash.test", UNLEASH_TOKEN, transport=answer.transport())
        adapters = Adapters(flags=flags, registry=LocalRegistry(data / "registry.sqlite"),
                            metrics=LocalMetrics(data / "metrics.duckdb"), dashboards=LocalDashboards(data / "dash"),
                            tickets=LocalTickets(data / "tickets.sqlite"))
        try:
            async with build_worker(env.client, adapters, task_queue="leak-test"):
                handle = await start_experiment(env.client, golden_spec("clear-win", name="leak-test"), "leak-test")
                report = await handle.result()
                queried = await handle.query("report")
                described = [await handle.describe(), await handle.query("__temporal_workflow_metadata")]
                history = (await handle.fetch_history()).to_json()
        finally:
            await flags.aclose()
            await env.shutdown()
    with sqlite3.connect(data / "tickets.sqlite") as con:
        tickets = [" ".join(map(str, row)) for row in con.execute("SELECT * FROM tickets")]
    printed = capsys.readouterr()
    places = {
        "history": "\n".join(_payload_text(json.loads(history))),
        "report": report.model_dump_json() + json.dumps(queried, default=str),
        "describe": "\n".join(map(str, described)),
        "tickets": "\n".join(tickets),
        "logs": caplog.text + "\n".join(map(str, structured)) + printed.out + printed.err,
    }
    assert {place: found for place, text in places.items() if (found := leaked(text, UNLEASH_TOKEN))} == {}
    assert report.decision.state is DecisionState.guardrail_stop  # and Unleash's answer was quoted everywhere:
    assert "Unleash refused" in report.decision.rationale and MASK in report.decision.rationale
    assert any("Unleash refused" in ticket and MASK in ticket for ticket in tickets)
    assert all("Unleash refused" in places[place] for place in ("history", "describe")), "the failure was recorded"
    assert "Unleash refused" in caplog.text, "and logged"
