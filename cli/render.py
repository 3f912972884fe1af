"""Text people read in a terminal: the normalised spec, the plan, problems, reports and the experiment list."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import yaml
from temporalio.client import WorkflowExecutionStatus

from abrollout.contracts.records import Checkpoint, DecisionState, ReceiptRecord
from abrollout.contracts.report import Report
from abrollout.contracts.spec import ExperimentSpec
from abrollout.contracts.tools import ToolReceipt
from abrollout.contracts.verdicts import PowerPlan
from abrollout.plan.planner import ExperimentPlan
from abrollout.spec.problems import Problem


def spec_yaml(spec: ExperimentSpec) -> str:
    return yaml.safe_dump(spec.model_dump(mode="json", exclude_none=True), sort_keys=False, allow_unicode=True,
                          width=110)


def _aligned(rows: Sequence[Sequence[str]], rule: bool = False) -> str:
    """Rows as left-aligned columns, the first row a header (with a rule below it if asked)."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    if rule:
        lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def plan_table(plan: ExperimentPlan) -> str:
    rows = [("step", "tool", "preconditions", "idempotency key")]
    for proposal in [*plan.setup, *plan.ramp_steps]:
        rows.append((proposal.step, proposal.name, ", ".join(proposal.preconditions) or "-",
                     proposal.idempotency_key))
    return _aligned(rows, rule=True)


NO_DECISION = "no decision"
"""What `list` shows for an experiment whose workflow closed (failed, e.g. refused at registration; terminated;
timed out; canceled) while its ExperimentState still said running: it ended before deciding anything."""
REPAIRED = "no decision; safety net: control"
"""... and the safety net returned its flag to control afterwards."""
NOT_REPAIRED = "no decision; safety net FAILED"
"""... and the safety net tried, but could not return its flag to control (`status` says why)."""


@dataclass(frozen=True)
class ListedExperiment:
    workflow_id: str
    state: str
    status: WorkflowExecutionStatus | None
    domain: str
    primary_metric: str
    started: datetime
    returned_to_control: bool | None = None
    """What the safety net's repair did with the flag; None when there was no repair."""

    @property
    def ended_undecided(self) -> bool:
        """The workflow is gone while the state still says running (Temporal keeps a search attribute's last value
        when a workflow fails or is terminated)."""
        return self.state == DecisionState.running and self.status not in (WorkflowExecutionStatus.RUNNING, None)


def listed_state(e: ListedExperiment) -> str:
    if not e.ended_undecided:
        return e.state
    if e.returned_to_control is None:
        return NO_DECISION
    return REPAIRED if e.returned_to_control else NOT_REPAIRED


def execution_status(status: WorkflowExecutionStatus | None) -> str:
    return status.name.lower().replace("_", " ") if status else "?"


def experiment_table(experiments: Sequence[ListedExperiment]) -> str:
    rows = [("workflow id", "state", "status", "domain", "primary metric", "started (UTC)")]
    rows += [(e.workflow_id, listed_state(e), execution_status(e.status), e.domain,
              e.primary_metric, e.started.strftime("%Y-%m-%d %H:%M:%S")) for e in experiments]
    return _aligned(rows)


def schedule_line(plan: ExperimentPlan) -> str:
    hours = plan.max_duration_seconds // 3600
    checks = plan.max_duration_seconds // plan.guardrail_check_every
    return (f"schedule: {checks} guardrail checks (every {plan.guardrail_check_every // 60} min), "
            f"{plan.planned_looks} analysis looks (every {plan.analysis_every // 3600} h), cap {hours} h")


def power_line(power: PowerPlan) -> str:
    arms = "/".join(str(n) for n in power.users_per_arm)
    days = f", {power.days_needed:.1f} days at the expected traffic" if power.days_needed is not None else ""
    verdict = {True: "reachable before the cap", False: "NOT reachable before the cap", None: "reach unknown"}
    return (f"power: {arms} users per arm ({power.total_users} in all, group-sequential inflation "
            f"{power.inflation_factor:.3f}){days}: {verdict[power.reachable]}")


