"""Text people read in a terminal: the normalised spec, the plan, problems."""

from __future__ import annotations

from typing import Any

import yaml

from abrollout.contracts.spec import ExperimentSpec
from abrollout.planner import ExperimentPlan
from abrollout.problems import Problem
from abrollout.verdicts import PowerPlan


def spec_yaml(spec: ExperimentSpec) -> str:
    return yaml.safe_dump(spec.model_dump(mode="json", exclude_none=True), sort_keys=False, allow_unicode=True,
                          width=110)


def plan_table(plan: ExperimentPlan) -> str:
    rows = [("step", "tool", "preconditions", "idempotency key")]
    for proposal in [*plan.setup, *plan.ramp_steps]:
        rows.append((proposal.step, proposal.name, ", ".join(proposal.preconditions) or "-",
                     proposal.idempotency_key))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


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
