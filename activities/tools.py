"""The ten tools as typed activities, each a few lines over the adapters; workflows call them by reference.

Idempotency lives in the adapters (each stores the key with its effect), flag read-back in `flag_changes`; the `tool`
decorator adds heartbeats (a dead worker's attempt is retried soon, a long query stays alive), one log line, and the
mapping of refusals to non-retryable errors.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import structlog
from pydantic import ValidationError
from temporalio import activity
from temporalio.exceptions import ApplicationError

from abrollout.contracts.records import DashboardData
from abrollout.contracts.tools import (
    AllocateTrafficArgs,
    CheckMetricsArgs,
    CreateFlagArgs,
    OpenTicketArgs,
    PromoteVariantArgs,
    RegisterExperimentArgs,
    RollbackVariantArgs,
    SnapshotDashboardArgs,
    StartRunArgs,
    StopRunArgs,
    ToolCall,
    ToolName,
    ToolReceipt,
)
from abrollout.flags.evaluate import FlagState
from abrollout.flags.states import allocation_state, single_arm_state
from abrollout.policy import cite
from abrollout.report.dashboard import render_dashboard
from activities.flag_changes import apply_verified
from activities.metrics_check import run_check
from adapters.protocols import AdapterRefusal, Adapters, ConcurrencyRefused

log = structlog.get_logger("abrollout.tools")
ToolsT = TypeVar("ToolsT", bound="Tools")
Method = Callable[[Any, Any], Awaitable[ToolReceipt]]
HEARTBEAT_EVERY_SECONDS = 1.0
"""Well inside the workflow's heartbeat timeout; the SDK batches what it sends to the server."""


async def heartbeating(work: Awaitable[ToolReceipt]) -> ToolReceipt:
    """`work`'s result, heartbeating meanwhile. Heartbeats come from the event loop, so a call blocked in a thread
    (a warehouse query) keeps its attempt alive, and only a worker that is gone stops them."""
    task = asyncio.ensure_future(work)
    try:
        while not (await asyncio.wait({task}, timeout=HEARTBEAT_EVERY_SECONDS))[0]:
            activity.heartbeat()
        return task.result()
    finally:
        task.cancel()


def tool(name: ToolName) -> Callable[[Method], Method]:
    """Register a method as the activity `name`, with the shared logging and error mapping."""

    def decorate(method: Method) -> Method:
        @functools.wraps(method)
        async def run(self: Any, call: ToolCall[Any]) -> ToolReceipt:
            if call.tool is None:  # scheduled by a workflow of the release before, during a rolling upgrade
                call = call.model_copy(update={"tool": name})
            experiment = call.idempotency_key.split(":", 1)[0]
            try:
                receipt = await heartbeating(method(self, call))
            except ConcurrencyRefused as exc:
                raise ApplicationError(str(exc), type="PolicyRefusal", non_retryable=True) from None
            except AdapterRefusal as exc:
                raise ApplicationError(str(exc), type="AdapterRefusal", non_retryable=True) from None
            except LookupError as exc:  # a flag, experiment or run that does not exist: retrying cannot help
                raise ApplicationError(str(exc), type="NotFound", non_retryable=True) from None
            except ValidationError as exc:
                raise ApplicationError(f"bad {name.value} args: {exc.error_count()} errors", type="BadToolArgs",
                                       non_retryable=True) from None
            log.info("tool", experiment=experiment, tool=name.value, step=call.step,
                     idempotency_key=call.idempotency_key, ref=receipt.ref, ok=receipt.ok,
                     attempt=activity.info().attempt)
            return receipt

        return activity.defn(name=name.value)(run)

    return decorate


