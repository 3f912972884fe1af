"""OpenTicket over HTTP: a generic JSON webhook, and GitHub Issues. The embedded SQLite store stays the default.

Both are idempotent by the tool call's key, so a retried activity never opens a second ticket. Secrets go only
into a signature or the Authorization header, messages name a URL by its origin only (webhook URLs often carry a
token in their path), and a quoted answer has all of them masked (adapters/redaction.py).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from typing import Any

import httpx

from abrollout.contracts.tools import OpenTicketArgs
from adapters.protocols import AdapterRefusal
from adapters.redaction import quote, url_secrets

SIGNATURE_HEADER = "X-Abrollout-Signature"
TICKET_ID_HEADER = "X-Ticket-Id"
MAX_BACKOFF_SECONDS = 8.0
DETAIL_CHARS = 200
"""How much of an answer's body goes into an error, once the secrets are masked."""
_TRANSIENT = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)


class TicketError(RuntimeError):
    """The ticket system did not open a ticket; the message holds no secret."""


class TicketRefused(TicketError, AdapterRefusal):
    """The ticket system answered with a client error (4xx): retrying the same request cannot succeed."""


def _origin(url: httpx.URL) -> str:
    return f"{url.scheme}://{url.host}" + (f":{url.port}" if url.port else "")


def _detail(response: httpx.Response, secrets: tuple[str, ...]) -> str:
    return f"HTTP {response.status_code} {quote(response.text.strip(), secrets, DETAIL_CHARS)}".strip()


class WebhookTickets:
    """POSTs each ticket as JSON to a webhook, retrying what may be transient (connect errors, timeouts, 429 and
    5xx) with exponential backoff under the same Idempotency-Key (the tool call's key, for the receiver to dedupe
    on); a 4xx other than 429 is final."""

    name = "webhook"

    def __init__(self, url: str, secret: str | None = None, attempts: int = 5, *, timeout: float = 10.0,
                 backoff_seconds: float = 0.5, transport: httpx.AsyncBaseTransport | None = None) -> None:
        """`transport`: tests answer in place of the receiver (an `httpx.MockTransport`)."""
        self._url = httpx.URL(url)
        self._secret = secret.encode() if secret else None
        self._secrets = (secret or "", *url_secrets(url))
        self._attempts = max(1, attempts)
        self._timeout = timeout
        self._backoff = backoff_seconds
        self._transport = transport

    async def open(self, args: OpenTicketArgs, idempotency_key: str) -> str:
        body = json.dumps({"idempotency_key": idempotency_key, **args.model_dump(mode="json")},
                          sort_keys=True, separators=(",", ":")).encode()
        headers = {"Content-Type": "application/json", "Idempotency-Key": idempotency_key}
        if self._secret is not None:
            digest = hmac.new(self._secret, body, hashlib.sha256).hexdigest()
            headers[SIGNATURE_HEADER] = f"sha256={digest}"
        where = _origin(self._url)
        last = ""
        async with httpx.AsyncClient(timeout=self._timeout, transport=self._transport) as client:
            for attempt in range(self._attempts):
                if attempt:
                    await asyncio.sleep(min(MAX_BACKOFF_SECONDS, self._backoff * 2 ** (attempt - 1)))
                try:
                    response = await client.post(self._url, content=body, headers=headers)
                except _TRANSIENT as exc:
                    last = type(exc).__name__
                    continue
                if response.is_success:
                    return _ticket_id(response, where)
                if response.status_code != 429 and response.status_code < 500:
                    raise TicketRefused(f"webhook at {where} refused the ticket: {_detail(response, self._secrets)}")
                last = _detail(response, self._secrets)
        raise TicketError(f"webhook at {where} failed after {self._attempts} attempts; last: {last}")


