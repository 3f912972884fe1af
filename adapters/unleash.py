"""Unleash as the flag provider, through its Admin API (written and tested against Unleash 8.2.0).

An experiment is one flag of type "experiment" with one flexibleRollout strategy. Each change writes its
idempotency key in the same request (the strategy's title), so Unleash's event log, not the current state, says
whether a key was applied, and the event's id is the receipt. Design notes: docs/adapters.md.
"""

from __future__ import annotations

from typing import Any

import httpx

from abrollout.contracts.constraints import MULTI_VALUE_OPERATORS, Constraint, Operator
from abrollout.flags.evaluate import FlagState, FlexibleRollout, Payload, Variant
from abrollout.plan.planner import flag_key as experiment_flag
from adapters.protocols import AdapterConfigError, Change
from adapters.redaction import quote, url_secrets

FEATURE_CREATED = "feature-created"
STRATEGY_EVENTS = ("feature-strategy-add", "feature-strategy-update")
SEARCH_PAGE = 1000
"""The event search's largest page."""
REASON_CHARS = 200
"""How much of a change's reason goes into the strategy title, for people reading Unleash's UI."""
DETAIL_CHARS = 300
"""How much of a refusal's body goes into the error, once the token is masked."""


class UnleashError(RuntimeError):
    """Unleash refused a request or could not be reached mid-run (retryable); never carries the token."""


class FlagConflict(UnleashError):
    """The flag exists in Unleash but was not created under this idempotency key: someone else's flag."""


class UnsupportedFlag(UnleashError):
    """The flag holds something `FlagState` cannot express (another strategy type, segments, a dependency),
    so its read-back cannot be compared; it is reported rather than silently dropped."""


def _stamp(key: str) -> str:
    """The line prefix that marks a change as made under `key` (keys contain no spaces). It goes into a strategy's
    title or a new flag's description, written by the request that makes the change, so a crash cannot lose it;
    not a strategy parameter (SDKs download those as evaluation input), not a tag (a second request)."""
    return f"abrollout {key}: "


def _stamped(text: str | None, key: str) -> bool:
    """Whether a title or description was written under `key`: its last line starts with the stamp."""
    lines = (text or "").splitlines()
    return bool(lines) and lines[-1].startswith(_stamp(key))


def _event_stamped(event: dict[str, Any], key: str) -> bool:
    """Whether the event's own data (not its preData) was written under `key`."""
    data = event.get("data") or {}
    return _stamped(data.get("description" if event["type"] == FEATURE_CREATED else "title"), key)


def _strategy_body(strategy: FlexibleRollout, title: str) -> dict[str, Any]:
    """The Admin API body; segments and disabled are explicit so an update also clears hand-made ones."""
    variants = [{"name": v.name, "weight": v.weight, "weightType": v.weight_type,
                 "stickiness": v.stickiness or strategy.stickiness,
                 **({"payload": v.payload.model_dump()} if v.payload else {})} for v in strategy.variants]
    return {"name": "flexibleRollout", "title": title, "disabled": False, "segments": [],
            "parameters": {"rollout": str(strategy.rollout), "stickiness": strategy.stickiness,
                           "groupId": strategy.group_id},
            "constraints": [constraint.to_unleash() for constraint in strategy.constraints], "variants": variants}


def _constraint(body: dict[str, Any]) -> Constraint:
    """Unleash returns `values` and `value` both and may omit the flags: keep the field the operator reads."""
    operator = Operator(body["operator"])
    multi = operator in MULTI_VALUE_OPERATORS
    return Constraint(context_name=body["contextName"], operator=operator,
                      values=tuple(body.get("values") or ()) if multi else (),
                      value=None if multi else body.get("value"),
                      inverted=bool(body.get("inverted")), case_insensitive=bool(body.get("caseInsensitive")))


def _variant(body: dict[str, Any]) -> Variant:
    payload = body.get("payload")
    return Variant(name=body["name"], weight=body["weight"], weight_type=body.get("weightType", "variable"),
                   stickiness=body.get("stickiness"), payload=Payload.model_validate(payload) if payload else None)


def _strategy(flag_key: str, body: dict[str, Any]) -> FlexibleRollout:
    """A served strategy as a `FlexibleRollout`; "default" is one at 100%, which is how every SDK treats it."""
    name = body["name"]
    if name not in ("flexibleRollout", "default") or body.get("segments"):
        raise UnsupportedFlag(f"flag {flag_key} has a {name} strategy{' with segments' if body.get('segments') else ''}"
                              ", which abrollout does not model; remove it in Unleash")
    parameters = body.get("parameters") or {}
    try:
        return FlexibleRollout(
            rollout=int(parameters.get("rollout", 100)) if name == "flexibleRollout" else 100,
            stickiness=parameters.get("stickiness") or "default", group_id=parameters.get("groupId", flag_key),
            constraints=tuple(_constraint(c) for c in body.get("constraints") or ()),
            variants=tuple(_variant(v) for v in body.get("variants") or ()))
    except ValueError as exc:  # pydantic's errors too: e.g. an unknown operator, a variant's own stickiness
        raise UnsupportedFlag(f"flag {flag_key} has a strategy abrollout cannot model: {exc}") from None


