"""Shared builders for the statistics tests: a two-arm plan and per-arm sufficient statistics."""

from __future__ import annotations

from typing import Any

import numpy as np

from abrollout.contracts.spec import Effect, Guardrail
from abrollout.contracts.verdicts import AnalysisPlan, MetricStats


def proportion(n: int, conversions: int) -> MetricStats:
    """0/1 metric: the sum of squares equals the sum."""
    return MetricStats(n=n, sum=float(conversions), sum_sq=float(conversions))


def from_values(values: np.ndarray, covariate: np.ndarray | None = None) -> MetricStats:
    extra: dict[str, float] = {}
    if covariate is not None:
        extra = {
            "pre_sum": float(covariate.sum()),
            "pre_sum_sq": float((covariate**2).sum()),
            "pre_sum_product": float((covariate * values).sum()),
        }
    return MetricStats(n=len(values), sum=float(values.sum()), sum_sq=float((values**2).sum()), **extra)


def make_plan(**changes: Any) -> AnalysisPlan:
    fields: dict[str, Any] = {
        "primary_metric": "signup_conv",
        "metric_kind": "proportion",
        "mde": Effect(kind="relative", value=5),
        "planned_looks": 14,
        "planned_max_users": 2 * 672_000,
        "arms": ("control", "treatment"),
        "split": {"control": 50.0, "treatment": 50.0},
        "guardrails": (Guardrail(name="latency_p95", threshold=2.5, direction="<"),),
    }
    fields.update(changes)
    return AnalysisPlan(**fields)
