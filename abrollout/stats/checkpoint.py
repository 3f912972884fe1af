"""One check of a running experiment: `evaluate_check(plan, data) -> CheckVerdict`, the CheckMetrics entry point.

A planned look (`analysis`) tests the primary against group-sequential boundaries, Holm over treatments; other
looks (`status`, the hourly `guardrail`) give always-valid numbers that decide nothing on the primary, so alpha is
spent once. Every check tests SRM and the guardrails. Which test answers which question: docs/statistics.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from abrollout.contracts.spec import EffectKind, Guardrail, GuardrailScope, MetricKind
from abrollout.contracts.verdicts import (
    OVERALL,
    AnalysisPlan,
    ArmResult,
    ArmStats,
    CheckInput,
    CheckVerdict,
    GuardrailVerdict,
    Interval,
    MetricStats,
    NonInferiorityResult,
)
from abrollout.policy import PARAMS
from abrollout.stats import always_valid
from abrollout.stats.boundaries import Spending, efficacy_bounds, information_fractions
from abrollout.stats.effects import Comparison, compare, effective_size, two_sided_p
from abrollout.stats.multiple import holm_group_sequential, holm_p_values
from abrollout.stats.srm import srm_test
from abrollout.stats.sufficient import MetricSummaries, summarise

MIN_USERS = 2  # a variance needs two observations


def _insufficient(stats: ArmStats, arms: tuple[str, ...]) -> str | None:
    """Why these statistics cannot be compared yet, or None when they can."""
    for arm in arms:
        if arm not in stats or stats[arm].n < MIN_USERS:
            return f"fewer than {MIN_USERS} users with data in arm {arm}"
    return None


def _comparable(
    stats: ArmStats, arms: tuple[str, ...], ratio: bool | None = None
) -> tuple[MetricSummaries | None, str | None]:
    """Summaries when every arm has data with some spread and a nonzero control mean; otherwise why not.

    `ratio` None (guardrails, whose kind is not registered) infers a ratio metric from denominator sums.
    """
    reason = _insufficient(stats, arms)
    if reason is not None:
        return None, reason
    is_ratio = all(stats[a].is_ratio for a in arms) if ratio is None else ratio
    summaries = summarise(stats, arms, ratio=is_ratio)
    if float(summaries.arms[0].mean) == 0.0:
        return None, "control mean is 0, so the relative effect is undefined"
    if any(float(s.var_mean) <= 0.0 for s in summaries.arms):
        return None, "no variation in the metric yet"
    return summaries, None


def _interval(center: float, half_width: float) -> Interval | None:
    if not math.isfinite(half_width):
        return None
    return Interval(low=center - half_width, high=center + half_width)


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _pair_fractions(plan: AnalysisPlan, data: CheckInput, arm: str) -> tuple[float, ...]:
    """Information fractions of `arm` vs control at looks 1..k from observed effective sample sizes."""
    control = plan.control
    sizes = [effective_size(look.get(arm, 0), look.get(control, 0)) for look in data.prior_look_sizes]
    sizes.append(effective_size(data.primary[arm].n, data.primary[control].n))
    planned: float | None = None
    if plan.planned_max_users is not None:
        total = plan.planned_max_users / sum(plan.split.values())
        planned = effective_size(total * plan.split[arm], total * plan.split[control])
    return information_fractions(tuple(sizes), planned, plan.planned_looks)


@dataclass(frozen=True, slots=True)
class _Tested:
    """How one treatment fared at this check, from whichever test the check kind uses."""

    crossed_efficacy: bool
    efficacy_alpha: float
    efficacy_bound: float
    crossed_harm: bool
    harm_alpha: float
    harm_bound: float
    ci_multiplier: float  # interval half-width in standard errors
    information_fraction: float | None


def _planned_look(plan: AnalysisPlan, data: CheckInput, z: list[float], spending: Spending) -> list[_Tested]:
    """Holm step-down on the group-sequential boundaries, each side at alpha/2 as if the other did not stop the
    run (which can only lower the crossing probability); repeated CIs, estimate +- boundary x se."""
    half = plan.alpha / 2.0
    fractions = [_pair_fractions(plan, data, arm) for arm in plan.treatments]
    efficacy = holm_group_sequential([plan.benefit_sign * zi for zi in z], fractions, half, spending)
    harm = holm_group_sequential([-plan.benefit_sign * zi for zi in z], fractions, half, spending)
    return [
        _Tested(e.crossed, e.alpha, e.bound, h.crossed, h.alpha, h.bound, efficacy_bounds(f, half, spending)[-1], f[-1])
        for e, h, f in zip(efficacy, harm, fractions, strict=True)
    ]


def _unplanned_look(plan: AnalysisPlan, z: list[float], p: list[float], widths: list[float]) -> list[_Tested]:
    """Holm on the always-valid two-sided p-values; levels reported per side (half the two-sided level)."""
    tested = []
    for (rejected, level), zi, width in zip(holm_p_values(p, plan.alpha), z, widths, strict=True):
        benefit = plan.benefit_sign * zi
        tested.append(
            _Tested(
                rejected and benefit > 0,
                level / 2,
                math.inf,
                rejected and benefit < 0,
                level / 2,
                math.inf,
                width,
                None,
            )
        )
    return tested


def _primary_results(
    plan: AnalysisPlan, data: CheckInput, summaries: MetricSummaries, spending: Spending
) -> tuple[ArmResult, ...]:
    control = summaries.arms[0]
    comparisons = [compare(s, control) for s in summaries.arms[1:]]
    raw: list[Comparison | None] = [None] * len(comparisons)
    if summaries.unadjusted is not None:
        raw = [compare(s, summaries.unadjusted[0]) for s in summaries.unadjusted[1:]]
    z = [float(c.z) for c in comparisons]
    control_mean = float(control.mean)
    tau2 = always_valid.tuned_mixture_variance(plan.absolute_mde(control_mean), plan.alpha, plan.power, one_sided=False)
    ratios = [tau2 / float(c.se) ** 2 for c in comparisons]
    av_p = [float(always_valid.p_value(zi, r, one_sided=False)) for zi, r in zip(z, ratios, strict=True)]
    av_width = [float(always_valid.two_sided_threshold(r, plan.alpha)) for r in ratios]
    if data.kind == "analysis":
        tested = _planned_look(plan, data, z, spending)
    else:
        tested = _unplanned_look(plan, z, av_p, av_width)
    results = []
    for i, arm in enumerate(plan.treatments):
        c, t, raw_i = comparisons[i], tested[i], raw[i]
        diff, rel, se, rel_se = float(c.diff), float(c.rel_diff), float(c.se), float(c.rel_se)
        results.append(
            ArmResult(
                arm=arm,
                n=data.primary[arm].n,
                control_n=data.primary[plan.control].n,
                mean=float(summaries.arms[i + 1].mean),
                control_mean=control_mean,
                diff=diff,
                rel_diff=rel,
                diff_ci=_interval(diff, t.ci_multiplier * se),
                rel_diff_ci=_interval(rel, t.ci_multiplier * rel_se),
                z=z[i],
                p_value=float(two_sided_p(z[i])),
                cuped_variance_reduction=None if raw_i is None else 1.0 - se**2 / float(raw_i.se) ** 2,
                information_fraction=t.information_fraction,
                efficacy_bound=_finite_or_none(t.efficacy_bound),
                harm_bound=_finite_or_none(t.harm_bound),
                efficacy_alpha=t.efficacy_alpha,
                harm_alpha=t.harm_alpha,
                crossed_efficacy=t.crossed_efficacy,
                crossed_harm=t.crossed_harm,
                always_valid_p_value=av_p[i],
                always_valid_diff_ci=Interval(low=diff - av_width[i] * se, high=diff + av_width[i] * se),
                always_valid_rel_diff_ci=Interval(low=rel - av_width[i] * rel_se, high=rel + av_width[i] * rel_se),
            )
        )
    return tuple(results)


def _observed_value(stats: MetricStats) -> float | None:
    denominator = stats.denom_sum if stats.is_ratio else stats.n
    return stats.sum / denominator if denominator else None


def _non_inferiority(
    plan: AnalysisPlan, guardrail: Guardrail, stats: ArmStats, relative_mde: float | None
) -> tuple[NonInferiorityResult, ...]:
    """guardrail.3: one-sided always-valid test that each treatment is not worse than control by > margin.

    The mixture is tuned to a harm beyond the margin as large as the primary's relative MDE (on this metric's
    control mean), or to the margin itself when the MDE cannot be put in relative terms.
    """
    margin = guardrail.margin
    summaries, _ = _comparable(stats, plan.arms)
    if margin is None or summaries is None:
        return ()
    control_mean = abs(float(summaries.arms[0].mean))
    margin_abs = margin.value if margin.kind is EffectKind.absolute else margin.value / 100.0 * control_mean
    effect = relative_mde * control_mean if relative_mde is not None else margin_abs
    tau2 = always_valid.tuned_mixture_variance(effect, plan.guardrail_alpha, plan.power, one_sided=True)
    harm_sign = 1.0 if guardrail.direction == "<" else -1.0  # `<` must hold: an increase is the harm
    results = []
    for arm, summary in zip(plan.treatments, summaries.arms[1:], strict=True):
        c = compare(summary, summaries.arms[0])
        se = float(c.se)
        harm = harm_sign * float(c.diff)
        z = (harm - margin_abs) / se
        r = tau2 / se**2
        p = float(always_valid.p_value(z, r, one_sided=True))
        results.append(
            NonInferiorityResult(
                arm=arm,
                harm=harm,
                margin=margin_abs,
                z=z,
                bound=always_valid.one_sided_threshold(r, plan.guardrail_alpha),
                p_value=p,
                harmful=p <= plan.guardrail_alpha,
            )
        )
    return tuple(results)


def _guardrail(
    plan: AnalysisPlan, guardrail: Guardrail, data: CheckInput, relative_mde: float | None
) -> GuardrailVerdict:
    stats = data.guardrail_stats.get(guardrail.name, {})
    observed = {arm: v for arm, s in stats.items() if (v := _observed_value(s)) is not None}
    observed.update(data.guardrail_values.get(guardrail.name, {}))
    checked = {
        key: value
        for key, value in observed.items()
        if key == OVERALL or guardrail.scope is GuardrailScope.all_arms or key != plan.control
    }
    failing = {key: value for key, value in checked.items() if not guardrail.holds(value)}
    tests = _non_inferiority(plan, guardrail, stats, relative_mde)
    harmful = [t for t in tests if t.harmful]
    condition = f"{guardrail.direction} {guardrail.threshold:g}"
    breaches = [
        f"{guardrail.name} = {value:g} on {key} breaks the must-hold condition {condition}"
        for key, value in failing.items()
    ]
    breaches += [
        f"{guardrail.name}: {t.arm} worse than control by {t.harm:.4g} (margin {t.margin:.4g}), "
        f"always-valid p = {t.p_value:.2g} <= {plan.guardrail_alpha:g}"
        for t in harmful
    ]
    if breaches:
        reason = "; ".join(breaches)
    elif checked or tests:
        margin_note = ", not worse than control beyond the margin" if tests else ""
        reason = f"{guardrail.name} holds ({condition}{margin_note})"
    else:
        reason = f"{guardrail.name}: no data in this check"
    return GuardrailVerdict(
        name=guardrail.name,
        direction=guardrail.direction,
        threshold=guardrail.threshold,
        observed=observed,
        evaluated=bool(checked or tests),
        threshold_breached=bool(failing),
        harm_detected=bool(harmful),
        reason=reason,
        non_inferiority=tests,
    )


def _stale(age_seconds: float | None) -> str | None:
    if age_seconds is None or age_seconds <= PARAMS.stale_data_hours * 3600:
        return None
    return (f"stale data: the newest event is {age_seconds / 3600:.1f} h older than the window's end "
            f"(limit {PARAMS.stale_data_hours:g} h); the metrics pipeline may be behind")


def evaluate_check(plan: AnalysisPlan, data: CheckInput) -> CheckVerdict:
    """Evaluate one check. Pure: same plan and data, same verdict.

    `no_data` (data.1) is set for `analysis`/`status` checks when the primary cannot be compared yet (an arm
    with fewer than 2 users, no variation, a zero control mean), and for `guardrail` checks when there was
    nothing to check at all (no assignments and no guardrail data); and for any check whose newest data is
    older than the policy's staleness limit. Guardrails and SRM are still evaluated on whatever data did arrive:
    harm seen in late data is still harm.
    """
    if data.kind == "analysis" and data.look > plan.planned_looks:
        raise ValueError(f"look {data.look} is beyond the {plan.planned_looks} planned looks")
    spending = Spending(plan.spending, plan.spending_parameter)
    srm = srm_test(data.assignments, plan.split, plan.srm_p_threshold) if data.assignments else None
    summaries, missing = _comparable(data.primary, plan.arms, plan.metric_kind is MetricKind.ratio)
    relative_mde = plan.relative_mde(None if summaries is None else float(summaries.arms[0].mean))
    guardrails = tuple(_guardrail(plan, g, data, relative_mde) for g in plan.guardrails)
    arms = () if summaries is None else _primary_results(plan, data, summaries, spending)
    if data.kind == "guardrail":
        empty = srm is None and not any(g.evaluated for g in guardrails)
        missing = "no assignments and no guardrail data" if empty else None
    missing = missing or _stale(data.data_age_seconds)
    return CheckVerdict(
        kind=data.kind,
        look=data.look,
        planned_looks=plan.planned_looks,
        primary_metric=plan.primary_metric,
        test="group_sequential" if data.kind == "analysis" else "always_valid",
        spending=plan.spending,
        no_data=missing is not None,
        no_data_reason=missing or "",
        arms=arms,
        srm=srm,
        guardrails=guardrails,
    )
