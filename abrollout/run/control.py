"""Manual control: the payloads of stop/promote/alert/change_allocation and the policy checks that refuse
them. Payloads come from the UI or the CLI and are validated as strictly as specs."""

from __future__ import annotations

import math
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from abrollout.contracts.records import DecisionState
from abrollout.contracts.spec import CONTROL_ARM, ArmName
from abrollout.policy import cite
from abrollout.run.state import RunState

Reason = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)]


class Control(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StopRequest(Control):
    reason: Reason


class PromoteRequest(Control):
    variant: ArmName
    reason: Reason = "manual promote"


class AlertRequest(Control):
    """A pushed alert (e.g. from Alertmanager or the CLI): triggers an immediate guardrail check."""

    source: Annotated[str, StringConstraints(min_length=1, max_length=100)] = "cli"
    reason: Reason = "alert"


class AllocationChange(Control):
    """A request to change exposure. Only the next pre-registered ramp step can be accepted (prereg.3)."""

    split: dict[ArmName, float] | None = None
    exposure_rules: list[Annotated[str, StringConstraints(max_length=2000)]] | None = Field(default=None,
                                                                                            max_length=50)
    ramp_step: int | None = Field(default=None, ge=0, le=100)
    reason: Reason = "allocation change"


class Refused(ValueError):
    """A control request that policy forbids; the message cites the clause."""


def _require_running(state: RunState) -> None:
    if state.closing or state.state is not DecisionState.running:
        raise Refused(f"the experiment is already {state.state.value}; nothing to change "
                      f"[{cite('prereg.2')}]")


def check_stop(state: RunState, request: StopRequest) -> None:
    _require_running(state)


def check_promote(state: RunState, request: PromoteRequest) -> None:
    _require_running(state)
    if request.variant not in state.plan.arms:
        raise Refused(f"'{request.variant}' is not an arm of this experiment (arms: {', '.join(state.plan.arms)}) "
                      f"[{cite('manual.2')}]")
    if request.variant == CONTROL_ARM:
        raise Refused(f"promoting control is a stop: use stop instead [{cite('manual.1')}]")
    if state.breaches:
        raise Refused(f"a guardrail is breached ({', '.join(state.breaches)}); promotion is refused "
                      f"[{cite('manual.2')}]")
    if state.started_at is None:
        raise Refused(f"no traffic has been allocated yet [{cite('prereg.1')}]")


def check_allocation_change(state: RunState, request: AllocationChange) -> int:
    """The ramp step index to apply, or Refused: a split or rule change mid-run is never accepted."""
    _require_running(state)
    plan = state.plan
    if request.split is not None and not _same_split(request.split, plan.split):
        raise Refused(f"the split is pre-registered as {plan.split} and cannot change mid-run "
                      f"[{cite('prereg.2')}]")
    if request.exposure_rules is not None and list(request.exposure_rules) != plan.exposure_rules:
        raise Refused(f"exposure rules are pre-registered and cannot change mid-run [{cite('prereg.2')}]")
    next_step = state.ramp_applied + 1
    if request.ramp_step is None:
        if request.split is None and request.exposure_rules is None:
            raise Refused(f"nothing to change: name the next pre-registered ramp step [{cite('prereg.3')}]")
        raise Refused(f"the requested allocation is what is registered; exposure changes only by ramp step "
                      f"[{cite('prereg.3')}]")
    if request.ramp_step != next_step or next_step >= len(plan.ramp):
        steps = ", ".join(f"{i}: {s.percent:g}%" for i, s in enumerate(plan.ramp))
        raise Refused(f"ramp step {request.ramp_step} is not the next pre-registered step (registered: {steps}; "
                      f"applied: {state.ramp_applied}) [{cite('prereg.3')}]")
    return next_step


def _same_split(a: dict[str, float], b: dict[str, float]) -> bool:
    return a.keys() == b.keys() and all(math.isclose(a[k], b[k], abs_tol=1e-9) for k in a)
