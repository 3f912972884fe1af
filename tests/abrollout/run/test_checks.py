"""From a CheckMetrics receipt to a checkpoint and a decision (`assess_check`), without Temporal.

Verdicts come from `evaluate_check` on hand-made sufficient statistics, never from hand-written verdict JSON, so
these tests stay true when the statistics change; they pin what the assessment does with a verdict.
"""

from __future__ import annotations

from typing import Any

import pytest

from abrollout.contracts.records import DecisionState
from abrollout.contracts.tools import CheckResult, MetricsReading, ToolReceipt
from abrollout.contracts.verdicts import CheckInput, CheckKind, MetricStats
from abrollout.plan.planner import plan
from abrollout.policy import cite
from abrollout.run.checks import assess_check
from abrollout.run.state import RunState
from abrollout.spec.loader import check_raw
from abrollout.stats.checkpoint import evaluate_check
from tests.conftest import BASE_SPEC

LIFT = {"control": 1000, "treatment": 1300}
"""Conversions out of 10,000 per arm: +30% on checkout_conv, far past any boundary and the promote floor."""
EVEN = {"control": 10_000, "treatment": 10_000}


@pytest.fixture
def state() -> RunState:
    spec = check_raw(dict(BASE_SPEC)).spec
    assert spec is not None
    return RunState(spec=spec, plan=plan(spec))


def _rate(n: int, events: int) -> MetricStats:
    return MetricStats(n=n, sum=float(events), sum_sq=float(events))


def _per_arm(events: dict[str, int], n: int = 10_000) -> dict[str, MetricStats]:
    return {arm: _rate(n, count) for arm, count in events.items()}


def _receipt(state: RunState, kind: CheckKind, *, conversions: dict[str, int] = LIFT,
             errors: dict[str, int] | None = None, assignments: dict[str, int] = EVEN) -> ToolReceipt:
    """An ok CheckMetrics receipt holding the verdict the statistics give on these numbers."""
    primary = _per_arm(conversions)
    guardrail = {"error_rate": _per_arm(errors or {"control": 50, "treatment": 50})}
    data = CheckInput(kind=kind, look=1 if kind == "analysis" else 0, primary=primary, guardrail_stats=guardrail,
                      assignments=assignments)
    verdict = evaluate_check(state.plan.analysis, data)
    reading = MetricsReading(assignments=assignments, metrics={"checkout_conv": primary, **guardrail})
    return ToolReceipt(tool="CheckMetrics", ok=True, ref="snap-1", message=f"{kind} check", step=f"check-{kind}-1",
                       check=CheckResult(verdict=verdict, snapshot=reading, queries=["SELECT 1"]))


@pytest.mark.parametrize("at_cap", [False, True], ids=["mid-run", "at-cap"])
@pytest.mark.parametrize("receipt", [
    ToolReceipt(tool="CheckMetrics", ok=False, ref="failed", message="metrics source unreachable"),
    ToolReceipt(tool="CheckMetrics", ok=True, ref="snap-9", message="metrics source unreachable"),
], ids=["failed", "without-check"])
def test_a_receipt_without_a_usable_verdict_decides_nothing(state: RunState, receipt: ToolReceipt,
                                                            at_cap: bool) -> None:
    assessment = assess_check(state, "analysis", 3, 3 * 86_400, receipt, at_cap=at_cap)
    expected = DecisionState.inconclusive if at_cap else DecisionState.running
    checkpoint = assessment.checkpoint
    assert (assessment.state, checkpoint.state, assessment.arm) == (expected, expected, None)
    assert (checkpoint.kind, checkpoint.index, checkpoint.at_hours, checkpoint.ref) == ("analysis", 3, 72, receipt.ref)
    assert checkpoint.no_data and checkpoint.summary == "no verdict: metrics source unreachable"
    assert (checkpoint.breaches, checkpoint.sizes, checkpoint.effects) == ([], {}, {})
    assert assessment.citations == [cite("data.1"), *([cite("decision.4")] if at_cap else [])]


def test_a_breached_guardrail_stops_and_is_named(state: RunState) -> None:
    receipt = _receipt(state, "guardrail", errors={"control": 50, "treatment": 400})
    assessment = assess_check(state, "guardrail", 5, 5 * 3600, receipt, at_cap=False)
    assert assessment.state is DecisionState.guardrail_stop
    assert assessment.checkpoint.breaches == ["error_rate"]
    assert assessment.checkpoint.guardrails == {"error_rate": {"control": 0.005, "treatment": 0.04}}
    assert cite("guardrail.2") in assessment.citations and "BREACH" in assessment.checkpoint.summary


def test_a_sample_ratio_mismatch_is_a_breach(state: RunState) -> None:
    receipt = _receipt(state, "guardrail", assignments={"control": 10_000, "treatment": 11_000})
    assert receipt.check is not None and receipt.check.verdict.srm is not None
    assessment = assess_check(state, "guardrail", 5, 5 * 3600, receipt, at_cap=False)
    assert assessment.state is DecisionState.guardrail_stop
    assert assessment.checkpoint.breaches == ["srm"]
    assert assessment.checkpoint.srm_p == receipt.check.verdict.srm.p_value
    assert assessment.checkpoint.assignments == {"control": 10_000, "treatment": 11_000}
    assert cite("srm.1") in assessment.citations


def test_an_analysis_look_that_crosses_the_boundary_promotes(state: RunState) -> None:
    receipt = _receipt(state, "analysis")
    assessment = assess_check(state, "analysis", 1, 86_400, receipt, at_cap=False)
    assert (assessment.state, assessment.arm) == (DecisionState.promote, "treatment")
    checkpoint = assessment.checkpoint
    assert (checkpoint.breaches, checkpoint.no_data, checkpoint.sizes) == ([], False, EVEN)
    assert checkpoint.effects["treatment"].estimate == pytest.approx(0.03)
    assert cite("decision.2") in assessment.citations


@pytest.mark.parametrize("at_cap", [False, True], ids=["mid-run", "at-cap"])
def test_a_guardrail_check_never_promotes_on_the_primary(state: RunState, at_cap: bool) -> None:
    receipt = _receipt(state, "guardrail")
    assert receipt.check is not None and receipt.check.verdict.arms[0].crossed_efficacy, "the lift is significant"
    assessment = assess_check(state, "guardrail", 24, 86_400, receipt, at_cap=at_cap)
    assert assessment.state is (DecisionState.inconclusive if at_cap else DecisionState.running)
    assert assessment.arm is None and assessment.checkpoint.effects == {}


@pytest.mark.parametrize("kind", ["guardrail", "analysis"])
def test_a_receipt_recorded_before_check_existed_is_assessed_the_same(state: RunState, kind: CheckKind) -> None:
    """Older receipts carried the verdict, snapshot and queries inside `data`."""
    receipt = _receipt(state, kind, errors={"control": 50, "treatment": 400} if kind == "guardrail" else None)
    recorded: dict[str, Any] = receipt.model_dump(mode="json", exclude={"check"})
    recorded["data"] = receipt.model_dump(mode="json")["check"]
    old = ToolReceipt.model_validate(recorded)
    assert (old.check, old.data) == (receipt.check, None)
    assert assess_check(state, kind, 1, 86_400, old, at_cap=False) == assess_check(state, kind, 1, 86_400, receipt,
                                                                                   at_cap=False)
