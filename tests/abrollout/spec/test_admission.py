"""Every exp_policy.v5 clause that a spec can break: one accepted and one refused case each."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from abrollout.policy import CLAUSES, POLICY_ID
from abrollout.spec.loader import check_raw
from abrollout.spec.problems import Level
from tests.conftest import BASE_SPEC


def _with(**changes: Any) -> dict[str, Any]:
    spec = copy.deepcopy(BASE_SPEC)
    for dotted, value in changes.items():
        node = spec
        *parents, last = dotted.split("__")
        for part in parents:
            node = node.setdefault(part, {})
        if value is _DELETE:
            node.pop(last, None)
        else:
            node[last] = value
    return spec


_DELETE = object()

REFUSED: list[tuple[str, dict[str, Any], str]] = [
    ("spec.1", _with(mde=_DELETE), "mde"),
    ("spec.1", _with(guardrial=[]), "guardrial"),
    ("arms.1", _with(treatment_spec={"a": {}, "b": {}}), "treatment_spec"),
    ("arms.1", _with(treatment_spec={"control": {}}), "treatment_spec"),
    ("arms.1", _with(treatment_spec={"control": {}, **{f"t{i}": {} for i in range(8)}}), "treatment_spec"),
    ("split.1", _with(allocation__split={"control": 50, "other": 50}), "allocation.split"),
    ("split.1", _with(allocation__split={"control": 50, "treatment": 40}), "allocation.split"),
    ("split.2", _with(allocation__split={"control": 97, "treatment": 3}), "allocation.split.treatment"),
    ("split.3", _with(allocation__split={"control": 50.05, "treatment": 49.95}), "allocation.split.control"),
    ("duration.1", _with(max_duration_days=0), "max_duration_days"),
    ("duration.1", _with(max_duration_days=91), "max_duration_days"),
    ("schedule.1", _with(schedule={"guardrail_check_every": "1m"}), "schedule.guardrail_check_every"),
    ("schedule.1", _with(schedule={"guardrail_check_every": "7h", "analysis_every": "24h"}),
     "schedule.analysis_every"),
    ("schedule.1", _with(schedule={"analysis_every": "5d"}), "schedule.analysis_every"),
    ("schedule.1", _with(max_duration_days=90, schedule={"analysis_every": "12h"}), "schedule.analysis_every"),
    ("mde.1", _with(mde={"kind": "relative", "value": 150}), "mde.value"),
    ("guardrail.1", _with(guardrails=[]), "guardrails"),
    ("guardrail.1", _with(guardrails=[{"name": "e", "threshold": 1, "direction": "<"}] * 2), "guardrails"),
    ("ramp.1", _with(ramp=[{"percent": 10, "at": "1h"}, {"percent": 100, "at": "2h"}]), "ramp[0].at"),
    ("ramp.1", _with(ramp=[{"percent": 50, "at": "0h"}, {"percent": 20, "at": "2h"}]), "ramp[1]"),
    ("ramp.1", _with(ramp=[{"percent": 50, "at": "0h"}, {"percent": 90, "at": "2h"}]), "ramp[1].percent"),
    ("ramp.1", _with(ramp=[{"percent": 50, "at": "0h"}, {"percent": 100, "at": "15d"}]), "ramp[1].at"),
    ("concurrency.1", _with(max_concurrent=0), "max_concurrent"),
    ("concurrency.1", _with(max_concurrent=51), "max_concurrent"),
    ("domain.pricing.1", _with(domain="pricing"), "guardrails"),
    ("domain.prompts.1", _with(domain="prompts"), "guardrails"),
    ("domain.policies.1", _with(domain="policies"), "guardrails"),
    ("domain.ranking.1", _with(domain="ranking"), "guardrails"),
    ("prereg.1", _with(secondary_metrics=["checkout_conv"]), "secondary_metrics"),
]

ACCEPTED: list[tuple[str, dict[str, Any]]] = [
    ("spec.1", _with()),
    ("arms.1", _with(treatment_spec={"control": {}, **{f"t{i}": {} for i in range(7)}})),
    ("split.1", _with(allocation__split={"treatment": 60, "control": 40})),
    ("split.2", _with(allocation__split={"control": 95, "treatment": 5})),
    ("split.3", _with(allocation__split={"control": 33.3, "treatment": 66.7})),
    ("duration.1", _with(max_duration_days=90, schedule={"analysis_every": "1d"})),
    ("schedule.1", _with(schedule={"guardrail_check_every": "30m", "analysis_every": "12h"})),
    ("mde.1", _with(mde={"kind": "absolute", "value": 0.004})),
    ("guardrail.1", _with(guardrails=[{"name": "a", "threshold": 1, "direction": "<"},
                                      {"name": "b", "threshold": 0, "direction": ">"}])),
    ("ramp.1", _with(ramp=[{"percent": 10, "at": "0h"}, {"percent": 100, "at": "2d"}])),
    ("concurrency.1", _with(max_concurrent=50)),
    ("domain.pricing.1", _with(domain="pricing", guardrails=[{"name": "revenue_per_user", "threshold": 0,
                                                              "direction": ">"}])),
    ("domain.prompts.1", _with(domain="prompts", guardrails=[{"name": "defect_rate", "threshold": 0.02,
                                                              "direction": "<"}])),
    ("domain.policies.1", _with(domain="policies", guardrails=[{"name": "safety_incidents", "threshold": 1,
                                                                "direction": "<"}])),
    ("domain.ranking.1", _with(domain="ranking", guardrails=[{"name": "latency_p95", "threshold": 0.3,
                                                              "direction": "<"}])),
]


@pytest.mark.parametrize(("clause", "raw", "path"), REFUSED, ids=[f"{c}-{p}" for c, _, p in REFUSED])
def test_refused_specs_cite_the_clause_and_name_the_field(clause: str, raw: dict[str, Any], path: str) -> None:
    check = check_raw(raw)
    assert not check.ok
    assert check.spec is None
    matching = [p for p in check.problems if p.path == path and p.level is Level.error]
    assert matching, [str(p) for p in check.problems]
    assert any(p.clause == f"{POLICY_ID}#{clause}" for p in matching), [str(p) for p in matching]
    assert all(p.fix for p in check.problems)


@pytest.mark.parametrize(("clause", "raw"), ACCEPTED, ids=[c for c, _ in ACCEPTED])
def test_accepted_specs(clause: str, raw: dict[str, Any]) -> None:
    check = check_raw(raw)
    assert check.ok, [str(p) for p in check.problems]


def test_every_spec_clause_is_exercised() -> None:
    spec_clauses = {c for c in CLAUSES if c.split(".")[0] in
                    {"spec", "arms", "split", "duration", "schedule", "mde", "ramp", "concurrency", "domain"}}
    assert spec_clauses <= {c for c, _, _ in REFUSED}
    assert spec_clauses <= {c for c, _ in ACCEPTED}


def test_accelerated_clock_is_a_warning_citing_clock_1() -> None:
    check = check_raw(_with(schedule={"hour_seconds": 1}))
    assert check.ok
    assert [p.clause for p in check.problems] == [f"{POLICY_ID}#clock.1"]
    assert check.problems[0].level is Level.warning


def test_a_bare_number_mde_is_refused_not_guessed() -> None:
    check = check_raw(_with(mde=0.05))
    assert not check.ok
    (problem,) = [p for p in check.problems if p.path == "mde"]
    assert "relative" in problem.fix and "absolute" in problem.fix


def test_unknown_field_suggests_the_close_name() -> None:
    check = check_raw(_with(guardrial=[]))
    (problem,) = [p for p in check.problems if p.path == "guardrial"]
    assert "did you mean 'guardrails'" in problem.fix


def test_nan_and_infinity_are_refused() -> None:
    check = check_raw(_with(guardrails=[{"name": "e", "threshold": float("nan"), "direction": "<"}]))
    assert any(p.path == "guardrails[0].threshold" and "finite" in p.fix for p in check.problems)


def test_guardrail_direction_is_the_condition_that_must_hold() -> None:
    check = check_raw(_with(guardrails=[{"name": "latency_p95", "threshold": 2.5, "direction": "<"}]))
    assert check.spec is not None
    guardrail = check.spec.guardrails[0]
    assert guardrail.holds(2.4)
    assert not guardrail.holds(2.5)
    assert not guardrail.holds(2.6)
    above = check_raw(_with(guardrails=[{"name": "rev", "threshold": 10, "direction": ">"}])).spec
    assert above is not None
    assert above.guardrails[0].holds(10.5) and not above.guardrails[0].holds(10)


def test_normalisation_makes_defaults_explicit() -> None:
    raw = _with(treatment_spec={"b": {}, "control": {}, "a": {}}, name=_DELETE, hypothesis=_DELETE)
    spec = check_raw(raw).spec
    assert spec is not None
    assert spec.arms == ("control", "b", "a")
    assert spec.allocation.split == {"control": 33.4, "b": 33.3, "a": 33.3}
    assert spec.name is not None and spec.name.startswith("ui-checkout-conv-")
    assert spec.hypothesis and "checkout_conv" in spec.hypothesis
    assert [(s.percent, s.at) for s in spec.ramp] == [(100, 0)]
    again = check_raw(raw).spec
    assert again is not None and again.name == spec.name
