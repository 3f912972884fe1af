"""The ten tool activities over in-memory adapters (tests/activities/fakes.py), in Temporal's ActivityEnvironment.

No server: each tool runs with args the planner proposed and `verify` resolved, as the workflow calls it, and its
receipt is checked against the call and against what the fake adapter holds.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from temporalio import activity
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

import activities.tools as tools_module
from abrollout.contracts.records import DecisionState
from abrollout.contracts.spec import ExperimentSpec
from abrollout.contracts.tools import (
    CheckResult,
    MetricsReading,
    OpenTicketArgs,
    RegisterExperimentArgs,
    ToolCall,
    ToolName,
    ToolProposal,
    ToolReceipt,
)
from abrollout.contracts.verdicts import CheckInput, MetricStats
from abrollout.flags.evaluate import TOTAL_WEIGHT
from abrollout.flags.states import allocation_state
from abrollout.plan.planner import (
    ExperimentPlan,
    check_proposal,
    closing_proposals,
    plan,
    snapshot_proposal,
    ticket_proposal,
    without_payload,
)
from abrollout.plan.verify import verify
from abrollout.report.dashboard import render_dashboard
from abrollout.report.render import dashboard_data
from abrollout.run.state import RunState
from abrollout.spec.loader import parse_text, validate_raw
from abrollout.stats.checkpoint import evaluate_check
from activities.tools import TOOLS, Tools
from adapters.protocols import AdapterRefusal, Change, ConcurrencyRefused, MetricsSnapshot
from tests.activities.fakes import EMPTY_READING, FakeFlags, Fakes, FakeTickets, FakeTsdb

STEADY = Path(__file__).resolve().parents[2] / "examples" / "golden" / "steady.yaml"


@pytest.fixture(scope="module")
def spec() -> ExperimentSpec:
    validation = validate_raw(parse_text(STEADY.read_text(), str(STEADY)))
    assert validation.spec is not None, [str(p) for p in validation.problems]
    return validation.spec


@pytest.fixture(scope="module")
def experiment(spec: ExperimentSpec) -> ExperimentPlan:
    return plan(spec)


@pytest.fixture
def fakes() -> Fakes:
    return Fakes()


@dataclass
class Run:
    """Proposals executed as the workflow executes them: verified against the refs so far, called with the
    resolved args, and an ok receipt's ref kept for later placeholders and preconditions."""

    plan: ExperimentPlan
    tools: Tools
    env: ActivityEnvironment = field(default_factory=ActivityEnvironment)
    refs: dict[str, str] = field(default_factory=dict)

    def call(self, proposal: ToolProposal) -> ToolCall[Any]:
        return ToolCall.answering(proposal, verify(proposal, self.refs, "running", False))

    async def execute(self, proposal: ToolProposal) -> tuple[ToolCall[Any], ToolReceipt]:
        call = self.call(proposal)
        receipt = await self.env.run(TOOLS[proposal.name], self.tools, call)
        if receipt.ok:
            self.refs[proposal.step] = receipt.ref
        return call, receipt

    async def set_up(self, through: str) -> None:
        """The plan's setup steps up to and including `through`, each one ok."""
        for proposal in self.plan.setup:
            _, receipt = await self.execute(proposal)
            assert receipt.ok, receipt.message
            if proposal.step == through:
                return


def run_of(experiment: ExperimentPlan, fakes: Fakes, **options: Any) -> Run:
    return Run(experiment, fakes.tools(**options))


def closing(experiment: ExperimentPlan, step: str) -> ToolProposal:
    """A closing proposal by its step name: promote (of the treatment), rollback or stop."""
    proposals = [*closing_proposals(experiment, DecisionState.promote, "treatment won", arm="treatment"),
                 *closing_proposals(experiment, DecisionState.rollback, "harm on the primary")]
    return next(p for p in proposals if p.step == step)


def proposal_of(experiment: ExperimentPlan, step: str) -> ToolProposal:
    setup = {p.step: p for p in experiment.setup}
    return setup[step] if step in setup else closing(experiment, step)


def assert_receipt(receipt: ToolReceipt, call: ToolCall[Any], ref: str, *, ok: bool = True) -> None:
    """The receipt names the call it answers and carries the outside system's id."""
    assert call.tool is not None
    assert (receipt.tool, receipt.step, receipt.idempotency_key) == (call.tool.value, call.step, call.idempotency_key)
    assert (receipt.ok, receipt.ref) == (ok, ref), receipt.message


