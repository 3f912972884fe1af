"""ExperimentWorkflow: one experiment, from registration to a decision carried out with receipts.

It reads like the runbook: set up, wait on a timer for each scheduled check and ramp step, decide on the recorded
verdicts, carry the decision out in policy order. What woke the loop is read from state, never from comparing the
clock with a due time (docs/reliability.md says why); handlers accept any payload and never raise.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import TypeVar

from temporalio import workflow
from temporalio.common import RawValue, RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from pydantic import BaseModel

    from abrollout.contracts.records import DecisionState, ReceiptRecord
    from abrollout.contracts.report import Report
    from abrollout.contracts.tools import ToolCall, ToolName, ToolProposal, ToolReceipt
    from abrollout.plan.planner import (
        check_proposal,
        closing_proposals,
        snapshot_proposal,
        ticket_proposal,
        without_payload,
    )
    from abrollout.plan.verify import Blocked, verify
    from abrollout.policy import PARAMS, cite
    from abrollout.report.render import dashboard_data, render
    from abrollout.run.checks import assess_check
    from abrollout.run.control import (
        AlertRequest,
        AllocationChange,
        Control,
        PromoteRequest,
        Refused,
        StopRequest,
        check_allocation_change,
        check_promote,
        check_stop,
    )
    from abrollout.run.inbox import ALERT_CHECK_MIN_INTERVAL, read
    from abrollout.run.input import ExperimentInput
    from abrollout.run.state import Command, RunState
    from activities.tools import TOOLS
    from workflows.search_attributes import EXPERIMENT_STATE

NON_RETRYABLE = ["BadToolArgs", "PolicyRefusal", "NotFound", "AdapterRefusal"]
TOOL_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), backoff_coefficient=2.0,
                         maximum_interval=timedelta(seconds=30), maximum_attempts=8,
                         non_retryable_error_types=NON_RETRYABLE)
CHECK_TIMEOUT = timedelta(minutes=5)
HEARTBEAT_TIMEOUT = timedelta(seconds=10)
"""Every tool heartbeats (activities/tools.py): a worker that died mid-call is noticed this fast, not at the end
of its start-to-close timeout, and a long warehouse query keeps its attempt alive."""
MIN_TIMER = 0.001
FLAG_CHANGES = (ToolName.RollbackVariant, ToolName.PromoteVariant)
TIMED_CHECKS = "timed-checks"
"""Patch id: experiments started before it compare the clock with due times (the section at the end)."""
DUE_TOLERANCE = 0.5  # experiment seconds: float slack when comparing the clock with a due time (before TIMED_CHECKS)


def workflow_id(exp_key: str) -> str:
    return f"exp-{exp_key}"


@workflow.defn
class ExperimentWorkflow:
    @workflow.init
    def __init__(self, inp: ExperimentInput) -> None:
        self.s = inp.state or RunState(spec=inp.spec, plan=inp.plan)
        self.max_history_events = inp.max_history_events
        self.tool_timeout = timedelta(seconds=inp.tool_timeout_seconds)
        self._handling = False  # the first queued command is being carried out
        self._timed = workflow.patched(TIMED_CHECKS)
        self._alarm: asyncio.Task[None] | None = None  # the timer of the next scheduled check or ramp step
        self._alarm_at = 0  # its experiment time
        self._cool_down: asyncio.Task[None] | None = None  # after an alert check, until the next may run

    # ---- queries: extra arguments are ignored -------------------------------------------------------------
    @workflow.query
    def report(self, *_ignored: object) -> Report:
        return render(self.s)

    @workflow.query
    def receipts(self, *_ignored: object) -> list[ReceiptRecord]:
        return self.s.receipts

    # ---- signals: fire and forget (UI, CLI, webhooks); any payload is read, unusable ones logged and dropped ----
    @workflow.signal(description='Stop the run and roll back to control: {"reason": "..."} (empty: no reason).')
    def stop(self, *args: object) -> None:
        if (request := self._read("stop", StopRequest, args)) is not None:
            self._enqueue_if_allowed(lambda: check_stop(self.s, request),
                                     Command(kind="stop", reason=request.reason, source="signal"))

    @workflow.signal(description='Promote an arm: {"variant": "treatment", "reason": "..."}.')
    def promote(self, *args: object) -> None:
        if (request := self._read("promote", PromoteRequest, args)) is not None:
            self._enqueue_if_allowed(lambda: check_promote(self.s, request),
                                     Command(kind="promote", arm=request.variant, reason=request.reason,
                                             source="signal"))

    @workflow.signal(description='Run a guardrail check now: {"reason": "...", "source": "..."} (empty is fine).')
    def alert(self, *args: object) -> None:
        """At most one alert check is pending, and one more may wait out the cool-down after the last."""
        if (request := self._read("alert", AlertRequest, args)) is None:
            return
        waiting = self.s.commands[1:] if self._handling else self.s.commands
        pending = self.s.alert_pending or any(c.kind == "alert" for c in waiting)
        if self.s.state is not DecisionState.running or self.s.started_at is None or self.s.closing or pending:
            return
        if self._cool_down is not None and not self._cool_down.done():
            self.s.alert_pending = True
            return
        self.s.commands.append(Command(kind="alert", reason=request.reason, source=request.source))

    @workflow.signal(dynamic=True)
    def unknown_signal(self, name: str, args: Sequence[RawValue]) -> None:
        """Dropped at once: the SDK would otherwise buffer every unknown signal for the life of the run."""
        self._ignore(f"{name[:60]!r}: no such signal (stop, promote, alert)")

    # ---- updates: the same, for callers who need an answer; validators write nothing to history ---------
    @workflow.update
    async def request_stop(self, request: StopRequest) -> Report:
        return await self._run_command(Command(kind="stop", reason=request.reason, source="update"))

    @request_stop.validator
    def _validate_stop(self, request: StopRequest) -> None:
        _refuse_on(lambda: check_stop(self.s, _given(request, StopRequest)))

    @workflow.update
    async def request_promote(self, request: PromoteRequest) -> Report:
        return await self._run_command(Command(kind="promote", arm=request.variant, reason=request.reason,
                                               source="update"))

    @request_promote.validator
    def _validate_promote(self, request: PromoteRequest) -> None:
        _refuse_on(lambda: check_promote(self.s, _given(request, PromoteRequest)))

    @workflow.update
    async def change_allocation(self, request: AllocationChange) -> Report:
        step = _refuse_on(lambda: check_allocation_change(self.s, request))
        return await self._run_command(Command(kind="advance_ramp", reason=f"{request.reason} (step {step})",
                                               ramp_step=step, source="update"))

    @change_allocation.validator
    def _validate_allocation(self, request: AllocationChange) -> None:
        _refuse_on(lambda: check_allocation_change(self.s, _given(request, AllocationChange)))

    # ---- the runbook -------------------------------------------------------------------------------------
    @workflow.run
    async def run(self, inp: ExperimentInput) -> Report:
        if self.s.started_at is None and not self.s.closing:
            await self._set_up()
        if self._timed:
            await self._run_timed()
        else:
            await self._run_clock_compared()
        await workflow.wait_condition(workflow.all_handlers_finished)
        return render(self.s)

    async def _run_timed(self) -> None:
        while not self.s.finished:
            if self.s.state is not DecisionState.running:
                await self._close()
                return
            self._set_alarm()
            await workflow.wait_condition(self._woken)
            if self.s.commands:
                await self._handle_commands()
            elif self._alarm is not None and self._alarm.done():
                self._alarm = None
                await self._run_checks_until(lambda: self._alarm_at)
                await self._apply_ramp_steps_until(lambda: self._alarm_at)
            elif self._should_continue_as_new():
                await self._continue_as_new()

    def _woken(self) -> bool:
        alarm_rang = self._alarm is not None and self._alarm.done()
        return bool(self.s.commands) or alarm_rang or self._should_continue_as_new()

    async def _set_up(self) -> None:
        for proposal in self.s.plan.setup:
            receipt = await self._execute(proposal)
            if receipt.ok:
                continue
            if proposal.step == "register":
                raise ApplicationError(f"refused: {receipt.message}", type="PolicyRefusal", non_retryable=True)
            self._stop_unverified(f"set-up step {proposal.step} failed: {receipt.message}")
            return
        self.s.started_at = workflow.now()
        self.s.ramp_applied = 0
        await self._snapshot("snapshot-start", "start")
        self._show_details()

    # ---- time: each scheduled check and ramp step waits on a timer of its own --------------------------------
    def _experiment_seconds(self) -> float:
        assert self.s.started_at is not None
        elapsed = (workflow.now() - self.s.started_at).total_seconds()
        return elapsed * 3600.0 / self.s.plan.hour_seconds

    def _next_due(self) -> int:
        plan = self.s.plan
        due = min((self.s.guardrail_checks + 1) * plan.guardrail_check_every, plan.max_duration_seconds)
        next_ramp = self.s.ramp_applied + 1
        if next_ramp < len(plan.ramp):
            due = min(due, plan.ramp[next_ramp].at)
        return due

    def _real_seconds(self, experiment_seconds: float) -> float:
        return experiment_seconds * self.s.plan.hour_seconds / 3600.0

    def _set_alarm(self) -> None:
        """A timer for the next scheduled check or ramp step, unless one is set. The clock sets only how long it
        runs (at least a millisecond, so it is always a timer); the alarm firing, not the clock, makes it due."""
        plan = self.s.plan
        checks_done = self.s.guardrail_checks * plan.guardrail_check_every >= plan.max_duration_seconds
        if self._alarm is not None or (checks_done and self.s.ramp_applied + 1 >= len(plan.ramp)):
            return
        at = self._next_due()
        remaining = math.ceil(self._real_seconds(at - self._experiment_seconds()) * 1000) / 1000
        self._alarm_at = at
        self._alarm = asyncio.create_task(workflow.sleep(max(MIN_TIMER, remaining),
                                                         summary=f"next check at {at // 3600}h"))

    # ---- checks and decisions ------------------------------------------------------------------------------
    async def _run_checks_until(self, due: Callable[[], float]) -> None:
        """Every scheduled check at or before `due()` (re-read after each check), in order."""
        plan = self.s.plan
        while self.s.state is DecisionState.running:
            at = (self.s.guardrail_checks + 1) * plan.guardrail_check_every
            if at > plan.max_duration_seconds or at > due():
                return
            self.s.guardrail_checks += 1
            if at % plan.analysis_every == 0:
                await self._check(at, "analysis", at // plan.analysis_every)
            else:
                await self._check(at, "guardrail", self.s.guardrail_checks)

    async def _check(self, at: int, kind: str, index: int, step: str | None = None, scheduled: bool = True) -> None:
        """Run one check and apply the decision rule to its verdict. Only scheduled checks count towards the
        no-data ticket (data.1): an alert may make a check happen early, and nothing else."""
        plan = self.s.plan
        analysis = kind == "analysis"
        prior = self.s.prior_look_sizes() if analysis else None
        receipt = await self._execute(check_proposal(plan, kind, index, at, step=step, prior_look_sizes=prior))
        at_cap = analysis and at >= plan.max_duration_seconds
        assessment = assess_check(self.s, kind, index, at, receipt, at_cap=at_cap)
        self.s.checkpoints.append(assessment.checkpoint)
        if analysis:
            self.s.looks = index
        self.s.breaches = assessment.checkpoint.breaches
        if scheduled:
            self.s.no_data_streak = self.s.no_data_streak + 1 if assessment.checkpoint.no_data else 0
        if assessment.state is not DecisionState.running:
            self.s.decide(assessment.state, assessment.rationale, assessment.citations, assessment.arm)
            self.s.decision_receipts = [receipt.ref]
        else:
            self.s.rationale = assessment.rationale
            if scheduled and self.s.no_data_streak == PARAMS.no_data_grace_checks:
                await self._no_data_ticket(assessment.rationale)
        self._show_details()

    async def _no_data_ticket(self, rationale: str) -> None:
        step = f"ticket-no-data-{len(self.s.checkpoints)}"
        title = f"No metrics data: {self.s.plan.exp_key}"
        await self._execute(ticket_proposal(self.s.plan, step, title, f"{rationale} [{cite('data.1')}]", "medium"))

    async def _apply_ramp_steps_until(self, due: Callable[[], float]) -> None:
        plan = self.s.plan
        while self.s.state is DecisionState.running:
            step = self.s.ramp_applied + 1
            if step >= len(plan.ramp) or plan.ramp[step].at > due():
                return
            await self._apply_ramp_step(step)

    async def _apply_ramp_step(self, step: int) -> None:
        receipt = await self._execute(self.s.plan.ramp_steps[step - 1])
        if receipt.ok:
            self.s.ramp_applied = step
            return
        self._stop_unverified(f"ramp step {step} could not be verified: {receipt.message}")

    def _stop_unverified(self, rationale: str) -> None:
        """A change that cannot be verified is never taken as done: stop, roll back to control and open a ticket."""
        self.s.decide(DecisionState.guardrail_stop, f"{rationale}; stopping safely", [cite("receipts.1"),
                      cite("guardrail.4")], ticket_severity=PARAMS.severity_unverified_change)

    # ---- manual commands ---------------------------------------------------------------------------------
    async def _run_command(self, command: Command) -> Report:
        """Queue the command and answer once it took effect: a stop or promote once it was carried out."""
        self.s.commands.append(command)
        handled_before = self.s.handled_commands + len(self.s.commands)
        if command.kind in ("stop", "promote"):
            await workflow.wait_condition(lambda: self.s.finished)
        else:
            await workflow.wait_condition(lambda: self.s.handled_commands >= handled_before or self.s.finished)
        return render(self.s)

    def _enqueue_if_allowed(self, check: Callable[[], object], command: Command) -> None:
        """Queue a signalled command the policy allows; one of each kind waits at most (a flood adds no work)."""
        try:
            check()
        except Refused as exc:
            workflow.logger.warning("signal ignored: %s", exc)
            return
        if command.model_copy(update={"reason": "", "source": ""}) not in (
                c.model_copy(update={"reason": "", "source": ""}) for c in self.s.commands):
            self.s.commands.append(command)

    def _read(self, signal: str, model: type[C], args: tuple[object, ...]) -> C | None:
        """The signal's request, or None after dropping it with the reason counted and logged."""
        request = read(signal, model, args)
        if isinstance(request, str):
            self._ignore(request)
            return None
        return request

    def _ignore(self, why: str) -> None:
        self.s.ignored_signals += 1
        self.s.last_ignored = why
        workflow.logger.warning("signal dropped: %s", why)

    async def _handle_commands(self) -> None:
        while self.s.commands and self.s.state is DecisionState.running and not self.s.closing:
            command = self.s.commands[0]
            self._handling = True
            if command.kind == "stop":
                self.s.decide(DecisionState.rollback, f"manual stop: {command.reason}", [cite("manual.1")])
            elif command.kind == "promote":
                self.s.decide(DecisionState.promote, f"manual promote of {command.arm}: {command.reason}",
                              [cite("manual.2")], command.arm)
            elif command.kind == "alert":
                await self._alert_check()
            elif command.ramp_step == self.s.ramp_applied + 1:  # a duplicate of an applied step does nothing
                await self._apply_ramp_step(command.ramp_step)
            self.s.commands.pop(0)
            self._handling = False
            self.s.handled_commands += 1
        if self.s.state is not DecisionState.running:
            self.s.commands.clear()

    async def _alert_check(self) -> None:
        """The cool-down runs from the check's start: alerts arriving while it runs wait for its end too."""
        if self._timed:
            self._cool_down = asyncio.create_task(self._after_cool_down())
        index = len(self.s.checkpoints)
        at = int(self._experiment_seconds())
        await self._check(at, "guardrail", index, step=f"check-alert-{index}", scheduled=not self._timed)

    async def _after_cool_down(self) -> None:
        await workflow.sleep(ALERT_CHECK_MIN_INTERVAL, summary="alert cool-down")
        if self.s.alert_pending and self.s.state is DecisionState.running and not self.s.closing:
            self.s.alert_pending = False
            self.s.commands.append(Command(kind="alert", reason="alerts during the cool-down", source="coalesced"))

    async def _close(self) -> None:
        """Carry out the decision in policy order, then snapshot the final state."""
        self.s.closing = True
        workflow.upsert_search_attributes([EXPERIMENT_STATE.value_set(self.s.state.value)])
        severity = self.s.ticket_severity or (
            PARAMS.severity_srm if "srm" in self.s.breaches else PARAMS.severity_guardrail_stop)
        proposals = closing_proposals(self.s.plan, self.s.state, self.s.rationale, arm=self.s.decided_arm,
                                      severity=severity)
        unverified = []
        for proposal in proposals:
            receipt = await self._execute(proposal)
            self.s.decision_receipts.append(receipt.ref)
            if not receipt.ok and receipt.ref != "blocked" and proposal.name in FLAG_CHANGES:
                unverified.append(f"{proposal.step}: {receipt.message}")
        if unverified:
            await self._unverified_close_ticket(unverified)
        await self._snapshot("snapshot-final", self.s.state.value)
        self.s.finished = True
        self.s.closing = False
        self._show_details()

    async def _unverified_close_ticket(self, failures: list[str]) -> None:
        """The decision's own flag change could not be verified: nobody may assume the flag is safe."""
        body = (f"The {self.s.state.value} decision was made, but its flag change was not verified: "
                f"{'; '.join(failures)}. Check what the flag serves now and fix it by hand "
                f"[{cite('receipts.1')}]")
        await self._execute(ticket_proposal(self.s.plan, "ticket-unverified-close",
                                            f"Unverified flag change: {self.s.plan.exp_key}", body,
                                            PARAMS.severity_unverified_change))

    # ---- tools -------------------------------------------------------------------------------------------
    async def _snapshot(self, step: str, label: str) -> None:
        receipt = await self._execute(snapshot_proposal(self.s.plan, step, dashboard_data(self.s, label)))
        if receipt.ok:
            self.s.dashboards.append(receipt.ref)

    async def _execute(self, proposal: ToolProposal) -> ToolReceipt:
        """Verify, then run the tool; a blocked or failed proposal is recorded with ok=false and the reason."""
        if proposal not in self.s.plan.setup and proposal not in self.s.plan.ramp_steps:
            self.s.proposals.append(without_payload(proposal))
        try:
            args = verify(proposal, self.s.refs, self.s.state.value, bool(self.s.breaches))
        except Blocked as exc:
            receipt = ToolReceipt(tool=proposal.name, ok=False, ref="blocked", message=str(exc), step=proposal.step,
                                  idempotency_key=proposal.idempotency_key)
            self.s.record(proposal, receipt)
            return receipt
        call = ToolCall.answering(proposal, args)
        try:
            receipt = await workflow.execute_activity_method(
                TOOLS[proposal.name], call, retry_policy=TOOL_RETRY,
                start_to_close_timeout=CHECK_TIMEOUT if proposal.name == ToolName.CheckMetrics else self.tool_timeout,
                heartbeat_timeout=HEARTBEAT_TIMEOUT, summary=f"{proposal.step}: {proposal.name}")
        except ActivityError as exc:
            cause = exc.cause.message if isinstance(exc.cause, ApplicationError) else str(exc.cause or exc)
            receipt = ToolReceipt(tool=proposal.name, ok=False, ref="failed", message=cause, step=proposal.step,
                                  idempotency_key=proposal.idempotency_key)
        self.s.record(proposal, receipt)
        return receipt

    # ---- bookkeeping -------------------------------------------------------------------------------------
    def _should_continue_as_new(self) -> bool:
        if self.s.finished or self.s.closing or self.s.commands:
            return False
        info = workflow.info()
        if self.max_history_events is not None and info.get_current_history_length() >= self.max_history_events:
            return True
        return info.is_continue_as_new_suggested()

    async def _continue_as_new(self) -> None:
        await workflow.wait_condition(workflow.all_handlers_finished)
        self.s.continued += 1
        workflow.continue_as_new(ExperimentInput(spec=self.s.spec, plan=self.s.plan, state=self.s.carried(),
                                                 max_history_events=self.max_history_events,
                                                 tool_timeout_seconds=int(self.tool_timeout.total_seconds())))

    def _show_details(self) -> None:
        last = self.s.checkpoints[-1].summary if self.s.checkpoints else "no checks yet"
        ignored = (f"\n\n{self.s.ignored_signals} signals dropped; latest: {self.s.last_ignored}"
                   if self.s.ignored_signals else "")
        workflow.set_current_details(
            f"**{self.s.state.value}** — {self.s.rationale}\n\nexposure {self.s.exposure_percent:g}% · "
            f"{self.s.guardrail_checks} guardrail checks · look {self.s.looks}/{self.s.plan.planned_looks}\n\n"
            f"latest: {last}{ignored}\n\npolicy {self.s.plan.policy_id} · plan {self.s.plan.plan_hash or 'rebuilt'}")

    # ---- experiments started before TIMED_CHECKS: kept so their histories replay ------------------------------
    # Remove with `workflow.deprecate_patch(TIMED_CHECKS)` once none runs (docs/upgrading.md).
    async def _run_clock_compared(self) -> None:
        while not self.s.finished:
            if self.s.state is not DecisionState.running:
                await self._close()
                break
            await self._wait_for_next_event()
            await self._handle_commands()
            if self.s.state is DecisionState.running and not self.s.closing:
                await self._run_checks_until(lambda: self._experiment_seconds() + DUE_TOLERANCE)
                await self._apply_ramp_steps_until(lambda: self._experiment_seconds() + DUE_TOLERANCE)
            if self._should_continue_as_new():
                await self._continue_as_new()

    async def _wait_for_next_event(self) -> None:
        if self.s.commands:
            return
        remaining = math.ceil(self._real_seconds(self._next_due() - self._experiment_seconds()) * 1000) / 1000
        if remaining <= 0:
            return
        with contextlib.suppress(asyncio.TimeoutError):
            await workflow.wait_condition(lambda: bool(self.s.commands), timeout=timedelta(seconds=remaining),
                                          timeout_summary=f"next check at {self._next_due() // 3600}h")


T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)
C = TypeVar("C", bound="Control")


def _given(request: object, model: type[M]) -> M:
    """The update's argument as its model: a `binary/null` payload decodes to None whatever the type hint says, and
    a handler reading a field of None past its validator would fail the workflow task."""
    if not isinstance(request, model):
        raise ApplicationError(f"send one {model.__name__} JSON object, not {type(request).__name__}",
                               type="BadRequest", non_retryable=True)
    return request


def _refuse_on(check: Callable[[], T]) -> T:
    """The check's answer, or its refusal as an update failure (never a failed workflow task)."""
    try:
        return check()
    except Refused as exc:
        raise ApplicationError(str(exc), type="PolicyRefusal", non_retryable=True) from None
