"""`stop`, `promote`, `allocate` and `alert`: what each sends to the experiment and prints back, a policy refusal
as exit 2 with its clause and nothing written to the history, and a closed experiment as a refusal too."""

from __future__ import annotations

import pytest
from temporalio.api.common.v1 import Payloads
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowExecutionStatus

from abrollout.contracts.records import DecisionState
from abrollout.run.control import AlertRequest, AllocationChange, Control, PromoteRequest, StopRequest
from client.exits import BAD_INPUT, OK
from tests.cli.test_commands import GOLDEN, Lab, lab_fixture  # noqa: F401
from workflows.experiment import ExperimentWorkflow

REQUESTS: dict[str, type[Control]] = {"request_stop": StopRequest, "request_promote": PromoteRequest,
                                      "change_allocation": AllocationChange, "alert": AlertRequest}


async def requests(lab: Lab, name: str) -> list[tuple[str, Control]]:
    """Every update the experiment accepted and every signal it got, decoded: what the CLI sent it."""
    sent: list[tuple[str, Payloads]] = []
    for event in (await lab.handle(name).fetch_history()).events:
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED:
            request = event.workflow_execution_update_accepted_event_attributes.accepted_request.input
            sent.append((request.name, request.args))
        elif event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED:
            signal = event.workflow_execution_signaled_event_attributes
            sent.append((signal.signal_name, signal.input))
    return [(kind, (await lab.client.data_converter.decode(args.payloads, [REQUESTS[kind]]))[0])
            for kind, args in sent]


async def test_stop_rolls_back_and_prints_the_decision(lab: Lab) -> None:
    handle = await lab.started("stopped")
    shown = await lab.starter("stop", "stopped", "--reason", "launch freeze")
    assert (shown.code, shown.err) == (OK, "")
    lines = shown.out.splitlines()
    assert lines[:2] == ["stopped: rollback", "  manual stop: launch freeze"]
    assert lines[-1] == "  receipts: 8 tool calls, 0 not ok"
    assert await requests(lab, "stopped") == [("request_stop", StopRequest(reason="launch freeze"))]
    report = await handle.result()
    assert report.decision.state is DecisionState.rollback
    flag = await lab.adapters.flags.read("abr.stopped")
    assert flag is not None and [v.name for v in flag.strategies[0].variants] == ["control"]


async def test_promote_promotes_the_arm_and_prints_the_decision(lab: Lab) -> None:
    handle = await lab.started("promoted")
    shown = await lab.starter("promote", "promoted", "--variant", "treatment", "--reason", "PM review")
    assert (shown.code, shown.err) == (OK, "")
    assert shown.out.splitlines()[0] == "promoted: promote (treatment)"
    assert await requests(lab, "promoted") == [("request_promote", PromoteRequest(variant="treatment",
                                                                                  reason="PM review"))]
    assert (await handle.result()).decision.state is DecisionState.promote
    flag = await lab.adapters.flags.read("abr.promoted")
    assert flag is not None and [v.name for v in flag.strategies[0].variants] == ["treatment"]


async def test_allocate_applies_the_next_preregistered_ramp_step(lab: Lab) -> None:
    handle = await lab.started("ramped", GOLDEN / "abn.yaml")
    shown = await lab.starter("allocate", "ramped", "--ramp-step", "1", "--reason", "looks healthy")
    assert (shown.code, shown.err) == (OK, "")
    assert "  exposure 100% of eligible users; split control 34%, ltr_v3 33%, ltr_v3_fresh 33%" in shown.out
    assert await requests(lab, "ramped") == [("change_allocation", AllocationChange(ramp_step=1,
                                                                                    reason="looks healthy"))]
    assert (await handle.query(ExperimentWorkflow.report)).allocation.exposure_percent == 100


async def test_alert_asks_for_a_guardrail_check_now(lab: Lab) -> None:
    await lab.started("alerted")
    shown = await lab.starter("alert", "alerted", "--reason", "p95 latency page")
    assert (shown.code, shown.err) == (OK, "")
    assert shown.out == ("alert sent to exp-alerted: a guardrail check runs now (or after the cool-down of the last "
                         "alert check)\n")
    assert await requests(lab, "alerted") == [("alert", AlertRequest(source="cli", reason="p95 latency page"))]
    await lab.checked("alerted")


REFUSALS = {
    "promote an arm it lacks": (("promote", "--variant", "nope"), "refused: 'nope' is not an arm of this experiment "
                                "(arms: control, treatment) [exp_policy.v5#manual.2]"),
    "promote control": (("promote", "--variant", "control"),
                        "refused: promoting control is a stop: use stop instead [exp_policy.v5#manual.1]"),
    "change the split": (("allocate", "--split", "control=70,treatment=30"), "refused: the split is pre-registered "
                         "as {'control': 50.0, 'treatment': 50.0} and cannot change mid-run [exp_policy.v5#prereg.2]"),
    "a ramp step not registered": (("allocate", "--ramp-step", "1"), "refused: ramp step 1 is not the next "
                                   "pre-registered step (registered: 0: 100%; applied: 0) [exp_policy.v5#prereg.3]"),
}


@pytest.fixture(scope="module")
async def refusing(lab: Lab) -> str:
    """A running experiment past its set-up that every refusal below is asked of: none may change it."""
    await lab.started("refusing")
    return "refusing"


@pytest.mark.parametrize("case", REFUSALS)
async def test_a_policy_refusal_exits_2_with_its_clause_and_changes_nothing(lab: Lab, refusing: str,
                                                                           case: str) -> None:
    before = await lab.events(refusing)
    (command, *flags), refusal = REFUSALS[case]
    shown = await lab.starter(command, refusing, *flags)
    assert (shown.code, shown.out, shown.err) == (BAD_INPUT, "", refusal + "\n")
    assert await lab.events(refusing) == before, "a refused update leaves no trace in the history"
    assert (await lab.handle(refusing).describe()).status == WorkflowExecutionStatus.RUNNING


CLOSED = {"stop": ("--reason", "again"), "promote": ("--variant", "treatment"), "allocate": ("--ramp-step", "1")}


@pytest.fixture(scope="module")
async def closed(lab: Lab) -> str:
    """An experiment stopped by an update, its workflow completed."""
    handle = await lab.started("closed")
    await handle.execute_update(ExperimentWorkflow.request_stop, StopRequest(reason="done"))
    await handle.result()
    return "closed"


@pytest.mark.parametrize("command", [*CLOSED, "alert"])
async def test_asking_a_closed_experiment_exits_2_saying_it_no_longer_runs(lab: Lab, closed: str,
                                                                          command: str) -> None:
    shown = await lab.starter(command, closed, *CLOSED.get(command, ()))
    assert (shown.code, shown.out) == (BAD_INPUT, "")
    assert shown.err == ("refused: exp-closed is no longer running; nothing to check\n" if command == "alert" else
                         "refused: exp-closed is no longer running (workflow execution already completed)\n")
    assert await requests(lab, closed) == [("request_stop", StopRequest(reason="done"))], "nothing else reached it"
