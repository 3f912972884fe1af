"""The safety net from the outside: the Temporal Schedule every worker keeps, `starter.py reconcile` (one sweep
now), and what `starter.py status` says about an experiment the safety net repaired."""

from __future__ import annotations

import argparse
import asyncio
from datetime import UTC, datetime, timedelta

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleUpdate,
    ScheduleUpdateInput,
    WorkflowExecutionStatus,
)
from temporalio.service import RPCError, RPCStatusCode

from abrollout.run.safety_net import (
    DEFAULT_STUCK_AFTER_SECONDS,
    RELEASE,
    ROLLBACK,
    TICKET,
    Repair,
    SweepInput,
    SweepReport,
    safety_net_workflow_id,
)
from client.connect import connect
from client.exits import OK, RUNTIME_FAILURE, UserFacingError
from client.settings import Settings
from workflows.safety_net import ReconcileWorkflow, SafetyNetWorkflow

SCHEDULE_ID = "abrollout-safety-net"
SWEEP_ID = "abrollout-safety-net-sweep"
SWEEP_WAIT_SECONDS = 120.0


def _schedule(task_queue: str, every: timedelta, sweep: SweepInput) -> Schedule:
    return Schedule(action=ScheduleActionStartWorkflow(ReconcileWorkflow.run, sweep, id=SWEEP_ID,
                                                       task_queue=task_queue),
                    spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=every)]),
                    policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP))


async def ensure_schedule(client: Client, task_queue: str, every: timedelta, sweep: SweepInput) -> None:
    """Create the sweep's schedule, or bring it to this worker's settings: every worker calls this at start-up."""
    schedule = _schedule(task_queue, every, sweep)
    try:
        await client.create_schedule(SCHEDULE_ID, schedule)
    except ScheduleAlreadyRunningError:

        def same(_: ScheduleUpdateInput) -> ScheduleUpdate:
            return ScheduleUpdate(schedule=schedule)

        await client.get_schedule_handle(SCHEDULE_ID).update(same)


async def sweep_once(client: Client, task_queue: str, sweep: SweepInput, wait_seconds: float) -> SweepReport:
    handle = await client.start_workflow(
        ReconcileWorkflow.run, sweep, id=f"{SWEEP_ID}-manual-{datetime.now(UTC):%Y%m%dT%H%M%S%fZ}",
        task_queue=task_queue, static_summary="one safety-net sweep, from starter.py reconcile")
    try:
        return await asyncio.wait_for(handle.result(), wait_seconds)
    except TimeoutError:
        raise UserFacingError(f"error: no worker ran the sweep {handle.id} within {wait_seconds:g} s; start one "
                              f"with `python worker.py` (task queue '{task_queue}')", RUNTIME_FAILURE) from None


async def repair_of(client: Client, experiment_workflow_id: str) -> Repair | None:
    """The safety net's repair of an experiment, once it finished; None if there was none."""
    handle = client.get_workflow_handle_for(SafetyNetWorkflow.run, safety_net_workflow_id(experiment_workflow_id))
    try:
        if (await handle.describe()).status != WorkflowExecutionStatus.COMPLETED:
            return None
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return None
        raise
    return await handle.result()


def repair_text(repair: Repair) -> str:
    """What the safety net found and did, with the outside systems' ids."""
    if repair.returned_to_control:
        head = f"the safety net returned the flag to control (change {repair.ref(ROLLBACK)})"
    else:
        failed = next((r.message for r in repair.receipts if r.step == ROLLBACK), "not attempted")
        head = f"the safety net could NOT return the flag to control ({failed}); fix it by hand"
    ticket, release = repair.ref(TICKET), repair.ref(RELEASE)
    return (f"{repair.exp_key}: {repair.status.replace('_', ' ')}; {head}\n"
            f"  found: {repair.why}\n"
            f"  registry: {f'slot released ({release})' if release else 'NOT released'}; "
            f"ticket: {ticket or 'NOT opened'}")


def report_text(report: SweepReport) -> str:
    experiments = "experiment" if report.checked == 1 else "experiments"
    lines = [f"safety net: {report.checked} registered {experiments} counted as running; "
             f"{len(report.repaired)} repaired" + (f", {len(report.in_progress)} being repaired by another sweep"
                                                   if report.in_progress else "")]
    lines += [repair_text(r) for r in report.repaired]
    lines += [f"{wf_id}: a repair is already under way" for wf_id in report.in_progress]
    return "\n".join(lines)


async def cmd_reconcile(args: argparse.Namespace, s: Settings) -> int:
    """`starter.py reconcile`: one sweep now, printed; exit 0 whether or not it found anything."""
    sweep = SweepInput(stuck_after_seconds=args.stuck_after_seconds)
    print(report_text(await sweep_once(await connect(s), s.task_queue, sweep, args.wait)))
    return OK


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--stuck-after-seconds", type=_positive, default=DEFAULT_STUCK_AFTER_SECONDS,
                        metavar="SECONDS", help="a running experiment whose workflow task has kept failing this long "
                        f"counts as stuck (default {DEFAULT_STUCK_AFTER_SECONDS})")
    parser.add_argument("--wait", type=float, default=SWEEP_WAIT_SECONDS, metavar="SECONDS",
                        help=f"how long to wait for a worker to run the sweep (default {SWEEP_WAIT_SECONDS:g})")


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of seconds >= 1")
    return value
