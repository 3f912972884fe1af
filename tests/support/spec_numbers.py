"""Every number a spec can hold, each at its path in one valid spec that plans (a baseline, traffic, a ramp, a
simulation), for the hostile-input fuzzing and the strict-number tests to walk."""

from __future__ import annotations

import copy
from typing import Any

from abrollout.contracts.spec import ExperimentSpec
from tests.conftest import BASE_SPEC

FieldPath = tuple[str | int, ...]

FULL_SPEC: dict[str, Any] = {
    **BASE_SPEC,
    "primary_metric": {"name": "checkout_conv", "kind": "mean", "baseline": 4.0, "baseline_sd": 1.0},
    "secondary_metrics": [{"name": "refund_rate", "kind": "proportion", "baseline": 0.2}],
    "guardrails": [{"name": "error_rate", "threshold": 0.01, "direction": "<",
                    "margin": {"kind": "relative", "value": 5}}],
    "allocation": {"split": {"control": 50, "treatment": 50}, "expected_daily_users": 20000},
    "ramp": [{"percent": 10, "at": "0h"}, {"percent": 100, "at": "1d"}],
    "schedule": {"hour_seconds": 3600},
    "simulation": {
        "seed": 1, "users_per_hour": 100,
        "metrics": {"checkout_conv": {"mean": 4.0, "sd": 1.0, "pre_period_correlation": 0.5},
                    "error_rate": {"mean": 0.01}},
        "effects": {"treatment": {"checkout_conv": {"kind": "relative", "value": 5}}},
        "degradations": [{"metric": "error_rate", "arm": "treatment", "from_hour": 3,
                          "shift": {"kind": "absolute", "value": 0.1}}],
        "exposure_loss": {"treatment": 0.1},
        "context": {"country": {"US": 2.0}},
    },
}

NUMBER_FIELDS: dict[str, FieldPath] = {
    "ExperimentSpec.max_duration_days": ("max_duration_days",),
    "ExperimentSpec.max_concurrent": ("max_concurrent",),
    "Metric.baseline": ("primary_metric", "baseline"),
    "Metric.baseline_sd": ("primary_metric", "baseline_sd"),
    "Guardrail.threshold": ("guardrails", 0, "threshold"),
    "Effect.value": ("mde", "value"),
    "Allocation.split": ("allocation", "split", "control"),
    "Allocation.expected_daily_users": ("allocation", "expected_daily_users"),
    "RampStep.percent": ("ramp", 0, "percent"),
    "Schedule.hour_seconds": ("schedule", "hour_seconds"),
    "Simulation.seed": ("simulation", "seed"),
    "Simulation.users_per_hour": ("simulation", "users_per_hour"),
    "Simulation.exposure_loss": ("simulation", "exposure_loss", "treatment"),
    "Simulation.context": ("simulation", "context", "country", "US"),
    "SimMetric.mean": ("simulation", "metrics", "checkout_conv", "mean"),
    "SimMetric.sd": ("simulation", "metrics", "checkout_conv", "sd"),
    "SimMetric.pre_period_correlation": ("simulation", "metrics", "checkout_conv", "pre_period_correlation"),
    "Shift.value": ("simulation", "effects", "treatment", "checkout_conv", "value"),
    "Degradation.from_hour": ("simulation", "degradations", 0, "from_hour"),
}
"""Model.field -> where FULL_SPEC holds it. The same models hold numbers at more paths (secondary metrics,
guardrail margins, degradation shifts); NUMBER_PATHS adds those."""

NUMBER_PATHS: tuple[FieldPath, ...] = (
    *NUMBER_FIELDS.values(),
    ("secondary_metrics", 0, "baseline"),
    ("guardrails", 0, "margin", "value"),
    ("allocation", "split", "treatment"),
    ("ramp", 1, "percent"),
    ("simulation", "degradations", 0, "shift", "value"),
    ("simulation", "metrics", "error_rate", "mean"),
)


def with_values(changes: dict[FieldPath, Any]) -> dict[str, Any]:
    """A copy of FULL_SPEC with the value at each path replaced, in order (a later path may reach into an earlier
    value, so the values are copied too)."""
    spec = copy.deepcopy(FULL_SPEC)
    for path, value in changes.items():
        node: Any = spec
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = copy.deepcopy(value)
    return spec


def _types(schema: Any) -> set[str]:
    """JSON types a schema node admits, through unions and the values of mappings."""
    if not isinstance(schema, dict):
        return set()
    found = {schema["type"]} if isinstance(schema.get("type"), str) else set()
    inner = [*schema.get("anyOf", []), schema.get("additionalProperties"),
             *schema.get("patternProperties", {}).values()]
    return found.union(*(_types(node) for node in inner))


def schema_number_fields() -> set[str]:
    """Model.field for every field of the spec's JSON Schema that takes numbers but not booleans (a treatment's
    config values may be either, so treatment_spec is not one)."""
    schema = ExperimentSpec.model_json_schema()
    models = {"ExperimentSpec": schema, **schema["$defs"]}
    return {f"{model}.{name}" for model, body in models.items() for name, node in body.get("properties", {}).items()
            if _types(node) & {"number", "integer"} and "boolean" not in _types(node)}