def _ticket_id(response: httpx.Response, where: str) -> str:
    """The id from the JSON body (`id` or `ticket_id`), else from the X-Ticket-Id or Location header."""
    try:
        body: Any = response.json()
    except ValueError:
        body = None
    fields = body if isinstance(body, dict) else {}
    found = (fields.get("id") or fields.get("ticket_id") or response.headers.get(TICKET_ID_HEADER)
             or response.headers.get("Location"))
    if not found:
        raise TicketError(f"webhook at {where} answered HTTP {response.status_code} without a ticket id "
                          f"(expected JSON `id` or `ticket_id`, or a {TICKET_ID_HEADER} or Location header)")
    return str(found)


class GitHubIssues:
    """Opens a GitHub issue per ticket, labelled `abrollout` and `severity:<severity>`. The idempotency key rides in
    the body as `<!-- abrollout:<key> -->`; before creating, the repository's abrollout issues are searched for it,
    newest first, over at most `max_pages` pages (a retry comes soon after the first attempt, so its issue is on
    the first page)."""

    name = "github"

    def __init__(self, repo: str, token: str, api_url: str = "https://api.github.com", *, timeout: float = 10.0,
                 max_pages: int = 10, transport: httpx.AsyncBaseTransport | None = None) -> None:
        """`transport`: tests answer in place of GitHub (an `httpx.MockTransport`)."""
        self._repo = repo
        self._token = token
        self._secrets = (token, *url_secrets(api_url))
        self._api = httpx.URL(api_url)
        self._where = _origin(self._api)
        self._timeout = timeout
        self._max_pages = max_pages
        self._transport = transport

    async def open(self, args: OpenTicketArgs, idempotency_key: str) -> str:
        marker = f"<!-- abrollout:{idempotency_key} -->"
        headers = {"Authorization": f"Bearer {self._token}", "Accept": "application/vnd.github+json",
                   "X-GitHub-Api-Version": "2022-11-28", "User-Agent": "abrollout"}
        async with httpx.AsyncClient(base_url=self._api, headers=headers, timeout=self._timeout,
                                     transport=self._transport) as client:
            try:
                number = await self._find(client, marker)
                if number is None:
                    number = await self._create(client, args, marker)
            except httpx.HTTPError as exc:  # its text or request could carry the token: report the kind only
                raise TicketError(f"GitHub at {self._where}: {type(exc).__name__} for {self._repo}") from None
        return f"{self._repo}#{number}"

    async def _find(self, client: httpx.AsyncClient, marker: str) -> int | None:
        url: httpx.URL | str = f"/repos/{self._repo}/issues"
        params: dict[str, str] | None = {"state": "all", "labels": "abrollout", "per_page": "100"}
        for _ in range(self._max_pages):
            response = self._checked(await client.get(url, params=params), "listing issues")
            issues = response.json()
            if not isinstance(issues, list):
                raise TicketError(f"GitHub at {self._where} answered listing issues in {self._repo} with a "
                                  f"{type(issues).__name__}, not a list of issues")
            for issue in issues:
                if marker in (issue.get("body") or ""):
                    return int(issue["number"])
            following = response.links.get("next", {}).get("url")
            if following is None:
                return None
            url, params = httpx.URL(following), None  # the next link carries its own query
            if _origin(url) != self._where:  # never send the token anywhere but the configured API
                raise TicketError(f"GitHub at {self._where}: pagination pointed to another origin {_origin(url)}")
        return None

    async def _create(self, client: httpx.AsyncClient, args: OpenTicketArgs, marker: str) -> int:
        owners = ", ".join(args.owners) or "none"
        body = f"{args.description}\n\nExperiment: {args.exp_key}\nOwners: {owners}\n\n{marker}\n"
        response = await client.post(f"/repos/{self._repo}/issues", json={
            "title": args.title, "body": body, "labels": ["abrollout", f"severity:{args.severity}"]})
        return int(self._checked(response, "creating the issue").json()["number"])

    def _checked(self, response: httpx.Response, doing: str) -> httpx.Response:
        if response.is_success:
            return response
        message = f"GitHub at {self._where} refused {doing} in {self._repo}: {_detail(response, self._secrets)}"
        error = TicketRefused if response.is_client_error else TicketError
        raise error(message)
