"""Golden scenarios on the time-skipping server: the final report and the exact ordered tool calls."""

from __future__ import annotations

from abrollout.contracts.records import DecisionState
from abrollout.contracts.report import Report
from client.experiments import start_experiment
from client.history import receipt_trail
from tests.workflows.conftest import Lab, golden_spec

SETUP = [("register", "RegisterExperiment"), ("flag", "CreateFlag"), ("run", "StartRun"),
         ("allocate-0", "AllocateTraffic"), ("snapshot-start", "SnapshotDashboard")]


def _calls(report: Report) -> list[tuple[str, str]]:
    return [(r.step, r.tool) for r in report.receipts]


def _split(report: Report) -> tuple[list[tuple[str, str]], list[tuple[str, str]], list[tuple[str, str]]]:
    """(set-up calls, the checks, the calls after the last check)."""
    calls = _calls(report)
    checks = [i for i, (_, tool) in enumerate(calls) if tool == "CheckMetrics"]
    return calls[: checks[0]], calls[checks[0]: checks[-1] + 1], calls[checks[-1] + 1:]


async def _run(lab: Lab, name: str) -> Report:
    handle = await start_experiment(lab.env.client, golden_spec(name), lab.task_queue)
    report = await handle.result()
    trail = await receipt_trail(lab.env.client, handle.id)
    assert [(h.receipt.step, h.receipt.tool) for h in trail] == _calls(report), "history and report disagree"
    assert [h.receipt.ref for h in trail] == [r.ref for r in report.receipts]
    assert all(r.ok for r in report.receipts), [r for r in report.receipts if not r.ok]
    return report


async def test_clear_win_promotes(lab: Lab) -> None:
    report = await _run(lab, "clear-win")
    setup, checks, closing = _split(report)
    assert setup == SETUP
    assert closing == [("promote", "PromoteVariant"), ("stop", "StopRun"), ("snapshot-final", "SnapshotDashboard")]
    assert report.decision.state is DecisionState.promote
    assert report.decision.arm == "treatment"
    assert "exp_policy.v5#decision.2" in report.citations
    assert report.monitoring.checkpoints[-1].kind == "analysis"
    assert len(checks) < 14 * 24, "a clear win must stop before the cap"
    flag = await lab.adapters.flags.read("abr.golden-clear-win")
    assert flag is not None and [v.name for v in flag.strategies[0].variants] == ["treatment"]


async def test_guardrail_breach_on_day_two_stops_rolls_back_and_opens_a_ticket(lab: Lab) -> None:
    report = await _run(lab, "guardrail-breach")
    setup, _, closing = _split(report)
    assert setup == SETUP
    assert closing == [("stop", "StopRun"), ("rollback", "RollbackVariant"), ("ticket", "OpenTicket"),
                       ("snapshot-final", "SnapshotDashboard")]
    assert report.decision.state is DecisionState.guardrail_stop
    breach = report.monitoring.checkpoints[-1]
    assert breach.breaches == ["defect_rate"]
    assert 30 < breach.at_hours <= 48, "the degradation starts at hour 30; the breach is seen on day 2"
    assert "exp_policy.v5#guardrail.2" in report.citations
    flag = await lab.adapters.flags.read("abr.golden-guardrail-breach")
    assert flag is not None and [v.name for v in flag.strategies[0].variants] == ["control"]
    rollback = next(r for r in report.receipts if r.step == "rollback")
    assert "read back and matched" in rollback.message
    tickets = await lab.adapters.tickets.list("golden-guardrail-breach")  # type: ignore[attr-defined]
    assert [t["severity"] for t in tickets] == ["high"]


async def test_sample_ratio_mismatch_is_a_guardrail_stop(lab: Lab) -> None:
    report = await _run(lab, "srm")
    assert report.decision.state is DecisionState.guardrail_stop
    assert report.monitoring.checkpoints[-1].breaches == ["srm"]
    assert "exp_policy.v5#srm.1" in report.citations
    assert _split(report)[2][:3] == [("stop", "StopRun"), ("rollback", "RollbackVariant"), ("ticket", "OpenTicket")]


async def test_no_effect_is_inconclusive_at_the_cap_and_rolls_back(lab: Lab) -> None:
    report = await _run(lab, "no-effect")
    _, checks, closing = _split(report)
    assert len(checks) == 3 * 24, "every hourly check runs until the 3-day cap"
    assert closing == [("rollback", "RollbackVariant"), ("stop", "StopRun"), ("snapshot-final", "SnapshotDashboard")]
    assert report.decision.state is DecisionState.inconclusive
    assert "exp_policy.v5#decision.4" in report.citations
    assert [c.index for c in report.monitoring.checkpoints if c.kind == "analysis"] == [1, 2, 3]


async def test_a_b_n_promotes_the_better_arm_after_the_ramp(lab: Lab) -> None:
    report = await _run(lab, "abn")
    calls = _calls(report)
    assert ("allocate-1", "AllocateTraffic") in calls
    assert calls.index(("allocate-1", "AllocateTraffic")) > calls.index(("check-guardrail-12", "CheckMetrics"))
    assert report.decision.state is DecisionState.promote
    assert report.decision.arm == "ltr_v3"
