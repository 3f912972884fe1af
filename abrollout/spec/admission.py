"""exp_policy.v5 applied to a spec: every problem cites its clause, and a spec that passes is normalised
(name, hypothesis, split and ramp made explicit) so what is registered is exactly what runs."""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Callable, Iterator

from abrollout.contracts.spec import (
    CONTROL_ARM,
    Allocation,
    EffectKind,
    ExperimentSpec,
    Goal,
    MetricKind,
    RampStep,
)
from abrollout.durations import format_duration
from abrollout.flags.rules import RuleError, parse_rule
from abrollout.ids import digest
from abrollout.policy import PARAMS, cite
from abrollout.spec.problems import Level, Problem, errors_only, show

DAY = 86400
_QUALITY_WORDS = ("defect", "safety", "toxicity", "hallucination")
_DOMAIN_GUARDRAILS: dict[str, tuple[str, tuple[str, ...], str]] = {
    "pricing": ("domain.pricing.1", ("revenue",), "a revenue guardrail, e.g. {name: revenue_per_user, ...}"),
    "prompts": ("domain.prompts.1", _QUALITY_WORDS, "a quality guardrail, e.g. {name: defect_rate, ...}"),
    "policies": ("domain.policies.1", _QUALITY_WORDS, "a quality guardrail, e.g. {name: defect_rate, ...}"),
    "ranking": ("domain.ranking.1", ("latency",), "a latency guardrail, e.g. {name: latency_p95, ...}"),
}


def _problem(path: str, found: str, fix: str, clause: str, level: Level = Level.error) -> Problem:
    return Problem(path=path, found=found, fix=fix, clause=cite(clause), level=level)


def even_split(arms: tuple[str, ...]) -> dict[str, float]:
    """An even split in 0.1% steps; the permille left over goes to the first arms (control first)."""
    base, rest = divmod(1000, len(arms))
    return {arm: (base + (1 if i < rest else 0)) / 10 for i, arm in enumerate(arms)}


def _check_arms(spec: ExperimentSpec) -> Iterator[Problem]:
    arms = list(spec.treatment_spec)
    if CONTROL_ARM not in arms:
        yield _problem("treatment_spec", f"arms {arms}", "add an arm named `control` (the current experience)",
                       "arms.1")
    if not PARAMS.min_arms <= len(arms) <= PARAMS.max_arms:
        yield _problem("treatment_spec", f"{len(arms)} arm(s)",
                       f"use {PARAMS.min_arms} to {PARAMS.max_arms} arms, control included", "arms.1")


def _check_split(spec: ExperimentSpec) -> Iterator[Problem]:
    split = spec.allocation.split
    if split is None:
        return
    arms, named = set(spec.treatment_spec), set(split)
    if arms != named:
        missing, extra = sorted(arms - named), sorted(named - arms)
        found = "; ".join(x for x in (f"missing {missing}" if missing else "", f"unknown {extra}" if extra else "")
                          if x)
        yield _problem("allocation.split", found, "name every arm of treatment_spec exactly once", "split.1")
    total = sum(split.values())
    if not math.isclose(total, 100.0, abs_tol=1e-6):
        yield _problem("allocation.split", f"shares summing to {total:g}", "make the shares sum to 100", "split.1")
    for arm, share in split.items():
        if share < PARAMS.min_arm_share_percent:
            yield _problem(f"allocation.split.{arm}", f"{share:g}%",
                           f"give every arm at least {PARAMS.min_arm_share_percent:g}%", "split.2")
        if not math.isclose(share * 10, round(share * 10), abs_tol=1e-6):
            yield _problem(f"allocation.split.{arm}", f"{share:g}%", "use steps of 0.1% (e.g. 33.3)", "split.3")