def warnings_block(problems: list[Problem]) -> str:
    return "\n".join(f"  {p}" for p in problems)


def plan_json(plan: ExperimentPlan) -> dict[str, Any]:
    return plan.model_dump(mode="json")


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.2%}"


def checkpoint_lines(checkpoint: Checkpoint, conditions: list[str] | None = None) -> list[str]:
    """The latest check as a person reads it: effect with its interval, guardrails against thresholds
    (`conditions` are the must-hold conditions, `name < threshold`, from the registration)."""
    must_hold = {c.split(" ", 1)[0]: c.split(" ", 1)[1] for c in conditions or [] if " " in c}
    lines = [f"  latest check: {checkpoint.kind} {checkpoint.index} at {checkpoint.at_hours:g}h -> "
             f"{checkpoint.state.value}"]
    for arm, effect in checkpoint.effects.items():
        lines.append(f"  effect {arm}: {effect.estimate:+.4g} ({_pct(effect.relative)}), "
                     f"95% CS [{effect.ci_low:+.4g}, {effect.ci_high:+.4g}]")
    for name, values in checkpoint.guardrails.items():
        shown = ", ".join(f"{arm} {value:.4g}" for arm, value in values.items())
        mark = "BREACH" if name in checkpoint.breaches else "ok"
        condition = f"; must stay {must_hold[name]}" if name in must_hold else ""
        lines.append(f"  guardrail {name}: {shown}{condition} [{mark}]")
    if checkpoint.srm_p is not None:
        lines.append(f"  SRM p={checkpoint.srm_p:.3g}" + (" [BREACH]" if "srm" in checkpoint.breaches else ""))
    return lines


def status_text(report: Report) -> str:
    d, a = report.decision, report.allocation
    lines = [f"{report.registration.exp_key}: {d.state.value}" + (f" ({d.arm})" if d.arm else ""),
             f"  {d.rationale}",
             f"  exposure {a.exposure_percent:g}% of eligible users; split "
             + ", ".join(f"{arm} {share:g}%" for arm, share in a.traffic_split.items())]
    if report.monitoring.checkpoints:
        lines += checkpoint_lines(report.monitoring.checkpoints[-1], report.registration.guardrails)
    lines.append(f"  receipts: {len(report.receipts)} tool calls, "
                 f"{sum(not r.ok for r in report.receipts)} not ok")
    return "\n".join(lines)


def receipt_line(receipt: ReceiptRecord | ToolReceipt, event_id: int | None = None) -> str:
    mark = "ok " if receipt.ok else "NOT"
    where = f"#{event_id:<5} " if event_id is not None else ""
    return f"{where}{mark} {receipt.step:<22} {receipt.tool:<18} {receipt.ref:<28} {receipt.message[:90]}"


def report_text(report: Report) -> str:
    r = report.registration
    lines = [report.summary, "",
             f"registration: {r.exp_id} ({r.policy}), primary {r.primary_metric}, MDE {r.mde}",
             f"hypothesis: {r.hypothesis}",
             f"allocation: {', '.join(f'{k} {v:g}%' for k, v in report.allocation.traffic_split.items())}; rules: "
             f"{' and '.join(report.allocation.exposure_rules) or 'none'}",
             f"monitoring: run {report.monitoring.run_id}, dashboards {', '.join(report.monitoring.dashboards)}",
             "", "decision:", status_text(report), "", "receipts:"]
    lines += [f"  {receipt_line(x)}" for x in report.receipts if x.tool != "CheckMetrics"]
    checks = sum(x.tool == "CheckMetrics" for x in report.receipts)
    lines.append(f"  (+ {checks} CheckMetrics receipts; `starter.py history ID` lists every one with its event id)")
    lines += ["", "citations: " + "; ".join(report.citations)]
    return "\n".join(lines)
