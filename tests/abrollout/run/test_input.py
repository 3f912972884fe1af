"""The workflow's input: the plan travels in it once, a continued run carries no second copy, and inputs recorded
before the plan travelled (the saved golden histories) are planned to exactly the keys their histories used."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from abrollout.contracts.tools import ToolName, ToolReceipt
from abrollout.plan.planner import ExperimentPlan, plan
from abrollout.run.input import ExperimentInput
from abrollout.run.state import RunState

HISTORIES = sorted((Path(__file__).resolve().parents[2] / "replay" / "histories").glob("*.json"))


def _payload(payloads: dict[str, Any]) -> Any:
    return json.loads(base64.b64decode(payloads["payloads"][0]["data"]))


def _events(path: Path) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = json.loads(path.read_text())["history"]["events"]
    return events


def _recorded_input(path: Path) -> dict[str, Any]:
    recorded: dict[str, Any] = _payload(_events(path)[0]["workflowExecutionStartedEventAttributes"]["input"])
    return recorded


@pytest.mark.parametrize("path", HISTORIES, ids=[p.stem for p in HISTORIES])
def test_an_input_recorded_without_a_plan_is_planned_to_the_keys_its_history_used(path: Path) -> None:
    recorded = _recorded_input(path)
    assert "plan" not in recorded
    inp = ExperimentInput.model_validate(recorded)
    assert inp.plan == plan(inp.spec)
    planned = {p.step: p.idempotency_key for p in [*inp.plan.setup, *inp.plan.ramp_steps]}
    scheduled = [_payload(e["activityTaskScheduledEventAttributes"]["input"]) for e in _events(path)
                 if "activityTaskScheduledEventAttributes" in e]
    used = {call["step"]: call["idempotency_key"] for call in scheduled if call["step"] in planned}
    assert used and all(planned[step] == key for step, key in used.items())


def test_a_continued_run_carries_spec_and_plan_once() -> None:
    inp = ExperimentInput.model_validate(_recorded_input(HISTORIES[0]))
    state = RunState(spec=inp.spec, plan=inp.plan, rationale="carried")
    continued = ExperimentInput(spec=inp.spec, plan=inp.plan, state=state)
    wire = json.loads(continued.model_dump_json())
    assert "spec" not in wire["state"] and "plan" not in wire["state"]
    back = ExperimentInput.model_validate(wire)
    assert back.state is not None and back.state.spec == inp.spec and back.state.plan == inp.plan
    assert back.state.rationale == "carried"


def test_a_state_carried_before_keeps_its_own_plan_with_its_copies_and_untyped_args() -> None:
    inp = ExperimentInput.model_validate(_recorded_input(HISTORIES[0]))
    old_plan = inp.plan.model_dump(mode="json") | {"arms": inp.plan.arms, "split": inp.plan.split,
                                                   "primary_metric": inp.plan.primary_metric,
                                                   "guardrails": [g.model_dump() for g in inp.plan.guardrails]}
    old_plan.pop("plan_hash")
    snapshot = {"name": "SnapshotDashboard", "step": "snapshot-start", "preconditions": ["done:run"],
                "idempotency_key": "k", "args": {"run_id": "${run.ref}", "exp_key": inp.plan.exp_key,
                                                 "label": "start", "data": {"digest": "abc"}}}
    old_state = {"spec": inp.spec.model_dump(mode="json"), "plan": old_plan, "proposals": [snapshot]}
    back = ExperimentInput.model_validate({"spec": inp.spec.model_dump(mode="json"), "state": old_state})
    assert back.state is not None and back.plan == back.state.plan
    assert ExperimentPlan.model_validate(old_plan).setup == inp.plan.setup
    assert back.state.proposals[0].name is ToolName.SnapshotDashboard


def test_a_receipt_recorded_with_the_verdict_in_data_reads_as_a_typed_check() -> None:
    for path in HISTORIES:
        for event in _events(path):
            attributes = event.get("activityTaskCompletedEventAttributes")
            result = _payload(attributes["result"]) if attributes else {}
            if result.get("tool") == ToolName.CheckMetrics and result.get("data"):
                receipt = ToolReceipt.model_validate(result)
                assert receipt.check is not None and receipt.data is None
                assert receipt.check.verdict.model_dump(mode="json") == result["data"]["verdict"]
                return
    pytest.fail("no saved history holds a CheckMetrics receipt")
