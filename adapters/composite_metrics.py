"""Warehouse statistics plus operational guardrails from Prometheus, as one metrics source.

The warehouse gives per-arm sufficient statistics; a guardrail with a PromQL `query` is observed in
Prometheus over its lookback window and its per-arm values join the snapshot's `observed`, where the same
must-hold breach logic applies to them.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Protocol

from abrollout.contracts.spec import Guardrail
from abrollout.ids import digest
from adapters.protocols import MetricsSnapshot, MetricsSource, Registered

MIN_WINDOW_SECONDS = 60


class GuardrailObserver(Protocol):
    async def observe(self, guardrails: list[Guardrail], experiment: str,
                      window_seconds: int) -> tuple[dict[str, dict[str, float]], tuple[str, ...]]: ...


class CompositeMetrics:
    def __init__(self, warehouse: MetricsSource, observer: GuardrailObserver) -> None:
        self.warehouse = warehouse
        self.observer = observer
        self.name = f"{warehouse.name}+prometheus"

    async def snapshot(self, registered: Registered, run_id: str, at_seconds: int,
                       metrics: list[str]) -> MetricsSnapshot:
        args = registered.args
        operational = [g for g in args.guardrails if g.query]
        warehouse_metrics = [m for m in metrics if m not in {g.name for g in operational}]
        snapshot = await self.warehouse.snapshot(registered, run_id, at_seconds, warehouse_metrics)
        if not operational:
            return snapshot
        window = max(MIN_WINDOW_SECONDS, round(args.guardrail_check_every_seconds * args.hour_seconds / 3600))
        observed, queries = await self.observer.observe(operational, args.exp_key, window)
        merged = {**snapshot.observed, **observed}
        return replace(snapshot, observed=merged, queries=(*snapshot.queries, *queries),
                       snapshot_id=f"snap-{digest([snapshot.snapshot_id, merged])}")
