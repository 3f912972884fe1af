"""The safety net: a sweep (ReconcileWorkflow, on a Temporal Schedule the worker keeps, or `starter.py reconcile`)
and one repair per abandoned experiment (SafetyNetWorkflow, id `safety-net-exp-<name>`).

The workflow id makes one repair per experiment at a time, and keyed effects make a second repair change nothing;
the repair's ticket says what it found, what it did and what is left for a person.
"""

from __future__ import annotations

from collections.abc import Awaitable
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError, WorkflowAlreadyStartedError

with workflow.unsafe.imports_passed_through():
    from abrollout.contracts.records import ReceiptRecord
    from abrollout.contracts.tools import ToolCall, ToolProposal
    from abrollout.run.safety_net import (
        RELEASE,
        TERMINATE,
        Abandoned,
        Found,
        Repair,
        SweepInput,
        SweepReport,
        Terminate,
        reason,
        release_request,
        rollback_proposal,
        safety_net_workflow_id,
        ticket_proposal,
    )
    from activities.safety_net import SafetyNetActivities
    from activities.tools import TOOLS
    from workflows.experiment import HEARTBEAT_TIMEOUT, TOOL_RETRY

OPTIONS: dict[str, Any] = {"retry_policy": TOOL_RETRY, "start_to_close_timeout": timedelta(minutes=1),
                           "heartbeat_timeout": HEARTBEAT_TIMEOUT}


@workflow.defn
class SafetyNetWorkflow:
    """One repair: end a stuck run, return the flag to control with the experiment's own RollbackVariant tool (its
    key, its read-back), release the registry slot, open a critical ticket. Each step is a receipt, and a step
    that fails does not stop the others."""

    @workflow.run
    async def run(self, abandoned: Abandoned) -> Repair:
        receipts: list[ReceiptRecord] = []
        if abandoned.status == "stuck":
            end = Terminate(workflow_id=abandoned.workflow_id, reason=reason(abandoned))
            receipts.append(await _step(TERMINATE, "TerminateStuckWorkflow", abandoned.workflow_id,
                                        workflow.execute_activity_method(SafetyNetActivities.terminate, end,
                                                                         summary=f"{TERMINATE}: end the stuck run",
                                                                         **OPTIONS)))
        receipts.append(await _tool(rollback_proposal(abandoned)))
        release = release_request(abandoned)
        receipts.append(await _step(RELEASE, "ReleaseExperiment", release.idempotency_key,
                                    workflow.execute_activity_method(SafetyNetActivities.release, release,
                                                                     summary=f"{RELEASE}: free the registry slot",
                                                                     **OPTIONS)))
        receipts.append(await _tool(ticket_proposal(abandoned, receipts)))
        return Repair(exp_key=abandoned.exp_key, workflow_id=abandoned.workflow_id, status=abandoned.status,
                      why=abandoned.why, receipts=receipts)


async def _tool(proposal: ToolProposal) -> ReceiptRecord:
    """One of the experiment's own tools, as the experiment would call it."""
    call = ToolCall.answering(proposal, proposal.args)
    try:
        receipt = await workflow.execute_activity_method(TOOLS[proposal.name], call,
                                                         summary=f"{proposal.step}: {proposal.name}", **OPTIONS)
    except ActivityError as exc:
        return _failed(proposal.step, proposal.name, proposal.idempotency_key, exc)
    return ReceiptRecord(step=proposal.step, tool=proposal.name, ok=receipt.ok, ref=receipt.ref,
                         message=receipt.message[:500], idempotency_key=proposal.idempotency_key)


async def _step(step: str, name: str, key: str, call: Awaitable[str]) -> ReceiptRecord:
    try:
        ref = await call
    except ActivityError as exc:
        return _failed(step, name, key, exc)
    return ReceiptRecord(step=step, tool=name, ok=True, ref=ref, message=f"{name} done", idempotency_key=key)


def _failed(step: str, tool: str, key: str, exc: ActivityError) -> ReceiptRecord:
    cause = exc.cause.message if isinstance(exc.cause, ApplicationError) else str(exc.cause or exc)
    return ReceiptRecord(step=step, tool=tool, ok=False, ref="failed", message=cause[:500], idempotency_key=key)


@workflow.defn
class ReconcileWorkflow:
    """One sweep: every registered experiment compared with Temporal; each abandoned one gets its repair."""

    @workflow.run
    async def run(self, sweep: SweepInput) -> SweepReport:
        found: Found = await workflow.execute_activity_method(
            SafetyNetActivities.find_abandoned, sweep, summary="compare the registry with Temporal", **OPTIONS)
        started, in_progress = [], []
        for abandoned in found.abandoned:
            try:
                started.append(await workflow.start_child_workflow(
                    SafetyNetWorkflow.run, abandoned, id=safety_net_workflow_id(abandoned.workflow_id),
                    parent_close_policy=workflow.ParentClosePolicy.ABANDON,
                    static_summary=f"safety net for {abandoned.workflow_id}: {abandoned.status}"))
            except WorkflowAlreadyStartedError:
                in_progress.append(abandoned.workflow_id)
        return SweepReport(checked=found.checked, repaired=[await child for child in started],
                           in_progress=in_progress)
