"""The starter commands that talk to Temporal: start, stop, promote, allocate, alert, status, report, list,
watch, history. Refusals (policy, bad ids) exit 2 with the reason, whether an update was refused or the experiment's
workflow failed with a PolicyRefusal; an unreachable server, a missing worker and any other failure exit 1."""

from __future__ import annotations

import argparse
import asyncio
import sys
import webbrowser
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import replace
from pathlib import Path
from typing import Any

from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowFailureError, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError, TerminatedError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from abrollout.contracts.records import DecisionState
from abrollout.contracts.report import Report
from abrollout.run.control import AlertRequest, AllocationChange, PromoteRequest, StopRequest
from abrollout.run.safety_net import safety_net_workflow_id
from abrollout.spec.problems import errors_only
from cli import render
from cli.reconcile import repair_text
from cli.spec_input import load_checked_spec, refuse
from client.connect import connect
from client.exits import BAD_INPUT, OK, RUNTIME_FAILURE, UserFacingError
from client.experiments import ExperimentHandle, registration, start_experiment
from client.history import receipt_trail
from client.safety_net import repair_of
from client.settings import Settings, settings
from workflows.experiment import ExperimentWorkflow, workflow_id
from workflows.safety_net import SafetyNetWorkflow

POLL_SECONDS = 1.0
SAFETY_NET_HINT = ("the safety net returns such an experiment's flag to control at its next sweep (every worker keeps "
                   "its schedule); `python starter.py reconcile` runs one now")
REGISTRATION_MARGIN_SECONDS = 30
"""`start` waits for the registration this much longer than one tool call may take: room for a retry after a
worker died mid-call (noticed within the heartbeat timeout) or a registry that answered an error once."""


def experiment_id(text: str) -> str:
    """`exp-<name>` as given, or the bare experiment name."""
    return text if text.startswith("exp-") else workflow_id(text)


async def _existing(client: Client, text: str) -> ExperimentHandle:
    handle: ExperimentHandle = client.get_workflow_handle_for(ExperimentWorkflow.run, experiment_id(text))
    try:
        await handle.describe()
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND and await _namespace_exists(client):
            raise UserFacingError(f"error: no experiment {handle.id}; fix: check the name with `starter.py list`",
                                  BAD_INPUT) from None
        raise
    return handle


async def _namespace_exists(client: Client) -> bool:
    """Temporal answers NOT_FOUND for a missing namespace too: that is no misspelt experiment name."""
    try:
        await client.workflow_service.describe_namespace(DescribeNamespaceRequest(namespace=client.namespace))
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return False
        raise
    return True


async def _report(handle: ExperimentHandle) -> Report:
    """The live report of a running experiment (a query), or the final one of a finished experiment (its result),
    which needs no worker to answer."""
    if (await handle.describe()).status == WorkflowExecutionStatus.RUNNING:
        return await handle.query(ExperimentWorkflow.report)
    return await _result(handle)


async def _result(handle: ExperimentHandle, ended: str = "ended without a decision") -> Report:
    """The report a closed experiment returned; one that failed or was ended raises how (`ended` says what that
    means to the caller)."""
    try:
        return await handle.result()
    except WorkflowFailureError as exc:
        raise _failure(handle.id, ended, exc) from None


def _failure(workflow_id: str, ended: str, exc: WorkflowFailureError) -> UserFacingError:
    """A policy refusal (the workflow failed with a PolicyRefusal, e.g. at registration) exits 2 with its clause,
    as a refused update does; anything else (a runtime failure, a termination, a timeout) exits 1."""
    cause = exc.cause
    if isinstance(cause, ApplicationError) and cause.type == "PolicyRefusal":
        return UserFacingError(f"refused: {workflow_id} {ended}: {cause.message.removeprefix('refused: ')}",
                               BAD_INPUT)
    if isinstance(cause, ApplicationError):
        detail = cause.message
    elif isinstance(cause, TerminatedError):
        detail = f"terminated ({cause})"
    else:
        detail = str(cause or exc)
    return UserFacingError(f"error: {workflow_id} {ended}: {detail}; {SAFETY_NET_HINT}", RUNTIME_FAILURE)


