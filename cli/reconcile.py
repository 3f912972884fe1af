"""`starter.py reconcile` (one safety-net sweep now) and the words for what the safety net found and did, which
`starter.py status` shows too. The operations themselves are client/safety_net.py."""

from __future__ import annotations

import argparse

from abrollout.run.safety_net import (
    DEFAULT_STUCK_AFTER_SECONDS,
    RELEASE,
    ROLLBACK,
    TICKET,
    Repair,
    SweepInput,
    SweepReport,
)
from client.connect import connect
from client.exits import OK
from client.safety_net import sweep_once
from client.settings import Settings

SWEEP_WAIT_SECONDS = 120.0


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
