"""A metrics source's answer: per-arm statistics and the statement that computed them, under a content id."""

from __future__ import annotations

import hashlib
import json
from typing import NamedTuple

from abrollout.contracts.verdicts import MetricStats
from adapters.protocols import MetricsSnapshot


class Aggregate(NamedTuple):
    """Per-arm statistics of one experiment's window, and the SQL that computes them (literals written in, so an
    analyst can rerun it as it stands)."""

    assignments: dict[str, int]
    metrics: dict[str, dict[str, MetricStats]]
    queries: tuple[str, ...]
    freshest_event_seconds: float | None

    def snapshot(self) -> MetricsSnapshot:
        """The statistics as the `MetricsSource` result, under their content-addressed id."""
        return MetricsSnapshot(snapshot_id=snapshot_id(self), assignments=self.assignments, metrics=self.metrics,
                               queries=self.queries, freshest_event_seconds=self.freshest_event_seconds)


def snapshot_id(result: Aggregate) -> str:
    """`snap-` and 16 hex digits of the SHA-256 of the canonical JSON of the statistics and the queries: the
    same data and window give the same id, so a retried check reports the snapshot it already reported."""
    content = {
        "assignments": result.assignments,
        "metrics": {
            name: {arm: stats.model_dump(mode="json", exclude_none=True) for arm, stats in arms.items()}
            for name, arms in result.metrics.items()
        },
        "queries": result.queries,
        "freshest_event_seconds": result.freshest_event_seconds,
    }
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return "snap-" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]