async def _raise_if_ended_undecided(handle: ExperimentHandle) -> None:
    """Raise how the experiment ended if its workflow closed without a decision; a running or decided one passes."""
    if (await handle.describe()).status != WorkflowExecutionStatus.RUNNING:
        await _result(handle)


async def _update(handle: ExperimentHandle, call: Callable[[], Awaitable[Report]]) -> Report:
    """Run an update; a validator's refusal (or a closed experiment) is bad input, printed with its clause."""
    try:
        return await call()
    except WorkflowUpdateFailedError as exc:
        cause = exc.cause
        message = cause.message if isinstance(cause, ApplicationError) else str(cause or exc)
        raise UserFacingError(f"refused: {message}", BAD_INPUT) from None
    except RPCError as exc:
        if exc.status in (RPCStatusCode.NOT_FOUND, RPCStatusCode.FAILED_PRECONDITION):
            raise UserFacingError(f"refused: {handle.id} is no longer running ({exc.message})", BAD_INPUT) from None
        raise


async def _worker_polls(client: Client, s: Settings) -> bool:
    from temporalio.api.taskqueue.v1 import TaskQueue
    from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest

    response = await client.workflow_service.describe_task_queue(
        DescribeTaskQueueRequest(namespace=s.namespace, task_queue=TaskQueue(name=s.task_queue)))
    return bool(response.pollers)


async def _registered(client: Client, handle: ExperimentHandle, s: Settings, timeout_seconds: float) -> str:
    """The exp id the registry gave the experiment. Without a worker nothing registers it, so the wait is bounded
    and says why it ended: a script never blocks on a missing worker, and the experiment stays queued for one."""
    if not await _worker_polls(client, s):
        print(f"warning: no worker polls task queue '{s.task_queue}' yet; start one with `python worker.py` "
              f"(waiting up to {timeout_seconds:g} s for one to register {handle.id})", file=sys.stderr)
    exp_id = await registration(client, handle, timeout_seconds)
    if exp_id is not None:
        return exp_id
    if (await handle.describe()).status != WorkflowExecutionStatus.RUNNING:
        await _result(handle, "was not started")  # it closed before registering, so it failed or was ended: raises
    why = (f"a worker polled task queue '{s.task_queue}' lately, so the call is being retried (a slow or failing "
           "registry, or a worker that died)" if await _worker_polls(client, s)
           else f"no worker polls task queue '{s.task_queue}'")
    raise UserFacingError(
        f"error: {handle.id} is not registered after {timeout_seconds:g} s: {why}. It stays queued and goes on "
        f"once a worker picks it up; follow it with `python starter.py watch {handle.id}`, or see "
        f"{s.workflow_url(handle.id, handle.result_run_id)}", RUNTIME_FAILURE)


async def cmd_start(args: argparse.Namespace, s: Settings) -> int:
    check = load_checked_spec(args.spec)
    if not check.ok or check.spec is None:
        raise refuse(errors_only(check.problems) or check.problems, args.spec)
    client = await connect(s)
    try:
        handle = await start_experiment(client, check.spec, s.task_queue, tool_timeout_seconds=args.tool_timeout,
                                        experiment_plan=check.plan)
    except WorkflowAlreadyStartedError:
        raise UserFacingError(f"error: an experiment named '{check.spec.name}' already exists "
                              f"({workflow_id(check.spec.name or '')}); fix: give the spec a new `name`",
                              BAD_INPUT) from None
    exp_id = await _registered(client, handle, s, args.tool_timeout + REGISTRATION_MARGIN_SECONDS)
    print(f"started {handle.id} (run {handle.result_run_id}), registered as {exp_id}")
    print(f"  Temporal UI: {s.workflow_url(handle.id, handle.result_run_id)}")
    if args.wait:
        return await follow(handle, quiet_checks=True)
    print(f"  next: python starter.py watch {handle.id}")
    return OK


async def cmd_stop(args: argparse.Namespace, s: Settings) -> int:
    handle = await _existing(await connect(s), args.id)
    report = await _update(handle, lambda: handle.execute_update(ExperimentWorkflow.request_stop,
                                                                 StopRequest(reason=args.reason)))
    print(render.status_text(report))
    return OK


