"""Operational guardrails from Prometheus: a guardrail's PromQL `query` evaluated per arm over the lookback window,
and TSDB snapshots as the metrics-side receipt beside each dashboard snapshot.

A query returns one series per arm, told apart by an `arm` label (an example: docs/adapters.md); the values join
the check's observed values, where the must-hold breach logic is the same as for warehouse metrics.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from string import Template
from typing import Any

import httpx

from abrollout.contracts.spec import Guardrail
from adapters.composite_metrics import MIN_WINDOW_SECONDS
from adapters.protocols import AdapterConfigError
from adapters.redaction import quote, url_secrets

DETAIL_CHARS = 300
"""How much of a refusal's body goes into the error, once the URL's credentials are masked."""


class PrometheusQueryError(RuntimeError):
    """Prometheus refused a guardrail's query, or its result is not one series per arm."""


class PrometheusGuardrails:
    """The guardrail observer and TSDB snapshotter over Prometheus's HTTP API, with one connection pool."""

    name = "prometheus"

    def __init__(self, url: str, timeout: float = 10.0, *, transport: httpx.AsyncBaseTransport | None = None) -> None:
        """`transport`: tests answer in place of Prometheus (an `httpx.MockTransport`)."""
        self._secrets = url_secrets(url)
        self._where = quote(str(httpx.URL(url).copy_with(userinfo=b"")), self._secrets)  # for messages: no credential
        self._client = httpx.AsyncClient(base_url=url, timeout=timeout, transport=transport)

    async def aclose(self) -> None:
        await self._client.aclose()

    async def check(self) -> None:
        """Fail the worker at start-up, in one line, when Prometheus does not answer ready."""
        try:
            response = await self._client.get("/-/ready")
        except httpx.HTTPError as exc:
            raise AdapterConfigError(f"Prometheus at {self._where} does not answer ({type(exc).__name__}): "
                                     "start it or fix [prometheus] url") from None
        if response.status_code != 200:
            raise AdapterConfigError(f"Prometheus at {self._where} is not ready (HTTP {response.status_code} on "
                                     "/-/ready): wait for it to load its TSDB, or fix [prometheus] url")

    async def observe(self, guardrails: Sequence[Guardrail], experiment: str,
                      window_seconds: int) -> tuple[dict[str, dict[str, float]], tuple[str, ...]]:
        """Per guardrail with a query, its value per arm now, over the last `window_seconds` (at least a minute, so
        one late scrape or remote write never empties the window); and the executed queries, each ending in a
        PromQL comment with its evaluation time so that an analyst can rerun it exactly."""
        window = f"{max(MIN_WINDOW_SECONDS, window_seconds)}s"
        at = time.time()
        queried = [(g.name, Template(g.query).safe_substitute(experiment=experiment, window=window))
                   for g in guardrails if g.query]
        results = await asyncio.gather(*(self._per_arm(name, text, at) for name, text in queried))
        stamp = datetime.fromtimestamp(at, UTC).isoformat(timespec="milliseconds")
        return ({name: values for (name, _), values in zip(queried, results, strict=True)},
                tuple(f"{text} # evaluated at {stamp} (time={at:.3f})" for _, text in queried))

    async def _per_arm(self, guardrail: str, query: str, at: float) -> dict[str, float]:
        """The query's instant vector as {arm label: value}; series without an arm or a finite value are left out."""
        data = await self._api(f"guardrail {guardrail}: query {query!r}", "GET", "/api/v1/query",
                               params={"query": query, "time": f"{at:.3f}"})
        if data.get("resultType") != "vector":
            raise PrometheusQueryError(f"guardrail {guardrail}: query {query!r} returned a {data.get('resultType')}; "
                                       "it must return an instant vector with one series per arm (an `arm` label)")
        values: dict[str, float] = {}
        for series in data.get("result", []):
            arm = series.get("metric", {}).get("arm")
            value = float(series["value"][1])
            if arm is None or not math.isfinite(value):
                continue
            if arm in values:
                raise PrometheusQueryError(f"guardrail {guardrail}: query {query!r} returned several series for arm "
                                           f"{arm!r}; aggregate them, e.g. with `by (arm)`")
            values[arm] = value
        return values

    async def tsdb_snapshot(self) -> str:
        """Snapshot the TSDB (admin API, --web.enable-admin-api) and return the snapshot's name: the data the
        guardrails were read from, kept under <storage.tsdb.path>/snapshots/<name>."""
        data = await self._api("TSDB snapshot", "POST", "/api/v1/admin/tsdb/snapshot")
        return str(data["name"])

    async def _api(self, what: str, method: str, path: str, params: dict[str, str] | None = None) -> dict[str, Any]:
        """The `data` of a successful API response; anything else raises with Prometheus's own error text."""
        response = await self._client.request(method, path, params=params)
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            body = {}
        if response.is_success and body.get("status") == "success":
            data: dict[str, Any] = body["data"]
            return data
        detail = (quote(f"{body['errorType']}: {body.get('error', '')}", self._secrets) if "errorType" in body
                  else quote(response.text.strip(), self._secrets, DETAIL_CHARS))
        raise PrometheusQueryError(f"{what} failed at {self._where}: HTTP {response.status_code} {detail}")
