"""In-memory adapters for running the tool activities without an outside system or a Temporal server.

Each fake keeps its effects keyed by the idempotency key it was given (as the real adapters do), so a test can see
that the key reached the system holding the effect, and a second call under the same key changes nothing.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from abrollout.contracts.tools import OpenTicketArgs, RegisterExperimentArgs
from abrollout.flags.evaluate import FlagState
from activities.tools import Tools
from adapters.protocols import (
    Adapters,
    Change,
    ConcurrencyRefused,
    MetricsSnapshot,
    OpenExperiment,
    Registered,
    TsdbSnapshots,
)


@dataclass
class FakeFlags:
    """Flags in a dict. `served` overrides what `read` returns for a flag (None: it is gone), as when someone edits
    the flag by hand or the provider keeps serving an old state after acknowledging a change."""

    name: str = "fake-flags"
    flags: dict[str, FlagState] = field(default_factory=dict)
    changes: dict[str, Change] = field(default_factory=dict)
    reasons: dict[str, str] = field(default_factory=dict)
    served: dict[str, FlagState | None] = field(default_factory=dict)

    def _append(self, flag_key: str, state: FlagState, idempotency_key: str, reason: str) -> Change:
        self.flags[flag_key] = state
        change = Change(change_id=f"chg-{flag_key}-{len(self.changes) + 1}", idempotency_key=idempotency_key)
        self.changes[idempotency_key] = change
        self.reasons[idempotency_key] = reason
        return change

    async def create_flag(self, flag_key: str, description: str, idempotency_key: str) -> Change:
        if idempotency_key in self.changes:
            return self.changes[idempotency_key]
        return self._append(flag_key, FlagState(name=flag_key, enabled=False), idempotency_key, description)

    async def apply(self, flag_key: str, desired: FlagState, idempotency_key: str, reason: str) -> Change:
        if idempotency_key in self.changes:
            return self.changes[idempotency_key]
        if flag_key not in self.flags:
            raise LookupError(f"flag {flag_key} does not exist")
        return self._append(flag_key, desired, idempotency_key, reason)

    async def find_change(self, idempotency_key: str) -> Change | None:
        return self.changes.get(idempotency_key)

    async def read(self, flag_key: str) -> FlagState | None:
        return self.served[flag_key] if flag_key in self.served else self.flags.get(flag_key)


@dataclass
class FakeRegistry:
    """Experiments, runs and stops in dicts; `full` refuses registration as a domain at max_concurrent does."""

    name: str = "fake-registry"
    experiments: dict[str, Registered] = field(default_factory=dict)
    runs: dict[str, tuple[str, str, str]] = field(default_factory=dict)
    stops: dict[str, tuple[str, str]] = field(default_factory=dict)
    by_key: dict[str, str] = field(default_factory=dict)
    full: bool = False

    def _once(self, idempotency_key: str, new_id: str) -> tuple[str, bool]:
        """The id stored under the key, and whether it is new."""
        first = self.by_key.setdefault(idempotency_key, new_id)
        return first, first == new_id

    async def register(self, args: RegisterExperimentArgs, idempotency_key: str) -> str:
        if self.full and idempotency_key not in self.by_key:
            raise ConcurrencyRefused(f"domain {args.domain} already runs {args.max_concurrent} experiments")
        exp_id, new = self._once(idempotency_key, f"exp-{len(self.experiments) + 1}")
        if new:
            self.experiments[exp_id] = Registered(exp_id=exp_id, args=args)
        return exp_id

    async def get(self, exp_id: str) -> Registered:
        if exp_id not in self.experiments:
            raise LookupError(f"experiment {exp_id} is not registered")
        return self.experiments[exp_id]

    async def start_run(self, exp_id: str, run_name: str, population: str, idempotency_key: str) -> str:
        run_id, new = self._once(idempotency_key, f"run-{len(self.runs) + 1}")
        if new:
            self.runs[run_id] = (exp_id, run_name, population)
        return run_id

    async def stop_run(self, run_id: str, reason: str, idempotency_key: str) -> str:
        stop_id, new = self._once(idempotency_key, f"stop-{len(self.stops) + 1}")
        if new:
            self.stops[stop_id] = (run_id, reason)
        return stop_id

    async def open_experiments(self) -> list[OpenExperiment]:
        stopped = {self.runs[target][0] if target in self.runs else target for target, _ in self.stops.values()}
        return [OpenExperiment(exp_id=e, exp_key=r.args.exp_key) for e, r in self.experiments.items()
                if e not in stopped]

    async def release(self, exp_id: str, reason: str, idempotency_key: str) -> str:
        """Recorded as a stop of the experiment itself (the tools never release; the safety net does)."""
        return await self.stop_run(exp_id, reason, idempotency_key)


@dataclass
class FakeMetrics:
    """Serves one prepared snapshot and remembers what it was asked for."""

    reading: MetricsSnapshot
    name: str = "fake-metrics"
    asked: list[tuple[str, str, int, list[str]]] = field(default_factory=list)

    async def snapshot(self, registered: Registered, run_id: str, at_seconds: int,
                       metrics: list[str]) -> MetricsSnapshot:
        self.asked.append((registered.exp_id, run_id, at_seconds, metrics))
        return self.reading


@dataclass
class FakeDashboards:
    """Pages by a digest of their HTML (content-addressed, like the real stores)."""

    name: str = "fake-dashboards"
    pages: dict[str, tuple[str, str, str]] = field(default_factory=dict)

    async def publish(self, html: str, exp_key: str, label: str) -> str:
        dashboard_id = "dash-" + hashlib.sha256(html.encode()).hexdigest()[:12]
        self.pages[dashboard_id] = (html, exp_key, label)
        return dashboard_id


@dataclass
class FakeTickets:
    """Tickets by idempotency key; `refusal` is raised instead, to see how the activity maps it."""

    name: str = "fake-tickets"
    tickets: dict[str, tuple[str, OpenTicketArgs]] = field(default_factory=dict)
    refusal: Exception | None = None

    async def open(self, args: OpenTicketArgs, idempotency_key: str) -> str:
        if self.refusal is not None:
            raise self.refusal
        if idempotency_key not in self.tickets:
            self.tickets[idempotency_key] = (f"TCK-{len(self.tickets) + 1}", args)
        return self.tickets[idempotency_key][0]


@dataclass
class FakeTsdb:
    name: str = "fake-tsdb"
    taken: int = 0

    async def tsdb_snapshot(self) -> str:
        self.taken += 1
        return f"tsdb-{self.taken}"


EMPTY_READING = MetricsSnapshot(snapshot_id="snap-empty", assignments={}, metrics={})


@dataclass
class Fakes:
    """One set of fakes, and the tools over them."""

    flags: FakeFlags = field(default_factory=FakeFlags)
    registry: FakeRegistry = field(default_factory=FakeRegistry)
    metrics: FakeMetrics = field(default_factory=lambda: FakeMetrics(EMPTY_READING))
    dashboards: FakeDashboards = field(default_factory=FakeDashboards)
    tickets: FakeTickets = field(default_factory=FakeTickets)

    def tools(self, *, accelerated_clock_allowed: bool = True, tsdb: TsdbSnapshots | None = None) -> Tools:
        return Tools(Adapters(flags=self.flags, registry=self.registry, metrics=self.metrics,
                              dashboards=self.dashboards, tickets=self.tickets,
                              accelerated_clock_allowed=accelerated_clock_allowed, tsdb=tsdb))