async def cmd_promote(args: argparse.Namespace, s: Settings) -> int:
    handle = await _existing(await connect(s), args.id)
    request = PromoteRequest(variant=args.variant, reason=args.reason)
    report = await _update(handle, lambda: handle.execute_update(ExperimentWorkflow.request_promote, request))
    print(render.status_text(report))
    return OK


def _split(text: str) -> dict[str, float]:
    try:
        return {arm.strip(): float(share) for arm, share in (part.split("=") for part in text.split(","))}
    except ValueError:
        raise UserFacingError(f"error: --split {text!r}; fix: write it as control=50,treatment=50", BAD_INPUT) \
            from None


async def cmd_allocate(args: argparse.Namespace, s: Settings) -> int:
    request = AllocationChange(split=_split(args.split) if args.split else None, exposure_rules=args.rule,
                               ramp_step=args.ramp_step, reason=args.reason)
    handle = await _existing(await connect(s), args.id)
    report = await _update(handle, lambda: handle.execute_update(ExperimentWorkflow.change_allocation, request))
    print(render.status_text(report))
    return OK


async def cmd_alert(args: argparse.Namespace, s: Settings) -> int:
    handle = await _existing(await connect(s), args.id)
    try:
        await handle.signal(ExperimentWorkflow.alert, AlertRequest(source="cli", reason=args.reason))
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:  # the workflow exists (checked above), so it has closed
            raise UserFacingError(f"refused: {handle.id} is no longer running; nothing to check", BAD_INPUT) from None
        raise
    print(f"alert sent to {handle.id}: a guardrail check runs now (or after the cool-down of the last alert check)")
    return OK


async def cmd_status(args: argparse.Namespace, s: Settings) -> int:
    """The live or final status; for an experiment the safety net took over, what it found and did (exit 1 if it
    could not return the flag to control), and for one whose workflow task keeps failing, that it is stuck."""
    client = await connect(s)
    handle = await _existing(client, args.id)
    repair = await repair_of(client, handle.id)
    if repair is not None:
        print(repair_text(repair))
        return OK if repair.returned_to_control else RUNTIME_FAILURE
    stuck = await _stuck(handle)
    if stuck is not None:
        raise UserFacingError(f"error: {handle.id} is stuck: {stuck}; {SAFETY_NET_HINT}", RUNTIME_FAILURE)
    print(render.status_text(await _report(handle)))
    return OK


async def _stuck(handle: ExperimentHandle) -> str | None:
    """How a running experiment's workflow task keeps failing (queries to it fail too), or None."""
    raw = (await handle.describe()).raw_description
    if not raw.HasField("pending_workflow_task") or raw.pending_workflow_task.attempt <= 1:
        return None
    task = raw.pending_workflow_task
    return (f"its workflow task has failed {task.attempt - 1} times since "
            f"{task.original_scheduled_time.ToDatetime():%Y-%m-%d %H:%M:%S} UTC (a code or deploy fault)")


async def cmd_report(args: argparse.Namespace, s: Settings) -> int:
    handle = await _existing(await connect(s), args.id)
    report = await _report(handle)
    if args.json:
        print(report.model_dump_json(indent=2))
    else:
        print(render.report_text(report))
    if args.open:
        _open_dashboard(report, s.data_dir)
    return OK


def _open_dashboard(report: Report, data_dir: Path) -> None:
    if not report.monitoring.dashboards:
        raise UserFacingError("error: this experiment has no dashboard snapshot yet", RUNTIME_FAILURE)
    page = data_dir / "dashboards" / report.registration.exp_key / f"{report.monitoring.dashboards[-1]}.html"
    if not page.is_file():
        raise UserFacingError(f"error: {page} is not here; fix: run report --open where the worker's "
                              "ABROLLOUT_DATA_DIR is", RUNTIME_FAILURE)
    if sys.stdout.isatty():
        webbrowser.open(page.resolve().as_uri())
    print(f"dashboard: {page.resolve()}", file=sys.stderr)


