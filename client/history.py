"""The receipt trail read back from the workflow history: every tool call with its event id."""

from __future__ import annotations

from dataclasses import dataclass

from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHistory

from abrollout.contracts.tools import ToolReceipt


@dataclass(frozen=True)
class HistoryReceipt:
    event_id: int
    run_id: str
    receipt: ToolReceipt


async def receipts_in(client: Client, history: WorkflowHistory, run_id: str) -> list[HistoryReceipt]:
    """Completed tool activities of one run's history, in order, decoded as receipts."""
    out: list[HistoryReceipt] = []
    for event in history.events:
        if event.event_type != EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
            continue
        payloads = event.activity_task_completed_event_attributes.result.payloads
        (receipt,) = await client.data_converter.decode(payloads, [ToolReceipt])
        out.append(HistoryReceipt(event_id=event.event_id, run_id=run_id, receipt=receipt))
    return out


async def receipt_trail(client: Client, workflow_id: str) -> list[HistoryReceipt]:
    """Receipts across every run of the workflow (continue-as-new starts a new run with the same id), oldest
    first, by following each run's `continued_execution_run_id` back to the first."""
    runs: list[tuple[str, WorkflowHistory]] = []
    run_id: str | None = None
    while True:
        handle = client.get_workflow_handle(workflow_id, run_id=run_id)
        history = await handle.fetch_history()
        first = history.events[0].workflow_execution_started_event_attributes
        current = run_id or (await handle.describe()).run_id
        runs.append((current, history))
        if not first.continued_execution_run_id:
            break
        run_id = first.continued_execution_run_id
    trail: list[HistoryReceipt] = []
    for current, history in reversed(runs):
        trail += await receipts_in(client, history, current)
    return trail
