"""The pure checks: a spec's metrics against a catalog (defined, kinds agreeing), and which metrics a check asks
the warehouse for."""

from __future__ import annotations

from typing import Any

import pytest

from abrollout.contracts.spec import ExperimentSpec
from abrollout.plan.planner import ExperimentPlan
from abrollout.spec.loader import validate_raw
from abrollout.warehouse.catalog import BUILT_IN, Catalog, MetricDefinition
from abrollout.warehouse.checks import check_catalog, checked_metrics, spec_problems

EVENTS = {"table": "events", "experiment_key": "exp_key", "loaded_at": "loaded_at"}


def validated(raw: dict[str, Any]) -> tuple[ExperimentSpec, ExperimentPlan]:
    check = validate_raw(raw)
    assert check.spec is not None and check.plan is not None, check.problems
    return check.spec, check.plan


def catalog(**metrics: dict[str, Any]) -> Catalog:
    return Catalog(metrics={name: MetricDefinition(**EVENTS, **body) for name, body in metrics.items()})


def test_every_named_metric_must_be_defined_with_its_path(raw_spec: dict[str, Any]) -> None:
    raw_spec["secondary_metrics"] = ["order_value", {"name": "error_rat", "kind": "mean"}]
    spec, _ = validated(raw_spec)
    problems = spec_problems(spec, catalog(checkout_conv={}, error_rat={}), "metrics.yaml")
    assert [(p.path, p.found) for p in problems] == [
        ("secondary_metrics[0]", "metric 'order_value' is not defined in metrics.yaml"),
        ("guardrails[0].name", "metric 'error_rate' is not defined in metrics.yaml")]
    assert problems[1].fix == "did you mean 'error_rat'? define `metrics.error_rate` in metrics.yaml"


def test_the_built_in_catalog_defines_everything(raw_spec: dict[str, Any]) -> None:
    spec, _ = validated(raw_spec)
    assert spec_problems(spec, BUILT_IN, "the built-in catalog") == []


@pytest.mark.parametrize(("spec_kind", "definition_kind", "clash"), [
    ("proportion", "proportion", False),
    ("ratio", "mean", True),
    ("mean", "proportion", True),
    (None, "ratio", False),        # the spec states no kind: nothing to disagree with
    ("proportion", None, False),   # the definition states none
])
def test_kinds_are_compared_only_where_both_state_one(raw_spec: dict[str, Any], spec_kind: str | None,
                                                      definition_kind: str | None, clash: bool) -> None:
    raw_spec["primary_metric"] = {"name": "checkout_conv", **({"kind": spec_kind} if spec_kind else {}),
                                  **({"baseline": 0.1} if spec_kind == "proportion" else {})}
    definition: dict[str, Any] = {"kind": definition_kind} if definition_kind else {}
    if definition_kind == "ratio":
        definition["denominator"] = "error_rate"
    spec, _ = validated(raw_spec)
    problems = spec_problems(spec, catalog(checkout_conv=definition, error_rate={}), "m.yaml")
    assert [p.path for p in problems] == (["primary_metric.kind"] if clash else [])


def test_a_promql_guardrail_is_left_to_prometheus(raw_spec: dict[str, Any]) -> None:
    raw_spec["guardrails"].append({"name": "p99_ms", "threshold": 800, "direction": "<",
                                   "query": "histogram_quantile(0.99, rate(x[$window]))"})
    spec, plan = validated(raw_spec)
    known = catalog(checkout_conv={}, error_rate={})
    assert [p.path for p in spec_problems(spec, known, "m.yaml")] == ["guardrails[1].name"]
    assert spec_problems(spec, known, "m.yaml", prometheus=True) == []
    assert checked_metrics(plan) == ["checkout_conv", "error_rate", "p99_ms"]
    assert checked_metrics(plan, prometheus=True) == ["checkout_conv", "error_rate"]


def test_a_check_asks_for_the_primary_then_the_guardrails_once_each(raw_spec: dict[str, Any]) -> None:
    raw_spec["secondary_metrics"] = ["order_value"]  # reported at the end, never checked
    raw_spec["guardrails"].append({"name": "checkout_conv", "threshold": 0.01, "direction": ">"})
    _, plan = validated(raw_spec)
    assert checked_metrics(plan) == ["checkout_conv", "error_rate"]


def test_a_catalog_from_data_is_the_catalog_when_nothing_is_wrong() -> None:
    check = check_catalog({"dialect": "trino", "metrics": {"revenue": {**EVENTS, "value": "try_cast(v AS double)"}}})
    assert check.problems == [] and check.catalog is not None
    assert check.catalog.metrics["revenue"].value == "try_cast(v AS double)"


def test_a_denominator_problem_is_reported_once_at_its_own_path() -> None:
    check = check_catalog({"metrics": {"r": {**EVENTS, "kind": "ratio", "denominator": "d"}}})
    assert check.catalog is None
    assert [p.path for p in check.problems] == ["metrics.r.denominator"]