async def refused(run: Run, proposal: ToolProposal) -> ApplicationError:
    with pytest.raises(ApplicationError) as raised:
        await run.execute(proposal)
    assert raised.value.non_retryable
    return raised.value


# ---- RegisterExperiment, CreateFlag, StartRun --------------------------------------------------------------

async def test_register_experiment_stores_the_args_under_the_key(experiment: ExperimentPlan, fakes: Fakes) -> None:
    run = run_of(experiment, fakes)
    call, receipt = await run.execute(experiment.setup[0])
    assert_receipt(receipt, call, fakes.registry.by_key[call.idempotency_key])
    assert fakes.registry.experiments[receipt.ref].args == call.args
    assert receipt.data == {"analysis": experiment.analysis.model_dump(mode="json")}
    _, again = await run.execute(experiment.setup[0])
    assert again == receipt and len(fakes.registry.experiments) == 1


async def test_a_call_scheduled_by_the_release_before_is_answered_under_the_activitys_own_name(
        experiment: ExperimentPlan, fakes: Fakes) -> None:
    """Rolling upgrade: a workflow task of the release before scheduled the call without `tool`."""
    run = run_of(experiment, fakes)
    call = run.call(experiment.setup[0])
    old = ToolCall[RegisterExperimentArgs].model_validate(call.model_dump(mode="json", exclude={"tool"}))
    receipt = await run.env.run(TOOLS[ToolName.RegisterExperiment], run.tools, old)
    assert_receipt(receipt, call, fakes.registry.by_key[call.idempotency_key])


@pytest.mark.parametrize(("change", "is_refused"), [
    ({}, True),
    ({"simulation": None, "hour_seconds": 60.0}, True),
    ({"simulation": None}, False),
], ids=["simulated-traffic", "fast-clock", "real-clock"])
async def test_an_accelerated_clock_is_a_policy_refusal_where_the_adapters_do_not_allow_it(
        experiment: ExperimentPlan, fakes: Fakes, change: dict[str, Any], is_refused: bool) -> None:
    register = experiment.setup[0]
    assert isinstance(register.args, RegisterExperimentArgs)
    proposal = register.model_copy(update={"args": register.args.model_copy(update=change)})
    run = run_of(experiment, fakes, accelerated_clock_allowed=False)
    if not is_refused:
        _, receipt = await run.execute(proposal)
        assert receipt.ok
        return
    error = await refused(run, proposal)
    assert error.type == "PolicyRefusal" and "clock.1" in error.message
    assert fakes.registry.experiments == {}


async def test_create_flag_reads_the_flag_back(experiment: ExperimentPlan, fakes: Fakes) -> None:
    run = run_of(experiment, fakes)
    await run.set_up(through="register")
    call, receipt = await run.execute(experiment.setup[1])
    assert_receipt(receipt, call, fakes.flags.changes[call.idempotency_key].change_id)
    assert receipt.message == "flag created and read back"
    assert fakes.flags.flags[experiment.flag_key].enabled is False, "created without exposure"


async def test_a_created_flag_that_does_not_read_back_is_not_ok(experiment: ExperimentPlan, fakes: Fakes) -> None:
    run = run_of(experiment, fakes)
    await run.set_up(through="register")
    fakes.flags.served[experiment.flag_key] = None
    call, receipt = await run.execute(experiment.setup[1])
    assert_receipt(receipt, call, fakes.flags.changes[call.idempotency_key].change_id, ok=False)
    assert receipt.message == "flag not found on read-back"
    assert "flag" not in run.refs


async def test_start_run_gets_the_registered_exp_id(experiment: ExperimentPlan, fakes: Fakes, spec: ExperimentSpec
                                                    ) -> None:
    run = run_of(experiment, fakes)
    await run.set_up(through="register")
    call, receipt = await run.execute(experiment.setup[2])
    assert_receipt(receipt, call, fakes.registry.by_key[call.idempotency_key])
    assert fakes.registry.runs[receipt.ref] == (run.refs["register"], f"{experiment.exp_key}-run",
                                                spec.allocation.population)


# ---- flag changes: AllocateTraffic, PromoteVariant, RollbackVariant ------------------------------------------

