"""The starter commands that talk to Temporal: start, stop, promote, allocate, alert, status, report, list,
watch, history. Refusals (policy, bad ids) exit 2 with the reason; an unreachable server exits 1."""

from __future__ import annotations

import argparse
import asyncio
import sys
import webbrowser
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

from temporalio.client import Client, WorkflowExecutionStatus, WorkflowFailureError, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from abrollout.contracts.report import Report
from abrollout.control import AlertRequest, AllocationChange, PromoteRequest, StopRequest
from abrollout.problems import errors_only
from cli import render
from cli.connect import connect
from cli.exits import BAD_INPUT, OK, RUNTIME_FAILURE, UserFacingError
from cli.experiments import ExperimentHandle, start_experiment
from cli.history import receipt_trail
from cli.settings import Settings, settings
from cli.spec_input import load_checked_spec, refuse
from workflows.experiment import ExperimentWorkflow, workflow_id

POLL_SECONDS = 1.0


def experiment_id(text: str) -> str:
    """`exp-<name>` as given, or the bare experiment name."""
    return text if text.startswith("exp-") else workflow_id(text)


async def _existing(client: Client, text: str) -> ExperimentHandle:
    handle: ExperimentHandle = client.get_workflow_handle_for(ExperimentWorkflow.run, experiment_id(text))
    try:
        await handle.describe()
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            raise UserFacingError(f"error: no experiment {handle.id}; fix: check the name with `starter.py list`",
                                  BAD_INPUT) from None
        raise
    return handle


async def _report(handle: ExperimentHandle) -> Report:
    """The live report of a running experiment (a query), or the final one of a finished experiment (its result),
    which needs no worker to answer."""
    if (await handle.describe()).status == WorkflowExecutionStatus.RUNNING:
        return await handle.query(ExperimentWorkflow.report)
    try:
        return await handle.result()
    except WorkflowFailureError as exc:
        cause = exc.cause.message if isinstance(exc.cause, ApplicationError) else str(exc.cause or exc)
        raise UserFacingError(f"error: {handle.id} ended without a report: {cause}", RUNTIME_FAILURE) from None


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


async def _warn_without_worker(client: Client, s: Settings) -> None:
    from temporalio.api.taskqueue.v1 import TaskQueue
    from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest

    response = await client.workflow_service.describe_task_queue(
        DescribeTaskQueueRequest(namespace=s.namespace, task_queue=TaskQueue(name=s.task_queue)))
    if not response.pollers:
        print(f"warning: no worker polls task queue '{s.task_queue}' yet; start one with `python worker.py`",
              file=sys.stderr)


async def cmd_start(args: argparse.Namespace, s: Settings) -> int:
    check = load_checked_spec(args.spec)
    if not check.ok or check.spec is None:
        raise refuse(errors_only(check.problems) or check.problems, args.spec)
    client = await connect(s)
    try:
        handle = await start_experiment(client, check.spec, s.task_queue, tool_timeout_seconds=args.tool_timeout)
    except WorkflowAlreadyStartedError:
        raise UserFacingError(f"error: an experiment named '{check.spec.name}' already exists "
                              f"({workflow_id(check.spec.name or '')}); fix: give the spec a new `name`",
                              BAD_INPUT) from None
    print(f"started {handle.id} (run {handle.result_run_id})")
    print(f"  Temporal UI: {s.workflow_url(handle.id, handle.result_run_id)}")
    await _warn_without_worker(client, s)
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
    await handle.signal(ExperimentWorkflow.alert, AlertRequest(source="cli", reason=args.reason))
    print(f"alert sent to {handle.id}: an immediate guardrail check runs")
    return OK


async def cmd_status(args: argparse.Namespace, s: Settings) -> int:
    handle = await _existing(await connect(s), args.id)
    print(render.status_text(await _report(handle)))
    return OK


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


async def cmd_list(args: argparse.Namespace, s: Settings) -> int:
    client = await connect(s)
    query = ["WorkflowType = 'ExperimentWorkflow'"]
    if args.state:
        query.append(f"ExperimentState = '{args.state}'")
    if args.domain:
        query.append(f"ExperimentDomain = '{args.domain}'")
    rows = []
    async for wf in client.list_workflows(" AND ".join(query)):
        attrs = {key: (values[0] if isinstance(values, list) and values else values)
                 for key, values in wf.search_attributes.items()}
        rows.append((wf.id, str(attrs.get("ExperimentState", "?")), str(attrs.get("ExperimentDomain", "?")),
                     str(attrs.get("PrimaryMetric", "?")), wf.status.name.lower() if wf.status else "?",
                     wf.start_time.strftime("%Y-%m-%d %H:%M:%S")))
    header = ("workflow id", "state", "domain", "primary metric", "status", "started (UTC)")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    return OK


async def cmd_history(args: argparse.Namespace, s: Settings) -> int:
    client = await connect(s)
    handle = await _existing(client, args.id)
    for item in await receipt_trail(client, handle.id):
        print(render.receipt_line(item.receipt, item.event_id))
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
            return await _final(handle, status)
        await asyncio.sleep(POLL_SECONDS)


async def _final(handle: ExperimentHandle, status: WorkflowExecutionStatus | None) -> int:
    try:
        report = await handle.result(follow_runs=True)
    except WorkflowFailureError as exc:
        cause = exc.cause.message if isinstance(exc.cause, ApplicationError) else str(exc.cause or exc)
        print(f"{handle.id} ended without a decision: {cause}", file=sys.stderr)
        return BAD_INPUT if "refused" in cause else RUNTIME_FAILURE
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


def add_connection_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--address", help="Temporal frontend host:port (env TEMPORAL_ADDRESS, default localhost:7233)")
    parser.add_argument("--namespace", help="Temporal namespace (env TEMPORAL_NAMESPACE, default 'default')")
    parser.add_argument("--task-queue", help="task queue (env ABROLLOUT_TASK_QUEUE, default 'abrollout')")

