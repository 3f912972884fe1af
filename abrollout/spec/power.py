"""Power planning for a spec at validation time: can this experiment reach its MDE before its cap?"""

from __future__ import annotations

from abrollout.contracts.spec import ExperimentSpec, MetricKind
from abrollout.contracts.verdicts import PowerPlan
from abrollout.plan.planner import ExperimentPlan
from abrollout.policy import PARAMS, cite
from abrollout.spec.problems import Level, Problem
from abrollout.stats.boundaries import Spending
from abrollout.stats.power import PowerArgument, PowerInputError, plan_sample_size

_SPEC_FIELDS: dict[PowerArgument, str] = {
    "baseline_mean": "primary_metric.baseline",
    "baseline_sd": "primary_metric.baseline_sd",
    "mde": "mde.value",
}


def power_plan(spec: ExperimentSpec, plan: ExperimentPlan) -> PowerPlan | None:
    """The sample size for the pre-registered design, or None when the spec lacks a baseline to plan from;
    PowerInputError when its numbers admit none (see `unplannable`)."""
    metric = spec.primary_metric
    sd = None if metric.kind is MetricKind.proportion else metric.baseline_sd
    if metric.baseline is None or (sd is None and metric.kind is not MetricKind.proportion):
        return None
    analysis = plan.analysis
    return plan_sample_size(
        baseline_mean=metric.baseline, baseline_sd=sd, mde=spec.mde, alpha=analysis.alpha, power=analysis.power,
        split=[plan.split[arm] for arm in plan.arms], expected_daily_users=spec.allocation.expected_daily_users,
        max_days=spec.max_duration_days, spending=Spending(analysis.spending, analysis.spending_parameter),
        looks=analysis.planned_looks)


def unplannable(exc: PowerInputError) -> Problem:
    """The error for a spec whose numbers admit no power plan, at the spec field that holds the input at fault."""
    return Problem(path=_SPEC_FIELDS[exc.argument], found=exc.found, fix=exc.fix)


def power_warnings(spec: ExperimentSpec, plan: ExperimentPlan, power: PowerPlan | None) -> list[Problem]:
    """Warnings (never errors: the team may accept a longer shot) when the MDE is out of reach by the cap."""
    if power is None:
        return [Problem(path="primary_metric.baseline", found="no baseline to plan power from",
                        fix="add baseline (and baseline_sd for a mean metric) and allocation.expected_daily_users "
                            "so validate can check the MDE is reachable", level=Level.warning)]
    if power.reachable is None:
        return [Problem(path="allocation.expected_daily_users", found="no expected traffic",
                        fix=f"add it; the design needs {power.total_users} users in all to detect the MDE",
                        level=Level.warning)]
    if power.reachable:
        return []
    return [Problem(path="mde", found=f"{spec.mde.describe()} needs {power.days_needed:.1f} days at "
                    f"{spec.allocation.expected_daily_users} users/day, beyond the {spec.max_duration_days}d cap",
                    fix=f"the MDE detectable by the cap with power {PARAMS.power:g} is "
                        f"{power.detectable_mde_at_cap:.3g} ({spec.mde.kind.value}); raise the MDE, the traffic or "
                        f"the cap", clause=cite("mde.1"), level=Level.warning)]