def _check_duration_and_schedule(spec: ExperimentSpec) -> Iterator[Problem]:
    days = spec.max_duration_days
    if not PARAMS.min_duration_days <= days <= PARAMS.max_duration_days:
        yield _problem("max_duration_days", f"{days}",
                       f"a whole number of days from {PARAMS.min_duration_days} to {PARAMS.max_duration_days}",
                       "duration.1")
        return
    guard, analysis = spec.schedule.guardrail_check_every, spec.schedule.analysis_every
    if not PARAMS.min_guardrail_interval_seconds <= guard <= PARAMS.max_guardrail_interval_seconds:
        yield _problem("schedule.guardrail_check_every", format_duration(guard), "an interval from 5m to 24h",
                       "schedule.1")
    if analysis % guard:
        yield _problem("schedule.analysis_every", format_duration(analysis),
                       f"a whole multiple of guardrail_check_every ({format_duration(guard)})", "schedule.1")
    if (days * DAY) % analysis:
        yield _problem("schedule.analysis_every", format_duration(analysis),
                       f"an interval that divides max_duration_days ({days}d), e.g. 24h", "schedule.1")
    elif days * DAY // analysis > PARAMS.max_analysis_looks:
        yield _problem("schedule.analysis_every", f"{days * DAY // analysis} analysis looks",
                       f"at most {PARAMS.max_analysis_looks} looks: lengthen the interval", "schedule.1")
    if spec.schedule.hour_seconds < 3600:
        yield _problem("schedule.hour_seconds", f"{spec.schedule.hour_seconds:g} (an accelerated clock)",
                       "fine for a demo on the embedded adapters; a worker with real adapters refuses it",
                       "clock.1", Level.warning)


def _check_mde_and_concurrency(spec: ExperimentSpec) -> Iterator[Problem]:
    if spec.mde.kind is EffectKind.relative and spec.mde.value > PARAMS.max_relative_mde_percent:
        yield _problem("mde.value", f"{spec.mde.value:g}% relative",
                       f"a relative MDE is a percent of control, at most {PARAMS.max_relative_mde_percent:g}",
                       "mde.1")
    if not 1 <= spec.max_concurrent <= PARAMS.max_concurrent_cap:
        yield _problem("max_concurrent", f"{spec.max_concurrent}", f"a number from 1 to {PARAMS.max_concurrent_cap}",
                       "concurrency.1")


def _check_effect_on_baseline(spec: ExperimentSpec) -> Iterator[Problem]:
    """The MDE read against the primary metric's baseline must still describe a metric: a proportion's
    treatment rate stays a rate, and a relative MDE has a baseline to be a percent of."""
    metric, mde = spec.primary_metric, spec.mde
    if metric.baseline is None or (mde.kind is EffectKind.relative and mde.value > PARAMS.max_relative_mde_percent):
        return  # nothing to plan from, or an MDE mde.1 already refuses
    if metric.kind is MetricKind.proportion:
        sign = 1.0 if metric.goal is Goal.increase else -1.0
        treated = metric.baseline + sign * mde.in_units(metric.baseline)
        if not 0.0 < treated < 1.0:
            room = 1.0 - metric.baseline if sign > 0 else metric.baseline
            limit = room if mde.kind is EffectKind.absolute else room / metric.baseline * 100.0
            yield Problem(path="mde.value", found=f"{mde.describe()} takes the {metric.name} baseline "
                          f"{metric.baseline:g} to {treated:g}, which is not a proportion",
                          fix=f"an MDE below {limit:g} ({mde.kind.value}), so the treatment rate stays strictly "
                              "between 0 and 1")
    elif mde.kind is EffectKind.relative and metric.baseline == 0:
        yield Problem(path="mde.kind", found="a relative MDE of a baseline of 0 (0 in metric units)",
                      fix="state the MDE in metric units: {kind: absolute, value: ...}")


def _check_guardrails(spec: ExperimentSpec) -> Iterator[Problem]:
    if not spec.guardrails:
        yield _problem("guardrails", "an empty list", "add at least one guardrail, e.g. "
                       "{name: latency_p95, threshold: 2.5, direction: '<'}", "guardrail.1")
    names = [g.name for g in spec.guardrails]
    for name in sorted({n for n in names if names.count(n) > 1}):
        yield _problem("guardrails", f"'{name}' twice", "register each guardrail metric once", "guardrail.1")
    rule = _DOMAIN_GUARDRAILS.get(spec.domain.value)
    if rule and not any(word in name.lower() for name in names for word in rule[1]):
        clause, _, example = rule
        yield _problem("guardrails", f"no guardrail named with {' or '.join(rule[1])}",
                       f"a {spec.domain.value} experiment needs {example}", clause)


def _check_metrics(spec: ExperimentSpec) -> Iterator[Problem]:
    secondary = [m.name for m in spec.secondary_metrics]
    for name in sorted({n for n in secondary if n == spec.primary_metric.name or secondary.count(n) > 1}):
        yield _problem("secondary_metrics", f"'{name}' repeated", "list each metric once, the primary not again",
                       "prereg.1")


