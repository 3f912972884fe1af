"""Long experiments: 14 days of hourly checks in seconds, and continue-as-new carrying the whole state."""

from __future__ import annotations

import time
from pathlib import Path
from typing import ClassVar

from temporalio.testing import WorkflowEnvironment

from abrollout.contracts.records import DecisionState
from abrollout.flags.evaluate import FlagState
from adapters.local import local_adapters
from adapters.local_flags import LocalFlags
from adapters.protocols import Adapters, Change
from client.experiments import start_experiment
from client.history import receipt_trail
from tests.workflows.conftest import Lab, golden_spec
from workers.assembly import build_worker

WARN_EVENTS = 10_240  # Temporal's history-length warning threshold


async def test_a_14_day_experiment_with_hourly_checks_runs_in_seconds(lab: Lab) -> None:
    spec = golden_spec("steady", name="fourteen-days")
    started = time.perf_counter()
    handle = await start_experiment(lab.env.client, spec, lab.task_queue)
    report = await handle.result()
    wall = time.perf_counter() - started
    events = len((await handle.fetch_history()).events)
    print(f"\n14-day experiment: {wall:.1f} s wall, {events} history events ({events / 14:.0f} per simulated day)")
    assert report.decision.state is DecisionState.inconclusive
    assert sum(r.tool == "CheckMetrics" for r in report.receipts) == 14 * 24
    assert [c.index for c in report.monitoring.checkpoints if c.kind == "analysis"] == list(range(1, 15))
    assert events < WARN_EVENTS


async def test_continue_as_new_carries_the_state_and_decides_as_one_run_would(lab: Lab) -> None:
    # Two names (a workflow id is never reused), so users bucket differently: compare the course, not the data.
    single = await (await start_experiment(lab.env.client, golden_spec("no-effect", name="one-run"),
                                           lab.task_queue)).result()
    handle = await start_experiment(lab.env.client, golden_spec("no-effect", name="many-runs"), lab.task_queue,
                                    max_history_events=120)
    chained = await handle.result()
    trail = await receipt_trail(lab.env.client, handle.id)
    assert len({h.run_id for h in trail}) >= 4, "the history limit hook must have continued the run as new"
    assert [(h.receipt.step, h.receipt.tool) for h in trail] == [(r.step, r.tool) for r in chained.receipts]
    assert chained.decision.state is single.decision.state is DecisionState.inconclusive
    assert [(r.step, r.tool, r.ok) for r in chained.receipts] == [(r.step, r.tool, r.ok) for r in single.receipts]
    assert [(c.kind, c.index) for c in chained.monitoring.checkpoints] == [
        (c.kind, c.index) for c in single.monitoring.checkpoints]


class BrokenFlags(LocalFlags):
    """A flag provider that cannot create flags: every later flag step must be blocked, never executed."""

    applied: ClassVar[list[str]] = []

    async def create_flag(self, flag_key: str, description: str, idempotency_key: str) -> Change:
        raise LookupError("flag project 'default' does not exist")

    async def apply(self, flag_key: str, desired: FlagState, idempotency_key: str, reason: str) -> Change:
        BrokenFlags.applied.append(idempotency_key)
        return await super().apply(flag_key, desired, idempotency_key, reason)


async def test_proposals_whose_preconditions_fail_are_blocked_and_never_run(env: WorkflowEnvironment,
                                                                             tmp_path: Path) -> None:
    base = local_adapters(tmp_path)
    adapters = Adapters(flags=BrokenFlags(tmp_path / "flags.sqlite"), registry=base.registry, metrics=base.metrics,
                        dashboards=base.dashboards, tickets=base.tickets)
    async with build_worker(env.client, adapters, task_queue="blocked"):
        report = await (await start_experiment(env.client, golden_spec("steady", name="blocked"), "blocked")).result()
    calls = [(r.step, r.ok, r.ref) for r in report.receipts]
    assert calls[:2] == [("register", True, calls[0][2]), ("flag", False, "failed")]
    blocked = {r.step: r.message for r in report.receipts if r.ref == "blocked"}
    assert set(blocked) == {"stop", "rollback", "snapshot-final"}
    assert "step 'flag' has no ok receipt" in blocked["rollback"] and "exp_policy.v5#verify.1" in blocked["rollback"]
    assert BrokenFlags.applied == []
    assert report.decision.state is DecisionState.guardrail_stop, "an unverified change stops safely"
    assert [r.step for r in report.receipts if r.ok] == ["register", "ticket"]
    tickets = await base.tickets.list("blocked")  # type: ignore[attr-defined]
    assert [t["severity"] for t in tickets] == ["critical"]
