"""The planner: deterministic proposals, keys that change exactly when their args change, verification."""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest
from pydantic import TypeAdapter, ValidationError

from abrollout.contracts.records import DecisionState
from abrollout.contracts.tools import ToolProposal
from abrollout.plan.planner import check_proposal, closing_proposals, plan
from abrollout.plan.verify import Blocked, verify
from abrollout.spec.loader import check_raw
from tests.conftest import BASE_SPEC

KEY = re.compile(r"^[a-z0-9-]+:[a-z0-9-]+:[0-9a-f]{16}$")


def _plan(raw: dict[str, Any]):  # type: ignore[no-untyped-def]
    check = check_raw(raw)
    assert check.spec is not None, [str(p) for p in check.problems]
    return plan(check.spec)


def test_same_spec_same_plan_byte_for_byte() -> None:
    first = _plan(copy.deepcopy(BASE_SPEC)).model_dump_json()
    second = _plan(copy.deepcopy(BASE_SPEC)).model_dump_json()
    assert first == second


def test_keys_are_deterministic_well_formed_and_unique() -> None:
    p = _plan(copy.deepcopy(BASE_SPEC))
    keys = [x.idempotency_key for x in [*p.setup, *p.ramp_steps]]
    assert all(KEY.match(k) for k in keys), keys
    assert len(set(keys)) == len(keys)
    assert [x.step for x in p.setup] == ["register", "flag", "run", "allocate-0"]


def test_a_changed_arg_changes_only_the_keys_that_carry_it() -> None:
    raw = copy.deepcopy(BASE_SPEC)
    before = {x.step: x.idempotency_key for x in _plan(raw).setup}
    raw["allocation"] = {"split": {"control": 60, "treatment": 40}}
    after = {x.step: x.idempotency_key for x in _plan(raw).setup}
    assert before["allocate-0"] != after["allocate-0"]
    assert before["flag"] == after["flag"]
    assert before["run"] == after["run"]


def test_ramp_steps_are_planned_in_order_with_preconditions() -> None:
    raw = copy.deepcopy(BASE_SPEC)
    raw["ramp"] = [{"percent": 10, "at": "0h"}, {"percent": 50, "at": "1d"}, {"percent": 100, "at": "2d"}]
    p = _plan(raw)
    assert [s.args.rollout_percent for s in p.ramp_steps] == [50, 100]
    assert p.ramp_steps[0].preconditions == ["done:allocate-0", "state:running"]
    assert p.setup[3].preconditions == ["done:register", "done:flag", "done:run", "state:running"]


def test_every_proposal_has_valid_typed_args_once_placeholders_resolve() -> None:
    p = _plan(copy.deepcopy(BASE_SPEC))
    refs = {"register": "EXP-1", "flag": "F-1", "run": "RUN-1", "allocate-0": "CH-1"}
    proposals = [*p.setup, check_proposal(p, "guardrail", 3, 3 * 3600),
                 *closing_proposals(p, DecisionState.guardrail_stop, "latency breach")]
    for proposal in proposals:
        resolved = verify(proposal, refs, "running", breached=False)
        assert type(resolved) is type(proposal.args) and proposal.args.tool is proposal.name, proposal.step
        assert "${" not in resolved.model_dump_json(), proposal.step
    start_run = verify(p.setup[2], refs, "running", breached=False)
    assert start_run.model_dump()["exp_id"] == "EXP-1"


def test_allocation_before_registration_is_blocked_citing_prereg() -> None:
    p = _plan(copy.deepcopy(BASE_SPEC))
    allocate = p.setup[3]
    with pytest.raises(Blocked, match=r"done:register.*exp_policy\.v5#prereg\.1"):
        verify(allocate, {"flag": "F", "run": "R"}, "running", breached=False)


def test_unknown_tool_and_args_of_another_tool_are_no_proposal() -> None:
    p = _plan(copy.deepcopy(BASE_SPEC))
    proposals = TypeAdapter(ToolProposal)
    flag = p.setup[1].model_dump(mode="json")
    assert proposals.validate_python(flag) == p.setup[1]
    for rogue in ({**flag, "name": "DropDatabase"}, {**flag, "name": "StopRun"},
                  {**flag, "args": {**flag["args"], "variants": "control"}}):
        with pytest.raises(ValidationError):
            proposals.validate_python(rogue)


def test_a_ref_that_breaks_the_args_and_a_breach_are_blocked() -> None:
    p = _plan(copy.deepcopy(BASE_SPEC))
    refs = {"register": "EXP-1", "flag": "F-1", "run": "RUN-1", "allocate-0": "CH-1"}
    with pytest.raises(Blocked, match="not valid for StartRun"):
        verify(p.setup[2], {**refs, "register": "x" * 201}, "running", False)
    promote = closing_proposals(p, DecisionState.promote, "win", arm="treatment")[0]
    with pytest.raises(Blocked, match="guardrail is breached"):
        verify(promote, refs, "running", True)
    assert verify(promote, refs, "running", False) == promote.args


def test_closing_sequences_follow_policy_order() -> None:
    p = _plan(copy.deepcopy(BASE_SPEC))
    names = {s: [x.name for x in closing_proposals(p, s, "r", arm="treatment")]
             for s in (DecisionState.guardrail_stop, DecisionState.promote, DecisionState.rollback,
                       DecisionState.inconclusive)}
    assert names[DecisionState.guardrail_stop] == ["StopRun", "RollbackVariant", "OpenTicket"]
    assert names[DecisionState.promote] == ["PromoteVariant", "StopRun"]
    assert names[DecisionState.rollback] == ["StopRun", "RollbackVariant"]
    assert names[DecisionState.inconclusive] == ["RollbackVariant", "StopRun"]
