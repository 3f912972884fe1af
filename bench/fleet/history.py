"""A fleet's figures as the workflow histories tell them: when each checkpoint was due, scheduled, started and
completed. The server's event times are the one clock the worker, the server and this harness share.

A checkpoint is a CheckMetrics activity (a FloorCheckpoint for the floor); checkpoint k of a workflow is due k
intervals after its clock started. ExperimentWorkflow's clock starts at `workflow.now()` of the task that set
`RunState.started_at`: the WorkflowTaskStarted event of the task that scheduled `snapshot-start`. A CheckMetrics at
`at_seconds` is due at that plus at_seconds x hour_seconds / 3600. The floor's clock starts at its first task plus
the phase its input carries, and each of its no-ops carries its own due time.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import WorkflowHistory

from bench.floor import NOOP_ACTIVITY

CHECK_ACTIVITY = "CheckMetrics"


@dataclass
class Check:
    index: int  # checkpoint k of the workflow, due k intervals after its clock started
    due: float  # epoch seconds
    scheduled: float
    started: float | None = None
    completed: float | None = None
    timer_fired: float | None = None  # the timer the workflow waited on before scheduling it, if it had to wait
    task_started: float | None = None  # the workflow task that scheduled it: started, completed
    task_completed: float | None = None


@dataclass
class Execution:
    workflow_id: str
    status: str  # the closing event: completed, failed, timed_out, terminated, canceled, continued_as_new, running
    clock_start: float | None = None  # epoch seconds: checkpoint k is due at clock_start + k x interval
    checks: list[Check] = field(default_factory=list)
    result: Any = None
    task_timeouts: list[float] = field(default_factory=list)  # when a workflow task timed out (a sticky one not
    # picked up within 10 s goes back to the normal queue, where the worker may replay the history)


_CLOSING = {
    "workflow_execution_completed_event_attributes": "completed",
    "workflow_execution_failed_event_attributes": "failed",
    "workflow_execution_timed_out_event_attributes": "timed_out",
    "workflow_execution_terminated_event_attributes": "terminated",
    "workflow_execution_canceled_event_attributes": "canceled",
    "workflow_execution_continued_as_new_event_attributes": "continued_as_new",
}


def _time(event: HistoryEvent) -> float:
    return event.event_time.seconds + event.event_time.nanos / 1e9


def _json(payloads: Any) -> Any:
    return json.loads(payloads.payloads[0].data) if payloads.payloads else None


class _Reader:
    """One pass over a history in event order, keeping what a later event needs: the checks by their
    ActivityTaskScheduled event id, the last timer fired since an activity was scheduled, the floor's phase."""

    def __init__(self, history: WorkflowHistory, hour_seconds: float, check_every_seconds: int) -> None:
        self.events = {e.event_id: e for e in history.events}
        self.hour_seconds, self.check_every_seconds = hour_seconds, check_every_seconds
        self.run = Execution(history.workflow_id, "running")
        self.checks: dict[int, Check] = {}
        self.last_fired: float | None = None
        self.floor_phase: float | None = None  # set for the floor, whose input carries its phase

    def read(self, e: HistoryEvent) -> None:
        kind = e.WhichOneof("attributes")
        if kind == "workflow_execution_started_event_attributes":
            start_input = _json(e.workflow_execution_started_event_attributes.input)
            if isinstance(start_input, dict) and "phase_seconds" in start_input:
                self.floor_phase = float(start_input["phase_seconds"])
        elif kind == "workflow_task_started_event_attributes":
            if self.floor_phase is not None and self.run.clock_start is None:
                self.run.clock_start = _time(e) + self.floor_phase  # the floor's first task's now(), plus its phase
        elif kind == "timer_fired_event_attributes":
            self.last_fired = _time(e)
        elif kind == "workflow_task_timed_out_event_attributes":
            self.run.task_timeouts.append(_time(e))
        elif kind == "activity_task_scheduled_event_attributes":
            self._scheduled(e)
        elif kind == "activity_task_started_event_attributes":
            if (check := self.checks.get(e.activity_task_started_event_attributes.scheduled_event_id)) is not None:
                check.started = _time(e)
        elif kind == "activity_task_completed_event_attributes":
            if (check := self.checks.get(e.activity_task_completed_event_attributes.scheduled_event_id)) is not None:
                check.completed = _time(e)
        elif kind in _CLOSING:
            self.run.status = _CLOSING[kind]
            if kind == "workflow_execution_completed_event_attributes":
                self.run.result = _json(e.workflow_execution_completed_event_attributes.result)

    def _scheduled(self, e: HistoryEvent) -> None:
        a = e.activity_task_scheduled_event_attributes
        call = _json(a.input)
        task = self.events[a.workflow_task_completed_event_id]
        task_started = _time(self.events[task.workflow_task_completed_event_attributes.started_event_id])
        checkpoint = self._checkpoint(a.activity_type.name, call)
        if checkpoint is not None:
            index, due = checkpoint
            self.checks[e.event_id] = Check(index, due, _time(e), timer_fired=self.last_fired,
                                            task_started=task_started, task_completed=_time(task))
        elif isinstance(call, dict) and call.get("step") == "snapshot-start":
            self.run.clock_start = task_started
        self.last_fired = None

    def _checkpoint(self, activity: str, call: Any) -> tuple[int, float] | None:
        """(k, due time) when this activity is checkpoint k, else None."""
        if activity == CHECK_ACTIVITY and self.run.clock_start is not None:
            at = int(call["args"]["at_seconds"])
            return at // self.check_every_seconds, self.run.clock_start + at * self.hour_seconds / 3600
        if activity == NOOP_ACTIVITY:
            return int(call["index"]), float(call["due_epoch"])
        return None


def read_history(history: WorkflowHistory, hour_seconds: float, check_every_seconds: int) -> Execution:
    """The checkpoints of one execution with their due, scheduled, started and completed times."""
    reader = _Reader(history, hour_seconds, check_every_seconds)
    for event in history.events:
        reader.read(event)
    reader.run.checks = list(reader.checks.values())
    return reader.run