class Tools:
    """The ten tools over one set of adapters."""

    def __init__(self, adapters: Adapters) -> None:
        self.a = adapters

    def all(self) -> list[Callable[..., Any]]:
        return [getattr(self, method.__name__) for method in TOOLS.values()]

    async def _change_flag(self, call: ToolCall[Any], flag_key: str, desired: FlagState, reason: str) -> ToolReceipt:
        change = await apply_verified(self.a.flags, flag_key, desired, call.idempotency_key, reason)
        return call.receipt(change.ok, change.ref, change.message, change.data)

    @tool(ToolName.RegisterExperiment)
    async def register_experiment(self, call: ToolCall[RegisterExperimentArgs]) -> ToolReceipt:
        args = call.args
        if (args.simulation is not None or args.hour_seconds < 3600) and not self.a.accelerated_clock_allowed:
            raise ConcurrencyRefused("an accelerated clock and simulated traffic run only on the embedded adapters "
                                     f"[{cite('clock.1')}]")
        exp_id = await self.a.registry.register(args, call.idempotency_key)
        return call.receipt(ok=True, ref=exp_id, message=f"registered {args.exp_key} ({args.policy_id})",
                            data={"analysis": args.analysis.model_dump(mode="json")})

    @tool(ToolName.CreateFlag)
    async def create_flag(self, call: ToolCall[CreateFlagArgs]) -> ToolReceipt:
        args = call.args
        change = await self.a.flags.create_flag(args.flag_key, args.description, call.idempotency_key)
        exists = await self.a.flags.read(args.flag_key) is not None
        return call.receipt(ok=exists, ref=change.change_id,
                            message="flag created and read back" if exists else "flag not found on read-back")

    @tool(ToolName.StartRun)
    async def start_run(self, call: ToolCall[StartRunArgs]) -> ToolReceipt:
        args = call.args
        run_id = await self.a.registry.start_run(args.exp_id, args.run_name, args.population, call.idempotency_key)
        return call.receipt(ok=True, ref=run_id, message=f"run {args.run_name} started")

    @tool(ToolName.AllocateTraffic)
    async def allocate_traffic(self, call: ToolCall[AllocateTrafficArgs]) -> ToolReceipt:
        args = call.args
        reason = f"ramp step {args.ramp_step}: {args.rollout_percent:g}% exposure, split {args.split}"
        return await self._change_flag(call, args.flag_key, allocation_state(args), reason)

    @tool(ToolName.CheckMetrics)
    async def check_metrics(self, call: ToolCall[CheckMetricsArgs]) -> ToolReceipt:
        return await run_check(self.a.registry, self.a.metrics, call)

    @tool(ToolName.StopRun)
    async def stop_run(self, call: ToolCall[StopRunArgs]) -> ToolReceipt:
        stop_id = await self.a.registry.stop_run(call.args.run_id, call.args.reason, call.idempotency_key)
        return call.receipt(ok=True, ref=stop_id, message=f"run stopped: {call.args.reason}"[:500])

    @tool(ToolName.PromoteVariant)
    async def promote_variant(self, call: ToolCall[PromoteVariantArgs]) -> ToolReceipt:
        args = call.args
        current = await self.a.flags.read(args.flag_key)
        return await self._change_flag(call, args.flag_key, single_arm_state(current, args.flag_key, args.variant),
                                       f"promote {args.variant}: {args.reason}")

    @tool(ToolName.RollbackVariant)
    async def rollback_variant(self, call: ToolCall[RollbackVariantArgs]) -> ToolReceipt:
        args = call.args
        current = await self.a.flags.read(args.flag_key)
        return await self._change_flag(call, args.flag_key, single_arm_state(current, args.flag_key, args.to_variant),
                                       f"rollback to {args.to_variant}: {args.reason}")

    @tool(ToolName.SnapshotDashboard)
    async def snapshot_dashboard(self, call: ToolCall[SnapshotDashboardArgs]) -> ToolReceipt:
        args = call.args
        if not isinstance(args.data, DashboardData):
            raise ApplicationError("SnapshotDashboard needs the dashboard's data, not its digest", type="BadToolArgs",
                                   non_retryable=True)
        dashboard_id = await self.a.dashboards.publish(render_dashboard(args.data), args.exp_key, args.label)
        tsdb = await self.a.tsdb.tsdb_snapshot() if self.a.tsdb is not None else None
        return call.receipt(ok=True, ref=dashboard_id, message=f"{args.label} snapshot of {args.exp_key}"
                            + (f"; metrics TSDB snapshot {tsdb}" if tsdb else ""),
                            data={"tsdb_snapshot": tsdb} if tsdb else None)

    @tool(ToolName.OpenTicket)
    async def open_ticket(self, call: ToolCall[OpenTicketArgs]) -> ToolReceipt:
        ticket_id = await self.a.tickets.open(call.args, call.idempotency_key)
        return call.receipt(ok=True, ref=ticket_id, message=f"{call.args.severity}: {call.args.title}")


ToolMethod = Callable[[Tools, ToolCall[Any]], Awaitable[ToolReceipt]]
TOOLS: dict[ToolName, ToolMethod] = {
    ToolName.RegisterExperiment: Tools.register_experiment,
    ToolName.CreateFlag: Tools.create_flag,
    ToolName.StartRun: Tools.start_run,
    ToolName.AllocateTraffic: Tools.allocate_traffic,
    ToolName.CheckMetrics: Tools.check_metrics,
    ToolName.StopRun: Tools.stop_run,
    ToolName.PromoteVariant: Tools.promote_variant,
    ToolName.RollbackVariant: Tools.rollback_variant,
    ToolName.SnapshotDashboard: Tools.snapshot_dashboard,
    ToolName.OpenTicket: Tools.open_ticket,
}
"""Each tool's activity, for workflows to call by reference (`workflow.execute_activity_method`)."""
