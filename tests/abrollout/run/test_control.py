"""Manual control policy without Temporal: what a stop, promote or allocation change may do, and why not."""

from __future__ import annotations

import copy
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from abrollout.contracts.records import DecisionState
from abrollout.plan.planner import plan
from abrollout.run.control import (
    AllocationChange,
    PromoteRequest,
    Refused,
    StopRequest,
    check_allocation_change,
    check_promote,
    check_stop,
)
from abrollout.run.state import RunState
from abrollout.spec.loader import check_raw
from tests.conftest import BASE_SPEC


@pytest.fixture
def running() -> RunState:
    raw = copy.deepcopy(BASE_SPEC) | {"ramp": [{"percent": 10, "at": "0h"}, {"percent": 100, "at": "2d"}]}
    spec = check_raw(raw).spec
    assert spec is not None
    state = RunState(spec=spec, plan=plan(spec))
    state.started_at = datetime(2026, 1, 1, tzinfo=UTC)
    state.ramp_applied = 0
    return state


def test_a_mid_run_split_change_is_refused_citing_prereg_2(running: RunState) -> None:
    with pytest.raises(Refused, match=r"exp_policy.v5#prereg.2"):
        check_allocation_change(running, AllocationChange(split={"control": 70, "treatment": 30}))
    with pytest.raises(Refused, match=r"exp_policy.v5#prereg.2"):
        check_allocation_change(running, AllocationChange(exposure_rules=['plan == "pro"']))


def test_only_the_next_pre_registered_ramp_step_is_accepted(running: RunState) -> None:
    with pytest.raises(Refused, match=r"exp_policy.v5#prereg.3"):
        check_allocation_change(running, AllocationChange(ramp_step=0))
    with pytest.raises(Refused, match=r"exp_policy.v5#prereg.3"):
        check_allocation_change(running, AllocationChange())
    assert check_allocation_change(running, AllocationChange(ramp_step=1)) == 1
    same = AllocationChange(split={"control": 50, "treatment": 50}, ramp_step=1)
    assert check_allocation_change(running, same) == 1
    running.ramp_applied = 1
    with pytest.raises(Refused, match=r"prereg.3"):
        check_allocation_change(running, AllocationChange(ramp_step=2))


def test_promote_needs_a_spec_arm_that_is_not_control_and_no_breach(running: RunState) -> None:
    check_promote(running, PromoteRequest(variant="treatment"))
    with pytest.raises(Refused, match=r"manual.2"):
        check_promote(running, PromoteRequest(variant="other"))
    with pytest.raises(Refused, match=r"manual.1"):
        check_promote(running, PromoteRequest(variant="control"))
    running.breaches = ["error_rate"]
    with pytest.raises(Refused, match=r"guardrail is breached .*manual.2"):
        check_promote(running, PromoteRequest(variant="treatment"))


def test_nothing_can_be_changed_once_decided(running: RunState) -> None:
    running.decide(DecisionState.promote, "won", [])
    with pytest.raises(Refused, match="already promote"):
        check_stop(running, StopRequest(reason="late"))


def test_payloads_are_validated_strictly() -> None:
    with pytest.raises(ValidationError):
        StopRequest(reason="")
    with pytest.raises(ValidationError):
        StopRequest.model_validate({"reason": "x", "force": True})
    with pytest.raises(ValidationError):
        PromoteRequest(variant="Not An Arm!")
    with pytest.raises(ValidationError):
        StopRequest(reason="x" * 501)