def _check_ramp(spec: ExperimentSpec) -> Iterator[Problem]:
    steps = spec.ramp
    if not steps:
        return
    if steps[0].at != 0:
        yield _problem("ramp[0].at", format_duration(steps[0].at), "the first step starts at 0h", "ramp.1")
    for i, (before, after) in enumerate(itertools.pairwise(steps), start=1):
        if after.percent <= before.percent or after.at <= before.at:
            yield _problem(f"ramp[{i}]", f"{after.percent:g}% at {format_duration(after.at)} after "
                           f"{before.percent:g}% at {format_duration(before.at)}",
                           "each step raises exposure, later than the one before", "ramp.1")
    if steps[-1].percent != 100:
        yield _problem(f"ramp[{len(steps) - 1}].percent", f"{steps[-1].percent:g}%", "end the ramp at 100",
                       "ramp.1")
    if steps[-1].at >= spec.max_duration_days * DAY:
        yield _problem(f"ramp[{len(steps) - 1}].at", format_duration(steps[-1].at),
                       f"start every step before the {spec.max_duration_days}d cap", "ramp.1")


def _check_rules(spec: ExperimentSpec) -> Iterator[Problem]:
    for i, rule in enumerate(spec.allocation.exposure_rules):
        try:
            parse_rule(rule)
        except RuleError as exc:
            hint = f" ({exc.hint})" if exc.hint else ""
            yield Problem(path=f"allocation.exposure_rules[{i}]",
                          found=f"{show(rule)}: at column {exc.position + 1} found {exc.found}",
                          fix=f"write {exc.expected} there{hint}", clause=cite("spec.1"))


def _check_simulation(spec: ExperimentSpec) -> Iterator[Problem]:
    sim = spec.simulation
    if sim is None:
        return
    needed = [spec.primary_metric.name, *(g.name for g in spec.guardrails)]
    for name in needed:
        if name not in sim.metrics:
            yield Problem(path="simulation.metrics", found=f"no baseline for '{name}'",
                          fix=f"add {name}: {{mean: ...}} (and sd: for a continuous metric)")
    arms = set(spec.treatment_spec)
    named = [("simulation.effects", a) for a in sim.effects] + [("simulation.exposure_loss", a)
                                                                  for a in sim.exposure_loss]
    named += [(f"simulation.degradations[{i}].arm", d.arm) for i, d in enumerate(sim.degradations)]
    for path, arm in named:
        if arm not in arms:
            yield Problem(path=path, found=f"unknown arm '{arm}'", fix=f"use one of {sorted(arms)}")


CHECKS: tuple[Callable[[ExperimentSpec], Iterator[Problem]], ...] = (
    _check_arms,
    _check_split,
    _check_duration_and_schedule,
    _check_mde_and_concurrency,
    _check_effect_on_baseline,
    _check_guardrails,
    _check_metrics,
    _check_ramp,
    _check_rules,
    _check_simulation,
)


def check_policy(spec: ExperimentSpec) -> list[Problem]:
    """Every exp_policy.v5 problem with the spec, errors and warnings, in spec order."""
    return [problem for check in CHECKS for problem in check(spec)]


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def _default_hypothesis(spec: ExperimentSpec) -> str:
    metric = spec.primary_metric
    guards = ", ".join(g.describe() for g in spec.guardrails)
    return (f"{' / '.join(spec.treatments)} {metric.goal.value}s {metric.name} by at least "
            f"{spec.mde.describe()} against control, while {guards} hold.")


def normalize(spec: ExperimentSpec) -> ExperimentSpec:
    """The spec with every default made explicit; refuses a spec that still has policy errors."""
    if errors_only(check_policy(spec)):
        raise ValueError("normalize() needs a spec without policy errors; call check_policy first")
    name = spec.name or f"{_slug(spec.domain.value)}-{_slug(spec.primary_metric.name)}-" + digest(
        spec.model_dump(mode="json", exclude={"name"}), 8)
    allocation = spec.allocation
    if allocation.split is None:
        allocation = Allocation(**{**allocation.model_dump(), "split": even_split(spec.arms)})
    ordered_split = {arm: (allocation.split or {})[arm] for arm in spec.arms}
    allocation = allocation.model_copy(update={"split": ordered_split})
    ramp = spec.ramp or [RampStep(percent=100, at=0)]
    return spec.model_copy(update={
        "name": name,
        "hypothesis": spec.hypothesis or _default_hypothesis(spec),
        "allocation": allocation,
        "ramp": ramp,
        "treatment_spec": {arm: spec.treatment_spec[arm] for arm in spec.arms},
    })