def _list_query(state: str | None, domain: str | None) -> str:
    """Each experiment once (its latest run, not the runs it continued as new from). ExperimentState keeps its last
    value when a workflow fails or is terminated, so `running` also asks Temporal that the workflow still runs."""
    query = ["WorkflowType = 'ExperimentWorkflow'", "ExecutionStatus != 'ContinuedAsNew'"]
    if state:
        query.append(f"ExperimentState = '{state}'")
    if state == DecisionState.running:
        query.append("ExecutionStatus = 'Running'")
    if domain:
        query.append(f"ExperimentDomain = '{domain}'")
    return " AND ".join(query)


REPAIRS_QUERY = f"WorkflowType = '{SafetyNetWorkflow.__name__}' AND ExecutionStatus = 'Completed'"


async def cmd_list(args: argparse.Namespace, s: Settings) -> int:
    client = await connect(s)
    rows = []
    async for wf in client.list_workflows(_list_query(args.state, args.domain)):
        attrs = {key: (values[0] if isinstance(values, list) and values else values)
                 for key, values in wf.search_attributes.items()}
        rows.append(render.ListedExperiment(
            workflow_id=wf.id, state=str(attrs.get("ExperimentState", "?")), status=wf.status,
            domain=str(attrs.get("ExperimentDomain", "?")), primary_metric=str(attrs.get("PrimaryMetric", "?")),
            started=wf.start_time))
    print(render.experiment_table(await _with_repairs(client, rows)))
    return OK


async def _with_repairs(client: Client, rows: list[render.ListedExperiment]) -> list[render.ListedExperiment]:
    """What the safety net did for the experiments that ended undecided: one visibility query for the finished
    repairs, then a result only for those listed."""
    undecided = {row.workflow_id for row in rows if row.ended_undecided}
    if not undecided:
        return rows
    finished = {wf.id async for wf in client.list_workflows(REPAIRS_QUERY)}
    outcome = {}
    for experiment in sorted(undecided):
        if safety_net_workflow_id(experiment) in finished and (repair := await repair_of(client, experiment)):
            outcome[experiment] = repair.returned_to_control
    return [replace(row, returned_to_control=outcome.get(row.workflow_id)) for row in rows]


async def cmd_history(args: argparse.Namespace, s: Settings) -> int:
    client = await connect(s)
    handle = await _existing(client, args.id)
    for item in await receipt_trail(client, handle.id):
        print(render.receipt_line(item.receipt, item.event_id))
    await _raise_if_ended_undecided(handle)
    return OK


async def cmd_watch(args: argparse.Namespace, s: Settings) -> int:
    return await follow(await _existing(await connect(s), args.id), quiet_checks=args.quiet)


async def follow(handle: ExperimentHandle, quiet_checks: bool) -> int:
    """Print receipts as they arrive and the latest check, until the experiment ends; then the report."""
    seen = 0
    last_check = -1
    while True:
        report = await _report(handle)
        for receipt in report.receipts[seen:]:
            if not (quiet_checks and receipt.tool == "CheckMetrics" and receipt.ok):
                print(render.receipt_line(receipt), flush=True)
        seen = len(report.receipts)
        checkpoints = report.monitoring.checkpoints
        if checkpoints and len(report.receipts) != last_check:
            last_check = len(report.receipts)
            print(f"[{report.decision.state.value}] " + " | ".join(
                line.strip() for line in render.checkpoint_lines(checkpoints[-1], report.registration.guardrails)[:4]),
                flush=True)
        status = (await handle.describe()).status
        if status != WorkflowExecutionStatus.RUNNING:
            return await _final(handle)
        await asyncio.sleep(POLL_SECONDS)


async def _final(handle: ExperimentHandle) -> int:
    """The report once the experiment ended, or how it ended without one, as the exit code (the demo prints what
    to try next either way)."""
    try:
        report = await _result(handle)
    except UserFacingError as exc:
        print(exc.message, file=sys.stderr)
        return exc.code
    print()
    print(render.report_text(report))
    return OK


Handler = Callable[[argparse.Namespace, Settings], Coroutine[Any, Any, int]]


def run(handler: Handler, args: argparse.Namespace) -> int:
    s = settings(args.address, args.namespace, args.task_queue, getattr(args, "data_dir", None))
    try:
        return asyncio.run(handler(args, s))
    except RPCError as exc:
        raise UserFacingError(f"error: Temporal at {s.address} answered {exc.status.name}: {exc.message}",
                              RUNTIME_FAILURE) from None
