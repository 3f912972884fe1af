"""Fault injection for the reliability tests: a worker that dies at a chosen point of a side effect.

Configured only through the worker's config file (`[faults]`), never by a spec or a signal, so production
workers cannot be made to misbehave from outside.
"""

from __future__ import annotations

import os
import signal

from abrollout.flag_eval import FlagState
from adapters.protocols import Change, FlagProvider


class DieAfterApplying:
    """A flag provider that SIGKILLs its own worker right after the provider applied the change for `step`,
    before the activity can report it: the crash that idempotency keys exist for."""

    def __init__(self, inner: FlagProvider, step: str) -> None:
        self.inner = inner
        self.step = step
        self.name = inner.name

    async def create_flag(self, flag_key: str, description: str, idempotency_key: str) -> Change:
        return await self.inner.create_flag(flag_key, description, idempotency_key)

    async def apply(self, flag_key: str, desired: FlagState, idempotency_key: str, reason: str) -> Change:
        change = await self.inner.apply(flag_key, desired, idempotency_key, reason)
        if idempotency_key.split(":")[1:2] == [self.step]:
            os.kill(os.getpid(), signal.SIGKILL)
        return change

    async def find_change(self, idempotency_key: str) -> Change | None:
        return await self.inner.find_change(idempotency_key)

    async def read(self, flag_key: str) -> FlagState | None:
        return await self.inner.read(flag_key)