class UnleashFlags:
    """`FlagProvider` over Unleash's Admin API, with an admin API token; one HTTP client per worker."""

    name = "unleash"

    def __init__(self, url: str, token: str, project: str = "default", environment: str = "development",
                 timeout: float = 10.0, *, transport: httpx.AsyncBaseTransport | None = None) -> None:
        """`transport`: tests answer in place of Unleash (an `httpx.MockTransport`)."""
        self.url = url.rstrip("/")
        self.project = project
        self.environment = environment
        self._secrets = (token, *url_secrets(self.url))
        self._where = quote(self.url, self._secrets)  # the URL as messages name it: credentials in it masked
        self._client = httpx.AsyncClient(base_url=self.url, headers={"Authorization": token}, timeout=timeout,
                                         transport=transport)

    async def aclose(self) -> None:
        await self._client.aclose()

    async def check(self) -> None:
        """Worker start-up: the server answers, takes the token, and has the project and the environment."""
        try:
            projects = await self._client.get("/api/admin/projects")
            environments = await self._client.get(f"/api/admin/environments/project/{self.project}")
        except httpx.HTTPError as exc:
            raise AdapterConfigError(f"Unleash at {self._where} is unreachable ({type(exc).__name__}): "
                                     "check [unleash] url") from None
        if projects.status_code in (401, 403):
            raise AdapterConfigError(f"Unleash at {self._where} refused the token (HTTP {projects.status_code}): "
                                     "UNLEASH_TOKEN must be an admin API token")
        if projects.status_code != 200 or environments.status_code != 200:
            raise AdapterConfigError(f"Unleash at {self._where} answered HTTP {projects.status_code} to an admin "
                                     "request: is [unleash] url an Unleash server?")
        if self.project not in {p["id"] for p in projects.json()["projects"]}:
            raise AdapterConfigError(f"Unleash project {self.project!r} does not exist at {self._where}: "
                                     "check [unleash] project")
        visible = {e["name"] for e in environments.json()["environments"] if e.get("visible") and e.get("enabled")}
        if self.environment not in visible:
            raise AdapterConfigError(f"environment {self.environment!r} is not enabled in Unleash project "
                                     f"{self.project!r} (enabled: {sorted(visible)}): check [unleash] environment")

    async def create_flag(self, flag_key: str, description: str, idempotency_key: str) -> Change:
        event = await self._event(flag_key, idempotency_key)
        if event is None:
            text = "\n".join(filter(None, [description, _stamp(idempotency_key) + "flag created"]))
            response = await self._request("POST", self._features, json={
                "name": flag_key, "type": "experiment", "description": text, "impressionData": False})
            if response.status_code == 409:
                raise FlagConflict(f"flag {flag_key} already exists in Unleash but was not created under "
                                   f"{idempotency_key}; archive and delete it, or rename the experiment")
            self._raise_for(response, f"create flag {flag_key}")
            event = await self._written(flag_key, idempotency_key)
        return self._change(event, idempotency_key)

    async def apply(self, flag_key: str, desired: FlagState, idempotency_key: str, reason: str) -> Change:
        """Write the strategy under the key, then enable the environment in a second request: Unleash gives a flag
        enabled without strategies an on-for-everyone default. A change interrupted between the two is finished
        here without writing the strategy again."""
        if len(desired.strategies) != 1:
            raise ValueError(f"Unleash flags hold one flexibleRollout strategy, got {len(desired.strategies)}")
        environment = await self._environment(flag_key)
        if environment is None:
            raise LookupError(f"flag {flag_key} does not exist in Unleash project {self.project}")
        current = environment["strategies"][0] if environment["strategies"] else None
        event = await self._event(flag_key, idempotency_key)
        if event is None:
            title = _stamp(idempotency_key) + " ".join(reason.split())[:REASON_CHARS]
            body = _strategy_body(desired.strategies[0], title)
            path = f"{self._environment_path(flag_key)}/strategies"
            response = await (self._request("PUT", f"{path}/{current['id']}", json=body) if current
                              else self._request("POST", path, json=body))
            self._raise_for(response, f"write the strategy of {flag_key}")
            event = await self._written(flag_key, idempotency_key)
        elif current is None or not _stamped(current.get("title"), idempotency_key):
            return self._change(event, idempotency_key)  # applied, and later changes followed: leave them be
        if environment["enabled"] != desired.enabled:  # a new write, or one interrupted before this step
            switch = "on" if desired.enabled else "off"
            self._raise_for(await self._request("POST", f"{self._environment_path(flag_key)}/{switch}"),
                            f"turn {flag_key} {switch}")
        return self._change(event, idempotency_key)

    async def find_change(self, idempotency_key: str) -> Change | None:
        """The change made under the key, unless it is a strategy write whose enabling was interrupted (then
        `apply` finishes it). The flag is the experiment's, named from the key's first part."""
        flag_key = experiment_flag(idempotency_key.split(":", 1)[0])
        event = await self._event(flag_key, idempotency_key)
        if event is None:
            return None
        if event["type"] != FEATURE_CREATED:
            environment = await self._environment(flag_key)
            unfinished = environment is not None and not environment["enabled"] and any(
                _stamped(s.get("title"), idempotency_key) for s in environment["strategies"])
            if unfinished:
                return None
        return self._change(event, idempotency_key)

    async def read(self, flag_key: str) -> FlagState | None:
        feature = await self._feature(flag_key)
        if feature is None:
            return None
        if feature.get("dependencies"):
            raise UnsupportedFlag(f"flag {flag_key} depends on other flags, which abrollout does not model")
        environment = self._environment_of(feature)
        served = [s for s in environment["strategies"] if not s.get("disabled")]  # SDKs never see disabled ones
        return FlagState(name=flag_key, enabled=environment["enabled"],
                         strategies=tuple(_strategy(flag_key, s) for s in served))

    # --- requests ---------------------------------------------------------------------------------------

    @property
    def _features(self) -> str:
        return f"/api/admin/projects/{self.project}/features"

    def _environment_path(self, flag_key: str) -> str:
        return f"{self._features}/{flag_key}/environments/{self.environment}"

    async def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return await self._client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise UnleashError(f"Unleash at {self._where} did not answer {method} {path} "
                               f"({type(exc).__name__})") from None

    def _raise_for(self, response: httpx.Response, doing: str) -> None:
        if response.is_success:
            return
        detail = quote(response.text, self._secrets, DETAIL_CHARS)
        raise UnleashError(f"Unleash refused to {doing}: HTTP {response.status_code} {detail}")

    async def _feature(self, flag_key: str) -> dict[str, Any] | None:
        response = await self._request("GET", f"{self._features}/{flag_key}")
        if response.status_code == 404:
            return None
        self._raise_for(response, f"read flag {flag_key}")
        feature: dict[str, Any] = response.json()
        return feature

    def _environment_of(self, feature: dict[str, Any]) -> dict[str, Any]:
        for environment in feature["environments"]:
            if environment["name"] == self.environment:
                return environment  # type: ignore[no-any-return]
        raise LookupError(f"flag {feature['name']} has no environment {self.environment}")

    async def _environment(self, flag_key: str) -> dict[str, Any] | None:
        feature = await self._feature(flag_key)
        return None if feature is None else self._environment_of(feature)

    async def _event(self, flag_key: str, key: str) -> dict[str, Any] | None:
        """The oldest event of the flag whose data was written under `key`: the change itself. `query` also matches
        preData, so only events whose own data carries the stamp count; the oldest wins, so a later hand edit that
        keeps the title is not the change, and a superseded key is never applied again."""
        params = {"feature": f"IS:{flag_key}", "type": f"IS_ANY_OF:{','.join((FEATURE_CREATED, *STRATEGY_EVENTS))}",
                  "query": key, "limit": SEARCH_PAGE}
        found: list[dict[str, Any]] = []
        offset, total = 0, 1
        while offset < total:
            response = await self._request("GET", "/api/admin/search/events", params={**params, "offset": offset})
            self._raise_for(response, f"search the event log of {flag_key}")
            page = response.json()
            total, offset = page["total"], offset + SEARCH_PAGE
            found += [e for e in page["events"] if _event_stamped(e, key)
                      and (e["type"] == FEATURE_CREATED or e.get("environment") == self.environment)]
        return min(found, key=lambda e: int(e["id"]), default=None)

    async def _written(self, flag_key: str, key: str) -> dict[str, Any]:
        """The event of a write Unleash just accepted; a write without one has no receipt."""
        event = await self._event(flag_key, key)
        if event is None:
            raise UnleashError(f"Unleash accepted a change of {flag_key} under {key} but logged no event for it")
        return event

    @staticmethod
    def _change(event: dict[str, Any], key: str) -> Change:
        return Change(change_id=f"unleash-event-{event['id']}", idempotency_key=key)
