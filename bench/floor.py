"""Temporal's floor for the orchestration benchmark: a bare workflow with the experiment's timer cadence and one
no-op activity per checkpoint, and nothing else. Kept apart from bench/fleet/ because the workflow sandbox
re-imports this module for every run: it imports only the SDK."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import timedelta

from temporalio import activity, workflow

NOOP_ACTIVITY = "FloorCheckpoint"


@dataclass
class FloorInput:
    checks: int
    interval_seconds: float  # real seconds between checkpoints (the experiment's interval x hour_seconds / 3600)
    phase_seconds: float = 0.0  # the clock starts this long after the workflow: spreads a fleet started at once


@dataclass
class FloorCheck:
    index: int
    due_epoch: float  # when the timer was due, for the lateness figure (read back from the history)


@activity.defn(name=NOOP_ACTIVITY)
async def floor_checkpoint(check: FloorCheck) -> int:
    return check.index


@workflow.defn
class FloorWorkflow:
    """Wait for each checkpoint's due time exactly as ExperimentWorkflow does (a timer to the due time, in whole
    ms rounded up, measured from the clock's start, so a late checkpoint does not delay the next), then run the
    no-op. ExperimentWorkflow's clock starts when its set-up is done, which spreads a fleet's clocks; the floor
    has no set-up, so a phase spreads them instead."""

    @workflow.run
    async def run(self, inp: FloorInput) -> int:
        start = workflow.now() + timedelta(seconds=inp.phase_seconds)
        for index in range(1, inp.checks + 1):
            due = start + timedelta(seconds=index * inp.interval_seconds)
            remaining = math.ceil((due - workflow.now()).total_seconds() * 1000) / 1000
            if remaining > 0:
                await workflow.sleep(remaining, summary=f"next check {index}")
            await workflow.execute_activity(floor_checkpoint, FloorCheck(index, due.timestamp()),
                                            start_to_close_timeout=timedelta(minutes=5),
                                            summary=f"check {index}")
        return inp.checks