async def test_allocate_traffic_applies_the_split_once_per_key(experiment: ExperimentPlan, fakes: Fakes) -> None:
    run = run_of(experiment, fakes)
    await run.set_up(through="run")
    call, receipt = await run.execute(experiment.setup[3])
    assert_receipt(receipt, call, fakes.flags.changes[call.idempotency_key].change_id)
    served = allocation_state(call.args)
    assert fakes.flags.flags[experiment.flag_key] == served
    assert receipt.data == {"read_back": served.model_dump(mode="json"), "replayed": False}
    _, again = await run.execute(experiment.setup[3])
    assert again.ref == receipt.ref and again.data is not None and again.data["replayed"] is True
    assert "already applied under this key" in again.message and len(fakes.flags.changes) == 2


@pytest.mark.parametrize(("step", "arm"), [("promote", "treatment"), ("rollback", "control")])
async def test_promote_and_rollback_serve_one_arm_to_the_tested_population(
        experiment: ExperimentPlan, fakes: Fakes, step: str, arm: str) -> None:
    run = run_of(experiment, fakes)
    await run.set_up(through="allocate-0")
    allocated = fakes.flags.flags[experiment.flag_key].strategies[0]
    call, receipt = await run.execute(closing(experiment, step))
    assert_receipt(receipt, call, fakes.flags.changes[call.idempotency_key].change_id)
    strategy = fakes.flags.flags[experiment.flag_key].strategies[0]
    assert [(v.name, v.weight) for v in strategy.variants] == [(arm, TOTAL_WEIGHT)] and strategy.rollout == 100
    assert (strategy.group_id, strategy.constraints) == (allocated.group_id, allocated.constraints)
    assert call.args.reason in fakes.flags.reasons[call.idempotency_key]


@pytest.mark.parametrize(("step", "after"), [("allocate-0", "run"), ("promote", "allocate-0"),
                                             ("rollback", "allocate-0")])
async def test_a_flag_change_that_does_not_read_back_is_not_ok(experiment: ExperimentPlan, fakes: Fakes, step: str,
                                                               after: str) -> None:
    """A provider that acknowledges the change but keeps serving the old state (receipts.1)."""
    run = run_of(experiment, fakes)
    await run.set_up(through=after)
    before = fakes.flags.flags[experiment.flag_key]
    fakes.flags.served[experiment.flag_key] = before
    call, receipt = await run.execute(proposal_of(experiment, step))
    assert_receipt(receipt, call, fakes.flags.changes[call.idempotency_key].change_id, ok=False)
    assert receipt.message.startswith(f"read-back mismatch on {experiment.flag_key}")
    assert receipt.data is not None and receipt.data["observed"] == before.model_dump(mode="json")
    assert receipt.data["expected"] == fakes.flags.flags[experiment.flag_key].model_dump(mode="json")
    assert step not in run.refs


def _lose_the_flag(fakes: Fakes, experiment: ExperimentPlan) -> None:
    del fakes.flags.flags[experiment.flag_key]


def _forget_the_experiment(fakes: Fakes, experiment: ExperimentPlan) -> None:
    fakes.registry.experiments.clear()


def _no_strategy(fakes: Fakes, experiment: ExperimentPlan) -> None:
    """The flag exists but was never allocated: there is nothing to promote or roll back."""


@pytest.mark.parametrize(("after", "lose", "propose"), [
    ("run", _lose_the_flag, lambda p: proposal_of(p, "allocate-0")),
    ("allocate-0", _forget_the_experiment, lambda p: check_proposal(p, "guardrail", 1, 3600)),
    ("run", _no_strategy, lambda p: proposal_of(p, "rollback")),
], ids=["flag-provider", "registry", "flag-without-strategy"])
async def test_what_does_not_exist_is_not_found_and_not_retried(
        experiment: ExperimentPlan, fakes: Fakes, after: str, lose: Callable[[Fakes, ExperimentPlan], None],
        propose: Callable[[ExperimentPlan], ToolProposal]) -> None:
    run = run_of(experiment, fakes)
    await run.set_up(through=after)
    lose(fakes, experiment)
    assert (await refused(run, propose(experiment))).type == "NotFound"


# ---- CheckMetrics ------------------------------------------------------------------------------------------

def _mean(n: int, mean: float, sd: float) -> MetricStats:
    return MetricStats(n=n, sum=n * mean, sum_sq=n * (sd**2 + mean**2))


