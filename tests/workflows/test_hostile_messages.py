"""Whatever anyone sends to a running experiment, through the raw API rather than starter.py: no input, two inputs,
null, binary, wrong types, unknown fields, bytes that are not JSON, an unknown encoding, deep nesting, 1.9 MB; to
every signal (and to signal names that do not exist), every update and every query. Not one workflow task fails,
signals are dropped, updates are refused, queries answer or fail alone; afterwards the experiment still checks on
schedule, and an empty `stop` (the Temporal UI's Signal dialog with nothing typed) stops it with a rollback."""

from __future__ import annotations

import json
from datetime import timedelta

from temporalio.api.common.v1 import Payload, Payloads, WorkflowExecution
from temporalio.api.enums.v1 import EventType, UpdateWorkflowExecutionLifecycleStage
from temporalio.api.query.v1 import WorkflowQuery
from temporalio.api.update.v1 import Input, Meta, Request, WaitPolicy
from temporalio.api.workflowservice.v1 import (
    QueryWorkflowRequest,
    SignalWorkflowExecutionRequest,
    UpdateWorkflowExecutionRequest,
)
from temporalio.client import Client
from temporalio.service import RPCError

from abrollout.contracts.records import DecisionState
from abrollout.plan.planner import flag_key
from client.experiments import start_experiment
from tests.workflows.conftest import Lab, golden_spec


def _json(value: object) -> Payload:
    return Payload(metadata={"encoding": b"json/plain"}, data=json.dumps(value).encode())


HOSTILE: dict[str, list[Payload]] = {
    "no input": [],
    "two inputs": [_json({"reason": "a"}), _json({"reason": "b"})],
    "null": [Payload(metadata={"encoding": b"binary/null"})],
    "binary": [Payload(metadata={"encoding": b"binary/plain"}, data=bytes(range(256)))],
    "a number": [_json(42)],
    "a list": [_json(["stop", "now"])],
    "wrong types": [_json({"reason": 5, "variant": ["x"], "ramp_step": "one", "source": {}, "split": 7})],
    "unknown fields": [_json({"reason": "x", "drop_table": True})],
    "a reason of 100 kB": [_json({"reason": "x" * 100_000})],
    "not JSON": [Payload(metadata={"encoding": b"json/plain"}, data=b"{not json")],
    "unknown encoding": [Payload(metadata={"encoding": b"application/x-evil"}, data=b"\x00\x01")],
    "protobuf of no known type": [Payload(metadata={"encoding": b"json/protobuf", "messageType": b"evil.Nope"},
                                          data=b"{}")],
    "nested 100,000 deep": [Payload(metadata={"encoding": b"json/plain"}, data=b"[" * 100_000 + b"]" * 100_000)],
    "1.9 MB": [_json({"reason": "y" * 1_900_000})],
}
SIGNALS = ("stop", "promote", "alert", "Stop", "drop-everything")  # the last two do not exist
MEANS_STOP = {("stop", "no input"), ("stop", "null")}  # an empty stop is a stop: sent last, on purpose
UPDATES = ("request_stop", "request_promote", "change_allocation")
QUERIES = ("report", "receipts")


async def _signal(client: Client, workflow_id: str, name: str, payloads: list[Payload]) -> None:
    await client.workflow_service.signal_workflow_execution(SignalWorkflowExecutionRequest(
        namespace=client.namespace, workflow_execution=WorkflowExecution(workflow_id=workflow_id), signal_name=name,
        input=Payloads(payloads=payloads), identity="hostile-test"))


async def _update(client: Client, workflow_id: str, name: str, payloads: list[Payload], n: int) -> str:
    """'rejected', 'accepted' or the RPC error's status."""
    try:
        response = await client.workflow_service.update_workflow_execution(UpdateWorkflowExecutionRequest(
            namespace=client.namespace, workflow_execution=WorkflowExecution(workflow_id=workflow_id),
            wait_policy=WaitPolicy(
                lifecycle_stage=UpdateWorkflowExecutionLifecycleStage.UPDATE_WORKFLOW_EXECUTION_LIFECYCLE_STAGE_COMPLETED),
            request=Request(meta=Meta(update_id=f"hostile-{n}", identity="hostile-test"),
                            input=Input(name=name, args=Payloads(payloads=payloads)))))
    except RPCError as exc:
        return exc.status.name
    return "rejected" if response.outcome.HasField("failure") else "accepted"


async def _query(client: Client, workflow_id: str, name: str, payloads: list[Payload]) -> str:
    try:
        response = await client.workflow_service.query_workflow(QueryWorkflowRequest(
            namespace=client.namespace, execution=WorkflowExecution(workflow_id=workflow_id),
            query=WorkflowQuery(query_type=name, query_args=Payloads(payloads=payloads))))
    except RPCError:
        return "failed"
    return "answered" if response.query_result.payloads else "empty"


async def test_no_payload_fails_a_workflow_task_and_an_empty_stop_still_stops(lab: Lab) -> None:
    client = lab.env.client
    handle = await start_experiment(client, golden_spec("steady", name="hostile"), lab.task_queue)
    await lab.env.sleep(timedelta(hours=1, minutes=30))
    updates: dict[str, str] = {}
    queries: dict[str, str] = {}
    for kind, payloads in HOSTILE.items():
        for name in SIGNALS:
            if (name, kind) not in MEANS_STOP:
                await _signal(client, handle.id, name, payloads)
        for name in UPDATES:
            updates[f"{name} with {kind}"] = await _update(client, handle.id, name, payloads, len(updates))
        for name in QUERIES:
            queries[f"{name} with {kind}"] = await _query(client, handle.id, name, payloads)
    tried = len(HOSTILE) * (len(SIGNALS) + len(UPDATES) + len(QUERIES)) - len(MEANS_STOP)
    print(f"hostile payloads: {len(HOSTILE)} kinds x {len(SIGNALS)} signal names, {len(UPDATES)} updates, "
          f"{len(QUERIES)} queries = {tried} messages")
    assert set(updates.values()) <= {"rejected", "INVALID_ARGUMENT"}, updates
    assert queries["report with no input"] == "answered" and queries["receipts with two inputs"] == "answered"

    report = await handle.query("report")
    assert report["decision"]["state"] == "running", "junk decided nothing"
    await lab.env.sleep(timedelta(hours=2))
    checks = [r for r in (await handle.query("receipts")) if r["tool"] == "CheckMetrics"]
    assert len(checks) >= 3, "the scheduled checks go on"

    await _signal(client, handle.id, "stop", [])  # the UI's Signal dialog, box left empty
    final = await handle.result()
    assert final.decision.state is DecisionState.rollback
    assert final.decision.rationale == "manual stop: no reason given"
    flag = await lab.adapters.flags.read(flag_key("hostile"))
    assert flag is not None and [v.name for s in flag.strategies for v in s.variants] == ["control"]
    failed = [e for e in (await handle.fetch_history()).events
              if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED]
    assert failed == [], f"{len(failed)} workflow tasks failed"
