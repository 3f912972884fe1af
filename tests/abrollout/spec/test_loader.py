"""The one check behind `validate` and `start` (`validate_raw`): numbers are numbers, a proportion is a rate, and
a value the power calculation cannot use is an error naming its field, never an exception."""

from __future__ import annotations

from typing import Any

import pytest

from abrollout.contracts.spec import Effect, EffectKind
from abrollout.spec.loader import check_text, validate_raw
from abrollout.spec.problems import Level, dotted
from abrollout.stats.boundaries import Spending
from abrollout.stats.power import PowerInputError, plan_sample_size
from tests.support.spec_numbers import FULL_SPEC, NUMBER_FIELDS, FieldPath, schema_number_fields, with_values


def _errors(raw: dict[str, Any]) -> dict[str, str]:
    """Path -> 'found; fix' of every error, for a spec that must be refused with nothing to start."""
    check = validate_raw(raw)
    assert not check.ok and check.spec is None and check.plan is None
    return {p.path: f"{p.found}; {p.fix}" for p in check.problems if p.level is Level.error}


def _proportion(baseline: float, goal: str = "increase") -> dict[FieldPath, Any]:
    return {("primary_metric",): {"name": "checkout_conv", "kind": "proportion", "goal": goal, "baseline": baseline}}


def test_the_spec_with_every_number_plans() -> None:
    check = validate_raw(FULL_SPEC)
    assert check.ok, [str(p) for p in check.problems]
    assert check.power is not None and check.power.reachable


def test_every_number_field_of_the_spec_is_covered() -> None:
    """A new int or float field must join tests/support/spec_numbers.py, so fuzzing and boolean tests reach it."""
    assert schema_number_fields() == set(NUMBER_FIELDS)


@pytest.mark.parametrize("path", [("ramp", 1, "at"), ("schedule", "guardrail_check_every"),
                                  ("schedule", "analysis_every")], ids=str)
def test_a_boolean_is_no_duration_either(path: FieldPath) -> None:
    errors = _errors(with_values({path: True}))
    assert "a duration like '1h'" in errors[dotted(path)]


def test_whole_numbers_and_floats_read_as_before() -> None:
    """An int where a float is expected, and 14.0 where an int is, still read (booleans alone are refused)."""
    check = check_text("\n".join([
        "domain: ui",
        "treatment_spec: {control: {enabled: false}, treatment: {enabled: true, size: 2}}",
        "primary_metric: checkout_conv",
        "guardrails: [{name: error_rate, threshold: 1, direction: '<'}]",
        "mde: {kind: relative, value: 5}",
        "max_duration_days: 14.0",
        "max_concurrent: 5",
        "schedule: {hour_seconds: 60}",
    ]))
    assert check.ok, [str(p) for p in check.problems]
    assert check.spec is not None
    assert check.spec.max_duration_days == 14 and isinstance(check.spec.max_duration_days, int)
    assert check.spec.guardrails[0].threshold == 1.0 and check.spec.schedule.hour_seconds == 60.0
    assert check.spec.treatment_spec["treatment"] == {"enabled": True, "size": 2}


@pytest.mark.parametrize("baseline", [1.0, -5, 30, 0, 1e308])
def test_a_proportion_baseline_is_a_rate(baseline: float) -> None:
    errors = _errors(with_values(_proportion(baseline)))
    assert "strictly between 0 and 1" in errors["primary_metric.baseline"]


def test_a_secondary_proportion_baseline_is_a_rate_too() -> None:
    errors = _errors(with_values({("secondary_metrics", 0, "baseline"): 20}))
    assert "strictly between 0 and 1" in errors["secondary_metrics[0].baseline"]


@pytest.mark.parametrize(("goal", "mde", "limit"), [
    ("increase", {"kind": "absolute", "value": 0.7}, "below 0.7 (absolute)"),
    ("increase", {"kind": "absolute", "value": 1e308}, "below 0.7 (absolute)"),
    ("increase", {"kind": "relative", "value": 100}, None),
    ("decrease", {"kind": "absolute", "value": 0.3}, "below 0.3 (absolute)"),
    ("decrease", {"kind": "relative", "value": 100}, "below 100 (relative)"),
    ("decrease", {"kind": "absolute", "value": 0.29}, None),
])
def test_the_mde_keeps_the_treatment_rate_a_proportion(goal: str, mde: dict[str, Any], limit: str | None) -> None:
    raw = with_values({**_proportion(0.3, goal), ("mde",): mde})
    if limit is None:
        assert validate_raw(raw).ok
    else:
        assert limit in _errors(raw)["mde.value"]


def test_a_relative_mde_needs_a_baseline_to_be_a_percent_of() -> None:
    errors = _errors(with_values({("primary_metric", "baseline"): 0}))
    assert "absolute" in errors["mde.kind"]


@pytest.mark.parametrize(("changes", "path", "words"), [
    ({**_proportion(0.3), ("mde",): {"kind": "absolute", "value": 1e-300}}, "mde.value", "infinite sample"),
    ({**_proportion(0.3), ("mde",): {"kind": "relative", "value": 1e-300}}, "mde.value", "infinite sample"),
    ({("primary_metric", "baseline_sd"): 1e150, ("mde",): {"kind": "absolute", "value": 1e-150}}, "mde.value",
     "infinite sample"),
    ({("primary_metric", "baseline"): 1e308}, "mde.value", "no users at all"),
    ({("primary_metric", "baseline_sd"): 1e308}, "primary_metric.baseline_sd", "(the variance) is inf"),
    ({("primary_metric", "baseline_sd"): 1e-200}, "primary_metric.baseline_sd", "(the variance) is 0"),
], ids=["absolute-mde-1e-300", "relative-mde-1e-300", "mde-tiny-against-sd", "baseline-1e308", "sd-1e308",
        "sd-1e-200"])
def test_what_only_the_power_calculation_finds_is_an_error_at_its_field(
        changes: dict[FieldPath, Any], path: str, words: str) -> None:
    errors = _errors(with_values(changes))
    assert list(errors) == [path] and words in errors[path]


def test_plan_sample_size_names_the_input_it_cannot_use() -> None:
    with pytest.raises(PowerInputError) as refused:
        plan_sample_size(baseline_mean=1.0, baseline_sd=None, mde=Effect(kind=EffectKind.relative, value=5),
                         alpha=0.05, power=0.8, split=[50, 50], expected_daily_users=None, max_days=14,
                         spending=Spending("hwang_shih_decani", -4.0), looks=14)
    assert refused.value.argument == "baseline_mean" and "between 0 and 1" in refused.value.fix
