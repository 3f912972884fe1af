"""The small protocols behind which every outside system sits, one per kind.

Activities know adapters only through these; the worker picks the implementations from configuration
(embedded local defaults, or Unleash / PostgreSQL / Prometheus / webhooks). Each side-effecting method
takes the deterministic idempotency key and must apply its effect at most once per key.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from abrollout.contracts.tools import OpenTicketArgs, RegisterExperimentArgs
from abrollout.contracts.verdicts import MetricStats
from abrollout.flags.evaluate import FlagState


class AdapterConfigError(RuntimeError):
    """An adapter's configuration is wrong or its system unreachable; raised at worker start, never mid-run.
    The message names the setting and the fix, and never contains a secret."""


class AdapterRefusal(Exception):
    """The outside system refused the request itself (a 4xx: bad token, bad payload): retrying cannot help."""


class ConcurrencyRefused(Exception):
    """Registering would exceed max_concurrent running experiments in the domain (concurrency.1)."""


@dataclass(frozen=True)
class Change:
    """A change applied to a flag: the provider's change id and the key it was applied under."""

    change_id: str
    idempotency_key: str


class FlagProvider(Protocol):
    name: str

    async def create_flag(self, flag_key: str, description: str, idempotency_key: str) -> Change:
        """Create the flag (no exposure yet); creating it again under the same key returns the first change."""
        ...

    async def apply(self, flag_key: str, desired: FlagState, idempotency_key: str, reason: str) -> Change:
        """Make `desired` the flag's state; at most once per key."""
        ...

    async def find_change(self, idempotency_key: str) -> Change | None:
        """The change already applied under this key, if any (the retry path)."""
        ...

    async def read(self, flag_key: str) -> FlagState | None:
        """The flag's state as the provider serves it now (the read-back)."""
        ...


@dataclass(frozen=True)
class Registered:
    exp_id: str
    args: RegisterExperimentArgs


@dataclass(frozen=True)
class OpenExperiment:
    """A registered experiment that still counts towards max_concurrent."""

    exp_id: str
    exp_key: str


class Registry(Protocol):
    name: str

    async def register(self, args: RegisterExperimentArgs, idempotency_key: str) -> str:
        """The exp_id; raises ConcurrencyRefused when the domain is full. Race-free across workers."""
        ...

    async def get(self, exp_id: str) -> Registered: ...

    async def start_run(self, exp_id: str, run_name: str, population: str, idempotency_key: str) -> str:
        """The run id."""
        ...

    async def stop_run(self, run_id: str, reason: str, idempotency_key: str) -> str:
        """The stop record's id; the experiment no longer counts towards max_concurrent."""
        ...

    async def open_experiments(self) -> list[OpenExperiment]:
        """Every experiment not stopped yet, in any domain (what the safety net compares with Temporal)."""
        ...

    async def release(self, exp_id: str, reason: str, idempotency_key: str) -> str:
        """Stop the experiment's open run, or the experiment itself if it never started one, freeing its slot; the
        stop record's id (releasing again returns the first)."""
        ...


@dataclass(frozen=True)
class MetricsSnapshot:
    """Per-arm sufficient statistics for a window, as the metrics source computed them (in SQL)."""

    snapshot_id: str
    assignments: dict[str, int]
    metrics: dict[str, dict[str, MetricStats]]
    observed: dict[str, dict[str, float]] = field(default_factory=dict)
    queries: tuple[str, ...] = ()
    freshest_event_seconds: float | None = None


class MetricsSource(Protocol):
    name: str

    async def snapshot(self, registered: Registered, run_id: str, at_seconds: int,
                       metrics: list[str]) -> MetricsSnapshot:
        """Cumulative per-arm statistics of `metrics` from the run's start to `at_seconds` of experiment time."""
        ...


class DashboardStore(Protocol):
    name: str

    async def publish(self, html: str, exp_key: str, label: str) -> str:
        """A content-addressed id: publishing the same page twice is one page."""
        ...


class TicketSystem(Protocol):
    name: str

    async def open(self, args: OpenTicketArgs, idempotency_key: str) -> str:
        """The ticket id; opening again under the same key returns the first ticket."""
        ...


class TsdbSnapshots(Protocol):
    """A metrics system that can snapshot its storage, recorded beside each dashboard snapshot."""

    async def tsdb_snapshot(self) -> str: ...


@dataclass(frozen=True)
class Adapters:
    """The adapters one worker uses, chosen by configuration."""

    flags: FlagProvider
    registry: Registry
    metrics: MetricsSource
    dashboards: DashboardStore
    tickets: TicketSystem
    accelerated_clock_allowed: bool = True
    tsdb: TsdbSnapshots | None = None
