"""Sending the `alert` signals: one per experiment, and telling a missing experiment from a finished one."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from http import HTTPStatus

from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from abrollout.run.control import AlertRequest
from alert_receiver.payload import SOURCE, FiringAlert, alert_reason
from workflows.experiment import ExperimentWorkflow

TEMPORAL_UNAVAILABLE = (RPCError, TimeoutError, RuntimeError)
"""Temporal unreachable or slow: worth a retry."""


def brief(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:200] or type(exc).__name__


@dataclass
class Delivery:
    """What became of each experiment of one payload, by workflow id."""

    signalled: list[str] = field(default_factory=list)
    coalesced: list[str] = field(default_factory=list)  # a signal for it was in flight or had just been taken
    unknown: list[str] = field(default_factory=list)
    closed: list[str] = field(default_factory=list)

    def status(self) -> HTTPStatus:
        if self.unknown:
            return HTTPStatus.NOT_FOUND
        if self.closed:
            return HTTPStatus.CONFLICT
        return HTTPStatus.OK


async def deliver(client: Client, groups: Mapping[str, list[FiringAlert]], delivery: Delivery) -> None:
    """One `alert` signal per workflow id (concurrently), each outcome added to `delivery`; a signal to
    a missing or finished workflow fails with NOT_FOUND, and only then does a describe tell which. Other RPC errors
    propagate (the answer is a 503)."""

    async def one(wf_id: str, alerts: list[FiringAlert]) -> None:
        handle = client.get_workflow_handle_for(ExperimentWorkflow.run, wf_id)
        try:
            await handle.signal(ExperimentWorkflow.alert, AlertRequest(source=SOURCE, reason=alert_reason(alerts)))
            delivery.signalled.append(wf_id)
            return
        except RPCError as exc:
            if exc.status != RPCStatusCode.NOT_FOUND:
                raise
        try:
            await handle.describe()
        except RPCError as exc:
            if exc.status != RPCStatusCode.NOT_FOUND:
                raise
            delivery.unknown.append(wf_id)
            return
        delivery.closed.append(wf_id)

    outcomes = await asyncio.gather(*(one(wf_id, alerts) for wf_id, alerts in groups.items()),
                                    return_exceptions=True)  # all done before the first error is raised
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            raise outcome
