"""The trailing signal: an alert coalesced into a signal already taken is not dropped. It is owed, and one more
`alert` signal per experiment goes when its window ends, carrying the latest alerts. Without it a breach alerted a
second after a healthy alert would wait for Alertmanager's next repeat, or the hourly check."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

from alert_receiver.coalesce import Coalescer
from alert_receiver.delivery import TEMPORAL_UNAVAILABLE, Delivery, brief
from alert_receiver.payload import FiringAlert

RETRY_SECONDS = 1.0
Signal = Callable[[dict[str, list[FiringAlert]]], Awaitable[Delivery]]


class TrailingSignals:
    """At most one task per experiment, waiting for its window; the alerts owed are the latest ones posted."""

    def __init__(self, coalescer: Coalescer, signal: Signal, log: Callable[[str], None]) -> None:
        self._coalescer = coalescer
        self._signal = signal
        self._log = log
        self._owed: dict[str, list[FiringAlert]] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}

    def owe(self, groups: dict[str, list[FiringAlert]]) -> None:
        self._owed.update(groups)
        for wf_id in groups:
            self._ensure(wf_id)

    def _ensure(self, wf_id: str) -> None:
        if wf_id not in self._tasks:
            self._tasks[wf_id] = asyncio.create_task(self._trail(wf_id), name=f"trailing alert {wf_id}")

    async def _trail(self, wf_id: str) -> None:
        try:
            while not self._coalescer.claim([wf_id]):
                await asyncio.sleep(self._coalescer.wait(wf_id))
            alerts = self._owed.pop(wf_id)
            delivery = Delivery()
            try:
                delivery = await self._signal({wf_id: alerts})
                self._log(f"trailing alert for {wf_id}: {_outcome(delivery)}")
            except TEMPORAL_UNAVAILABLE as exc:
                self._owed.setdefault(wf_id, alerts)
                self._log(f"trailing alert for {wf_id} not taken, retried in {RETRY_SECONDS:g} s: {brief(exc)}")
                await asyncio.sleep(RETRY_SECONDS)
            finally:
                self._coalescer.release([wf_id], delivery.signalled)
        finally:
            del self._tasks[wf_id]
        if wf_id in self._owed:  # posted while this one was being delivered
            self._ensure(wf_id)

    async def aclose(self) -> None:
        """The receiver is stopping: owed alerts are not sent (Alertmanager repeats a firing alert)."""
        if self._owed:
            self._log(f"stopping: {len(self._owed)} coalesced alert(s) not sent: {', '.join(sorted(self._owed))}")
        for task in list(self._tasks.values()):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def _outcome(delivery: Delivery) -> str:
    if delivery.signalled:
        return "signalled"
    return "no such experiment" if delivery.unknown else "no longer running"