def _rate(n: int, events: int) -> MetricStats:
    return MetricStats(n=n, sum=float(events), sum_sq=float(events))


READING = MetricsSnapshot(
    snapshot_id="snap-7", assignments={"control": 500, "treatment": 520},
    metrics={"engagement": {"control": _mean(480, 4.0, 1.0), "treatment": _mean(500, 4.12, 1.0)},
             "error_rate": {"control": _rate(500, 5), "treatment": _rate(520, 7)}},
    queries=("SELECT arm, count(*) FROM exposures GROUP BY arm",), freshest_event_seconds=172_000.0)
AT = 2 * 86_400
FIRST_LOOK = [{"control": 230, "treatment": 245}]


@pytest.mark.parametrize(("kind", "index"), [("guardrail", 48), ("analysis", 2)])
async def test_check_metrics_returns_the_verdict_of_the_statistics_on_the_numbers_read(
        experiment: ExperimentPlan, fakes: Fakes, kind: str, index: int) -> None:
    fakes.metrics.reading = READING
    run = run_of(experiment, fakes)
    await run.set_up(through="allocate-0")
    prior = FIRST_LOOK if kind == "analysis" else []
    call, receipt = await run.execute(check_proposal(experiment, kind, index, AT, prior_look_sizes=prior))
    assert_receipt(receipt, call, READING.snapshot_id)
    assert fakes.metrics.asked == [(run.refs["register"], run.refs["run"], AT, ["engagement", "error_rate"])]
    expected = evaluate_check(experiment.analysis, CheckInput(
        kind=kind, look=index if kind == "analysis" else 0, primary=READING.metrics["engagement"],
        guardrail_stats={"error_rate": READING.metrics["error_rate"]}, assignments=READING.assignments,
        prior_look_sizes=tuple(prior), data_age_seconds=800.0))
    assert not expected.no_data
    assert receipt.check == CheckResult(
        verdict=expected, queries=list(READING.queries),
        snapshot=MetricsReading(assignments=READING.assignments, metrics=READING.metrics,
                                freshest_event_seconds=READING.freshest_event_seconds))
    assert receipt.data is None and receipt.message == f"{kind} check {index} at 48h"


@pytest.mark.parametrize(("reading", "reason"), [
    (EMPTY_READING, "no assignments and no guardrail data"),
    (dataclasses.replace(READING, freshest_event_seconds=AT - 4 * 3600.0), "stale data: "),
], ids=["empty", "stale"])
async def test_a_check_without_usable_data_says_so_in_its_receipt(
        experiment: ExperimentPlan, fakes: Fakes, reading: MetricsSnapshot, reason: str) -> None:
    fakes.metrics.reading = reading
    run = run_of(experiment, fakes)
    await run.set_up(through="allocate-0")
    call, receipt = await run.execute(check_proposal(experiment, "guardrail", 48, AT))
    assert_receipt(receipt, call, reading.snapshot_id)
    assert receipt.check is not None and receipt.check.verdict.no_data_reason.startswith(reason)
    assert receipt.message == f"guardrail check 48 at 48h: no data ({receipt.check.verdict.no_data_reason})"


# ---- StopRun, SnapshotDashboard, OpenTicket ----------------------------------------------------------------

async def test_stop_run_stops_the_run_that_was_started(experiment: ExperimentPlan, fakes: Fakes) -> None:
    run = run_of(experiment, fakes)
    await run.set_up(through="run")
    call, receipt = await run.execute(closing(experiment, "stop"))
    assert_receipt(receipt, call, fakes.registry.by_key[call.idempotency_key])
    assert fakes.registry.stops[receipt.ref] == (run.refs["run"], call.args.reason)
    assert receipt.message == f"run stopped: {call.args.reason}"


