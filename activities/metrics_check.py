"""CheckMetrics: read per-arm statistics from the metrics source, run the statistics, record the verdict.

The receipt carries the verdict and the metric snapshot it came from (and the query text), so every
decision can be re-derived from the history without touching the metrics source again.
"""

from __future__ import annotations

import asyncio

from abrollout.contracts.tools import CheckMetricsArgs, CheckResult, MetricsReading, ToolCall, ToolReceipt
from abrollout.contracts.verdicts import CheckInput
from abrollout.stats.checkpoint import evaluate_check
from adapters.protocols import MetricsSnapshot, MetricsSource, Registry


def _check_input(args: CheckMetricsArgs, primary: str, snapshot: MetricsSnapshot) -> CheckInput:
    guardrails = [g.name for g in args.guardrails]
    freshest = snapshot.freshest_event_seconds
    return CheckInput(
        kind=args.kind, look=args.check_index if args.kind == "analysis" else 0,
        primary=snapshot.metrics.get(primary, {}),
        guardrail_stats={name: snapshot.metrics[name] for name in guardrails if name in snapshot.metrics},
        guardrail_values={name: snapshot.observed[name] for name in guardrails if name in snapshot.observed},
        assignments=snapshot.assignments,
        prior_look_sizes=tuple(args.prior_look_sizes) if args.kind == "analysis" else (),
        data_age_seconds=None if freshest is None else max(0.0, args.at_seconds - freshest))


async def run_check(registry: Registry, metrics: MetricsSource, call: ToolCall[CheckMetricsArgs]) -> ToolReceipt:
    args = call.args
    registered = await registry.get(args.exp_id)
    plan = registered.args.analysis
    names = list(dict.fromkeys([plan.primary_metric, *(g.name for g in args.guardrails)]))
    snapshot = await metrics.snapshot(registered, args.run_id, args.at_seconds, names)
    verdict = await asyncio.to_thread(evaluate_check, plan, _check_input(args, plan.primary_metric, snapshot))
    reading = MetricsReading(assignments=snapshot.assignments, metrics=snapshot.metrics, observed=snapshot.observed,
                             freshest_event_seconds=snapshot.freshest_event_seconds)
    return call.receipt(
        ok=True, ref=snapshot.snapshot_id,
        message=f"{args.kind} check {args.check_index} at {args.at_seconds / 3600:g}h"
        + (f": no data ({verdict.no_data_reason})" if verdict.no_data else ""),
        check=CheckResult(verdict=verdict, snapshot=reading, queries=list(snapshot.queries)))
