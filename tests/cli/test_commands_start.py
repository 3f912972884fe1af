"""`starter.py start`: it answers once the registry has registered the experiment, with the ids and where to
follow it; it refuses a duplicate, a refusal at registration and a bad spec with exit 2, leaving nothing running."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowExecutionStatus

from abrollout.run.control import StopRequest
from client.exits import BAD_INPUT, OK
from tests.cli.test_commands import ROOT, STEADY, UI, Lab, absent, lab_fixture  # noqa: F401
from workflows.experiment import ExperimentWorkflow
from workflows.search_attributes import EXPERIMENT_DOMAIN, EXPERIMENT_STATE, PRIMARY_METRIC

POLICIES = ROOT / "examples" / "policies-refund-auto-approve.yaml"


async def test_start_answers_with_the_ids_once_registered_and_where_to_follow(lab: Lab) -> None:
    shown = await lab.starter("start", lab.spec(STEADY, "started-once"))
    handle = await lab.settled("started-once")
    run_id = (await handle.describe()).run_id
    exp_id = (await handle.query(ExperimentWorkflow.report)).registration.exp_id
    assert (shown.code, shown.err) == (OK, "")
    assert shown.out == (f"started exp-started-once (run {run_id}), registered as {exp_id}\n"
                         f"  Temporal UI: {UI}/namespaces/default/workflows/exp-started-once/{run_id}/history\n"
                         "  next: python starter.py watch exp-started-once\n")


async def test_start_runs_the_experiment_workflow_on_the_task_queue_with_its_search_attributes(lab: Lab) -> None:
    shown = await lab.starter("start", lab.spec(STEADY, "sent-to-temporal"), "--tool-timeout", "7")
    assert shown.code == OK, shown.err
    description = await (await lab.settled("sent-to-temporal")).describe()
    assert (description.workflow_type, description.task_queue) == ("ExperimentWorkflow", lab.task_queue)
    attributes = description.typed_search_attributes
    assert (attributes.get(EXPERIMENT_DOMAIN), attributes.get(EXPERIMENT_STATE), attributes.get(PRIMARY_METRIC)) \
        == ("ui", "running", "engagement")
    history = await lab.handle("sent-to-temporal").fetch_history()
    timeouts = {e.activity_task_scheduled_event_attributes.activity_type.name:
                e.activity_task_scheduled_event_attributes.start_to_close_timeout.ToTimedelta()
                for e in history.events if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED}
    assert timeouts["RegisterExperiment"] == timedelta(seconds=7), "--tool-timeout bounds each tool call"


async def test_start_wait_follows_the_experiment_to_its_decision(lab: Lab) -> None:
    following = asyncio.create_task(lab.starter("start", lab.spec(STEADY, "start-wait"), "--wait"))
    handle = await lab.settled("start-wait")
    await handle.execute_update(ExperimentWorkflow.request_stop, StopRequest(reason="seen enough"))
    shown = await following
    assert (shown.code, shown.err) == (OK, "")
    lines = shown.out.splitlines()
    assert lines[0].startswith("started exp-start-wait (run ") and "next:" not in shown.out
    receipts = [line.split()[1] for line in lines if line.startswith("ok  ")]
    assert receipts == ["register", "flag", "run", "allocate-0", "snapshot-start", "stop", "rollback",
                        "snapshot-final"], "each receipt once, as it arrived"
    assert "start-wait (ui) is rollback: manual stop: seen enough" in shown.out


async def test_starting_a_name_again_exits_2_and_leaves_the_first_run_alone(lab: Lab) -> None:
    first = await lab.started("twice")
    run_id = (await first.describe()).run_id
    shown = await lab.starter("start", lab.spec(STEADY, "twice"))
    assert (shown.code, shown.out) == (BAD_INPUT, "")
    assert shown.err == ("error: an experiment named 'twice' already exists (exp-twice); fix: give the spec a new "
                         "`name`\n")
    description = await lab.handle("twice").describe()
    assert (description.run_id, description.status) == (run_id, WorkflowExecutionStatus.RUNNING)


async def test_a_refusal_at_registration_exits_2_with_the_clause_and_leaves_nothing_running(lab: Lab,
                                                                                           tmp_path: Path) -> None:
    async with lab.alone(tmp_path / "data") as alone:
        taken = await alone.starter("start", alone.spec(POLICIES, "slot-taken", max_concurrent=1))
        assert taken.code == OK, taken.err
        refused = await alone.starter("start", alone.spec(POLICIES, "slot-refused", max_concurrent=1))
        assert (refused.code, refused.out) == (BAD_INPUT, "")
        assert refused.err == ("refused: exp-slot-refused was not started: 1 policies experiments are running and "
                               "max_concurrent is 1 [exp_policy.v5#concurrency.1]\n")
        assert (await alone.handle("slot-refused").describe()).status == WorkflowExecutionStatus.FAILED
        assert (await alone.handle("slot-taken").describe()).status == WorkflowExecutionStatus.RUNNING


async def test_a_bad_spec_exits_2_naming_the_field_and_starts_nothing(lab: Lab) -> None:
    spec = lab.spec(ROOT / "tests" / "bad_specs" / "split-sum.yaml", "bad-split")
    shown = await lab.starter("start", spec)
    assert (shown.code, shown.out) == (BAD_INPUT, "")
    first, *problems = shown.err.splitlines()
    assert first.startswith(f"{spec}: ") and first.endswith("problem(s); nothing was started.")
    assert any("allocation.split" in p and "exp_policy.v5#split.1" in p for p in problems), problems
    assert await absent(lab, "bad-split")


async def test_a_missing_spec_file_exits_2_saying_so(lab: Lab, tmp_path: Path) -> None:
    shown = await lab.starter("start", str(tmp_path / "nowhere.yaml"))
    assert (shown.code, shown.out) == (BAD_INPUT, "")
    assert shown.err == (f"error: spec file '{tmp_path / 'nowhere.yaml'}' does not exist; fix: pass the path of a "
                         "YAML spec (see examples/)\n")


@pytest.mark.parametrize("seconds", ["0", "3601"])
async def test_a_tool_timeout_out_of_range_exits_2_naming_the_flag(lab: Lab, seconds: str) -> None:
    shown = await lab.starter("start", lab.spec(STEADY, f"timeout-{seconds}"), "--tool-timeout", seconds)
    assert (shown.code, shown.out) == (BAD_INPUT, "")
    assert "--tool-timeout" in shown.err and "Traceback" not in shown.err
    assert await absent(lab, f"timeout-{seconds}")
