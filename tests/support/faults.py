"""Kill points for the reliability tests: a worker that dies at a chosen point of a chosen side effect.

`kill = "<step>:<before|after>"` in the faults file of `python -m tests.support.faulty_worker` SIGKILLs the worker
just before the outside system is called for that step, or just after it returned but before the activity could
report it. Test machinery: the production worker never imports it.
"""

from __future__ import annotations

import dataclasses
import os
import signal
from typing import Literal

from abrollout.contracts.tools import OpenTicketArgs, RegisterExperimentArgs
from abrollout.flags.evaluate import FlagState
from adapters.protocols import (
    Adapters,
    Change,
    DashboardStore,
    FlagProvider,
    OpenExperiment,
    Registered,
    Registry,
    TicketSystem,
)

Phase = Literal["before", "after"]


@dataclasses.dataclass(frozen=True)
class KillPoint:
    step: str
    phase: Phase

    @classmethod
    def parse(cls, text: str) -> KillPoint:
        step, _, phase = text.rpartition(":")
        if not step or phase not in ("before", "after"):
            raise ValueError(f"kill = {text!r}: write <step>:before or <step>:after, e.g. allocate-0:after")
        return cls(step, phase)  # type: ignore[arg-type]

    def reached(self, step: str, phase: Phase) -> None:
        if (step, phase) == (self.step, self.phase):
            os.kill(os.getpid(), signal.SIGKILL)


def step_of(idempotency_key: str) -> str:
    return idempotency_key.split(":")[1] if idempotency_key.count(":") >= 2 else ""


class _Faulty:
    def __init__(self, kill: KillPoint, inner: object) -> None:
        self.kill = kill
        self.name = getattr(inner, "name", type(inner).__name__)


class FaultyFlags(_Faulty):
    def __init__(self, inner: FlagProvider, kill: KillPoint) -> None:
        super().__init__(kill, inner)
        self.inner = inner

    async def create_flag(self, flag_key: str, description: str, idempotency_key: str) -> Change:
        self.kill.reached(step_of(idempotency_key), "before")
        change = await self.inner.create_flag(flag_key, description, idempotency_key)
        self.kill.reached(step_of(idempotency_key), "after")
        return change

    async def apply(self, flag_key: str, desired: FlagState, idempotency_key: str, reason: str) -> Change:
        self.kill.reached(step_of(idempotency_key), "before")
        change = await self.inner.apply(flag_key, desired, idempotency_key, reason)
        self.kill.reached(step_of(idempotency_key), "after")
        return change

    async def find_change(self, idempotency_key: str) -> Change | None:
        return await self.inner.find_change(idempotency_key)

    async def read(self, flag_key: str) -> FlagState | None:
        return await self.inner.read(flag_key)


class FaultyRegistry(_Faulty):
    def __init__(self, inner: Registry, kill: KillPoint) -> None:
        super().__init__(kill, inner)
        self.inner = inner

    async def register(self, args: RegisterExperimentArgs, idempotency_key: str) -> str:
        self.kill.reached(step_of(idempotency_key), "before")
        exp_id = await self.inner.register(args, idempotency_key)
        self.kill.reached(step_of(idempotency_key), "after")
        return exp_id

    async def get(self, exp_id: str) -> Registered:
        return await self.inner.get(exp_id)

    async def start_run(self, exp_id: str, run_name: str, population: str, idempotency_key: str) -> str:
        self.kill.reached(step_of(idempotency_key), "before")
        run_id = await self.inner.start_run(exp_id, run_name, population, idempotency_key)
        self.kill.reached(step_of(idempotency_key), "after")
        return run_id

    async def stop_run(self, run_id: str, reason: str, idempotency_key: str) -> str:
        self.kill.reached(step_of(idempotency_key), "before")
        stop_id = await self.inner.stop_run(run_id, reason, idempotency_key)
        self.kill.reached(step_of(idempotency_key), "after")
        return stop_id

    async def open_experiments(self) -> list[OpenExperiment]:
        return await self.inner.open_experiments()

    async def release(self, exp_id: str, reason: str, idempotency_key: str) -> str:
        self.kill.reached(step_of(idempotency_key), "before")
        stop_id = await self.inner.release(exp_id, reason, idempotency_key)
        self.kill.reached(step_of(idempotency_key), "after")
        return stop_id


class FaultyDashboards(_Faulty):
    def __init__(self, inner: DashboardStore, kill: KillPoint) -> None:
        super().__init__(kill, inner)
        self.inner = inner

    async def publish(self, html: str, exp_key: str, label: str) -> str:
        step = "snapshot-start" if label == "start" else "snapshot-final"
        self.kill.reached(step, "before")
        dashboard_id = await self.inner.publish(html, exp_key, label)
        self.kill.reached(step, "after")
        return dashboard_id


class FaultyTickets(_Faulty):
    def __init__(self, inner: TicketSystem, kill: KillPoint) -> None:
        super().__init__(kill, inner)
        self.inner = inner

    async def open(self, args: OpenTicketArgs, idempotency_key: str) -> str:
        self.kill.reached(step_of(idempotency_key), "before")
        ticket_id = await self.inner.open(args, idempotency_key)
        self.kill.reached(step_of(idempotency_key), "after")
        return ticket_id


def with_kill_point(adapters: Adapters, kill: KillPoint) -> Adapters:
    """The same adapters, each side effect able to kill the worker at `kill`."""
    return dataclasses.replace(adapters, flags=FaultyFlags(adapters.flags, kill),
                               registry=FaultyRegistry(adapters.registry, kill),
                               dashboards=FaultyDashboards(adapters.dashboards, kill),
                               tickets=FaultyTickets(adapters.tickets, kill))
