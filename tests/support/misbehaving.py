"""Outside systems that misbehave on purpose, for the reliability tests: failing, slow or edited-by-hand.

Built by a test (`misbehaving(adapters, Misbehaviours(...))`), or one table per adapter in the faults file of
`python -m tests.support.faulty_worker`:

    [flags]
    error = "5xx"              # 5xx | refused | timeout (the client gives up) | hang (no answer: Temporal's
                               # start-to-close timeout ends the attempt)
    fail_calls = [1, 2]        # which calls to this adapter fail, 1 = its first, counted per worker process
    delay_seconds = 0.2        # every call answers this much later
    hand_edit_after = ["allocate-0"]   # flags: someone changes the rollout by hand right after these steps

    [metrics]
    stale_after_hours = 24     # metrics: the pipeline stops; no event after this experiment hour ever arrives
    empty = true               # metrics: the source answers, with no rows

Errors are the ones the real HTTP adapters raise (httpx), so they take the same path: a retryable activity
failure, retried with backoff by the tool retry policy.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
from collections.abc import Awaitable, Callable
from typing import Any, Literal, cast

import httpx
from pydantic import BaseModel, ConfigDict, Field, PositiveInt

from abrollout.flags.evaluate import FlagState
from adapters.protocols import Adapters, Change, MetricsSnapshot, Registered
from tests.support.faults import step_of

CLIENT_TIMEOUT_SECONDS = 1.0
HANG_SECONDS = 24 * 3600.0
HAND_EDIT_REASON = "edited by hand in the flag UI"


class Misbehaviour(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    error: Literal["5xx", "refused", "timeout", "hang"] = "5xx"
    fail_calls: list[PositiveInt] = Field(default_factory=list,
                                          description="Calls to this adapter that fail (1 = its first).")
    delay_seconds: float = Field(default=0.0, ge=0, le=60, description="Every call answers this much later.")


class FlagMisbehaviour(Misbehaviour):
    hand_edit_after: list[str] = Field(default_factory=list,
                                       description="Steps right after which someone edits the flag by hand.")


class MetricsMisbehaviour(Misbehaviour):
    stale_after_hours: float | None = Field(default=None, ge=0,
                                            description="No event after this experiment hour ever arrives.")
    empty: bool = Field(default=False, description="The source answers with no rows at all.")


class Misbehaviours(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    flags: FlagMisbehaviour | None = None
    registry: Misbehaviour | None = None
    metrics: MetricsMisbehaviour | None = None
    dashboards: Misbehaviour | None = None
    tickets: Misbehaviour | None = None


def injected_error(kind: str, system: str) -> Exception:
    if kind == "refused":
        return httpx.ConnectError(f"[Errno 111] Connection refused by {system} (injected fault)")
    if kind == "timeout":
        return httpx.ReadTimeout(f"{system} did not answer within {CLIENT_TIMEOUT_SECONDS:g}s (injected fault)")
    request = httpx.Request("POST", f"http://{system}.invalid/")
    return httpx.HTTPStatusError(f"503 Service Unavailable from {system} (injected fault)", request=request,
                                 response=httpx.Response(503, request=request))


class Misbehaving:
    """Any adapter, each of its outside calls delayed or failed as `faults` says; everything else passes through.

    Generic over the protocols so every adapter misbehaves the same way; the flag and metrics subclasses add
    the faults only those systems have."""

    def __init__(self, inner: object, faults: Misbehaviour) -> None:
        self._inner = inner
        self._faults = faults
        self._calls = 0
        self.name = f"{getattr(inner, 'name', type(inner).__name__)} (misbehaving: test faults)"

    def __getattr__(self, attr: str) -> Any:
        value = getattr(self._inner, attr)
        if attr.startswith("_") or not inspect.iscoroutinefunction(value):
            return value
        return self._misbehaving(value)

    def _misbehaving(self, call: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        async def misbehave(*args: Any, **kwargs: Any) -> Any:
            await self._before_call()
            return await call(*args, **kwargs)

        return misbehave

    async def _before_call(self) -> None:
        self._calls += 1
        if self._faults.delay_seconds:
            await asyncio.sleep(self._faults.delay_seconds)
        if self._calls not in self._faults.fail_calls:
            return
        if self._faults.error == "hang":
            await asyncio.sleep(HANG_SECONDS)
        if self._faults.error == "timeout":
            await asyncio.sleep(CLIENT_TIMEOUT_SECONDS)
        raise injected_error(self._faults.error, getattr(self._inner, "name", "adapter"))


def hand_edited(state: FlagState) -> FlagState:
    """What someone dialling the rollout by hand leaves: the first strategy's rollout at 100% (or 50% if it was
    100%), so it never matches what was applied."""
    if not state.strategies:
        return state.model_copy(update={"enabled": not state.enabled})
    first, *rest = state.strategies
    edited = first.model_copy(update={"rollout": 50 if first.rollout == 100 else 100})
    return state.model_copy(update={"strategies": (edited, *rest)})


class MisbehavingFlags(Misbehaving):
    """Also: someone edits the flag by hand right after a step applied its change."""

    _faults: FlagMisbehaviour

    async def apply(self, flag_key: str, desired: FlagState, idempotency_key: str, reason: str) -> Change:
        inner = cast(Any, self._inner)
        await self._before_call()
        change: Change = await inner.apply(flag_key, desired, idempotency_key, reason)
        if step_of(idempotency_key) in self._faults.hand_edit_after:
            await inner.apply(flag_key, hand_edited(desired), f"hand-edit:{idempotency_key}", HAND_EDIT_REASON)
        return change


class MisbehavingMetrics(Misbehaving):
    """Also: a pipeline that stopped (stale data) or a source with no rows."""

    _faults: MetricsMisbehaviour

    async def snapshot(self, registered: Registered, run_id: str, at_seconds: int,
                       metrics: list[str]) -> MetricsSnapshot:
        await self._before_call()
        if self._faults.empty:
            return MetricsSnapshot(snapshot_id=f"empty-{at_seconds}", assignments={}, metrics={})
        stale = self._faults.stale_after_hours
        until = at_seconds if stale is None else min(at_seconds, int(stale * 3600))
        snapshot: MetricsSnapshot = await cast(Any, self._inner).snapshot(registered, run_id, until, metrics)
        return snapshot


def misbehaving(adapters: Adapters, faults: Misbehaviours) -> Adapters:
    """The same adapters, those named in `faults` misbehaving as configured."""
    wrap: dict[str, Any] = {}
    for field, wrapper in (("flags", MisbehavingFlags), ("registry", Misbehaving), ("metrics", MisbehavingMetrics),
                           ("dashboards", Misbehaving), ("tickets", Misbehaving)):
        config = getattr(faults, field)
        if config is not None:
            wrap[field] = wrapper(getattr(adapters, field), config)
    return dataclasses.replace(adapters, **wrap)