@pytest.mark.parametrize("tsdb", [None, FakeTsdb()], ids=["no-tsdb", "tsdb"])
async def test_snapshot_dashboard_publishes_the_rendered_page(
        experiment: ExperimentPlan, fakes: Fakes, spec: ExperimentSpec, tsdb: FakeTsdb | None) -> None:
    """Dashboards are content-addressed, so the store gets the page, not the key."""
    run = run_of(experiment, fakes, tsdb=tsdb)
    await run.set_up(through="run")
    data = dashboard_data(RunState(spec=spec, plan=experiment), "final")
    call, receipt = await run.execute(snapshot_proposal(experiment, "snapshot-final", data))
    assert_receipt(receipt, call, next(iter(fakes.dashboards.pages)))
    assert fakes.dashboards.pages[receipt.ref] == (render_dashboard(data), experiment.exp_key, "final")
    message = f"final snapshot of {experiment.exp_key}"
    if tsdb is None:
        assert (receipt.message, receipt.data) == (message, None)
    else:
        snapshot = f"tsdb-{tsdb.taken}"
        assert (receipt.message, receipt.data) == (f"{message}; metrics TSDB snapshot {snapshot}",
                                                   {"tsdb_snapshot": snapshot})


async def test_a_dashboard_digest_cannot_be_published(experiment: ExperimentPlan, fakes: Fakes,
                                                      spec: ExperimentSpec) -> None:
    run = run_of(experiment, fakes)
    await run.set_up(through="run")
    data = dashboard_data(RunState(spec=spec, plan=experiment), "final")
    error = await refused(run, without_payload(snapshot_proposal(experiment, "snapshot-final", data)))
    assert error.type == "BadToolArgs" and fakes.dashboards.pages == {}


async def test_open_ticket_files_the_ticket_under_the_key(experiment: ExperimentPlan, fakes: Fakes) -> None:
    run = run_of(experiment, fakes)
    await run.set_up(through="register")
    proposal = ticket_proposal(experiment, "ticket", "Guardrail stop", "error_rate above 5%", "high")
    call, receipt = await run.execute(proposal)
    assert_receipt(receipt, call, fakes.tickets.tickets[call.idempotency_key][0])
    assert fakes.tickets.tickets[call.idempotency_key][1] == call.args
    assert receipt.message == "high: Guardrail stop"


# ---- the `tool` decorator and the registry of tools --------------------------------------------------------

def _invalid_ticket() -> ValidationError:
    try:
        OpenTicketArgs.model_validate({})
    except ValidationError as exc:
        return exc
    raise AssertionError("empty ticket args validated")


@pytest.mark.parametrize(("refusal", "error_type", "message"), [
    (ConcurrencyRefused("domain ui is full"), "PolicyRefusal", "domain ui is full"),
    (AdapterRefusal("401 bad token"), "AdapterRefusal", "401 bad token"),
    (LookupError("no such project"), "NotFound", "no such project"),
    (_invalid_ticket(), "BadToolArgs", f"bad OpenTicket args: {_invalid_ticket().error_count()} errors"),
], ids=["concurrency", "adapter", "lookup", "validation"])
async def test_refusals_become_non_retryable_errors_of_their_type(
        experiment: ExperimentPlan, refusal: Exception, error_type: str, message: str) -> None:
    fakes = Fakes(tickets=FakeTickets(refusal=refusal))
    run = run_of(experiment, fakes)
    await run.set_up(through="register")
    error = await refused(run, ticket_proposal(experiment, "ticket", "t", "d", "low"))
    assert (error.type, error.message) == (error_type, message)


@dataclass
class StalledFlags(FakeFlags):
    """Creates a flag only once the activity has heartbeated: a call that outlives a heartbeat interval."""

    heartbeat: asyncio.Event = field(default_factory=asyncio.Event)

    async def create_flag(self, flag_key: str, description: str, idempotency_key: str) -> Change:
        await self.heartbeat.wait()
        return await super().create_flag(flag_key, description, idempotency_key)


async def test_a_long_call_heartbeats_meanwhile(experiment: ExperimentPlan, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tools_module, "HEARTBEAT_EVERY_SECONDS", 0.01)
    flags = StalledFlags()
    run = run_of(experiment, Fakes(flags=flags))
    await run.set_up(through="register")
    run.env.on_heartbeat = lambda *details: flags.heartbeat.set()
    _, receipt = await asyncio.wait_for(run.execute(experiment.setup[1]), timeout=10)
    assert receipt.ok


def test_every_tool_has_an_activity_named_after_it(fakes: Fakes) -> None:
    assert set(TOOLS) == set(ToolName)
    for name, method in TOOLS.items():
        assert activity._Definition.must_from_callable(method).name == name.value
        assert getattr(Tools, method.__name__) is method
    registered = [activity._Definition.must_from_callable(m).name for m in fakes.tools().all()]
    assert registered == [name.value for name in TOOLS]
