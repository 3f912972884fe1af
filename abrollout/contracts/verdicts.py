"""What the statistics read and record: the analysis plan, the per-check input and the verdict.

Plain pydantic models (no numpy, no scipy): the CheckMetrics activity records a verdict in its receipt and
`abrollout.run.decision` decides from those numbers alone, so a replay never recomputes floating point. Every float
is a plain, finite JSON number: a bound that does not exist at a look (no alpha spent yet) is `None`, never infinity.
"""

from __future__ import annotations

from typing import Annotated, Literal, cast, get_args

from pydantic import BaseModel, ConfigDict, Field, model_validator

from abrollout.contracts.spec import Effect, EffectKind, Goal, Guardrail, MetricKind
from abrollout.policy import PARAMS

SpendingName = Literal["lan_demets_obrien_fleming", "lan_demets_pocock", "power", "hwang_shih_decani"]
"""Alpha-spending families; see `abrollout.stats.boundaries.Spending` for the formulas and citations."""

_SPENDING_LABELS: dict[str, str] = {
    "lan_demets_obrien_fleming": "O'Brien-Fleming",
    "lan_demets_pocock": "Pocock",
    "power": "power-family",
    "hwang_shih_decani": "Hwang-Shih-DeCani",
}
SPENDING_DEFAULT_PARAMETER: dict[str, float] = {"power": 2.0, "hwang_shih_decani": -4.0}


def spending_shape(name: SpendingName, parameter: float | None) -> float:
    """rho (power family) or gamma (Hwang-Shih-DeCani); 0 for the families without a parameter."""
    return SPENDING_DEFAULT_PARAMETER.get(name, 0.0) if parameter is None else parameter


def spending_label(name: SpendingName, parameter: float | None) -> str:
    """Human name for rationales, e.g. "O'Brien-Fleming" or "Hwang-Shih-DeCani (gamma=-4)"."""
    symbol = {"power": "rho", "hwang_shih_decani": "gamma"}.get(name)
    suffix = f" ({symbol}={spending_shape(name, parameter):g})" if symbol else ""
    return _SPENDING_LABELS[name] + suffix


def policy_spending() -> SpendingName:
    if PARAMS.spending_function not in get_args(SpendingName):
        raise ValueError(f"policy spending function {PARAMS.spending_function!r} is not implemented")
    return cast(SpendingName, PARAMS.spending_function)


CheckKind = Literal["guardrail", "analysis", "status"]
"""`analysis`: planned look k of the primary (group-sequential); `guardrail`: the hourly guardrail/SRM check;
`status`: an unplanned look (a manual query), answered with the always-valid test."""

Probability = Annotated[float, Field(gt=0, lt=1)]
OVERALL = "overall"
"""Key of an observed guardrail value measured over all arms together rather than per arm."""


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class AnalysisPlan(Frozen):
    """Everything the statistics need, fixed at registration (prereg.1) and never changed (prereg.2)."""

    primary_metric: str
    goal: Goal = Goal.increase
    metric_kind: MetricKind = MetricKind.mean
    mde: Effect
    baseline_mean: float | None = Field(
        default=None, description="Pre-registered control mean; converts a relative MDE to metric units."
    )
    alpha: Probability = PARAMS.alpha
    power: Probability = PARAMS.power
    spending: SpendingName = policy_spending()
    spending_parameter: float | None = Field(
        default=None, description="rho of the power family (default 2) or gamma of Hwang-Shih-DeCani (default -4)."
    )
    planned_looks: int = Field(ge=1, description="K, the pre-registered number of analysis looks.")
    planned_max_users: int | None = Field(
        default=None,
        gt=0,
        description="Users expected in all arms together by the cap (PowerPlan.users_at_cap); the information "
        "fraction is the observed effective sample size over the planned one. None: calendar fraction k/K.",
    )
    arms: tuple[str, ...] = Field(min_length=2, description="Control first.")
    split: dict[str, float] = Field(description="Pre-registered percent of users per arm.")
    guardrails: tuple[Guardrail, ...] = ()
    guardrail_alpha: Probability = PARAMS.guardrail_alpha
    srm_p_threshold: Probability = PARAMS.srm_p_threshold
    promote_min_effect_fraction_of_mde: float = Field(default=PARAMS.promote_min_effect_fraction_of_mde, ge=0)

    @model_validator(mode="after")
    def _consistent(self) -> AnalysisPlan:
        if len(set(self.arms)) != len(self.arms):
            raise ValueError("arm names must be unique")
        if set(self.split) != set(self.arms) or abs(sum(self.split.values()) - 100.0) > 1e-6:
            raise ValueError("split must name exactly the arms and sum to 100")
        if min(self.split.values()) <= 0:
            raise ValueError("every arm needs a positive share")
        names = [g.name for g in self.guardrails]
        if len(set(names)) != len(names):
            raise ValueError("guardrail names must be unique")
        return self

    @property
    def control(self) -> str:
        return self.arms[0]

    @property
    def treatments(self) -> tuple[str, ...]:
        return self.arms[1:]

    @property
    def benefit_sign(self) -> int:
        """+1 when the hypothesis is an increase, -1 for a decrease: multiplies effects into 'benefit'."""
        return 1 if self.goal is Goal.increase else -1

    @property
    def spending_label(self) -> str:
        return spending_label(self.spending, self.spending_parameter)

    def relative_mde(self, control_mean: float | None = None) -> float | None:
        """The MDE as a fraction of the control mean (the pre-registered baseline first); None if unknown."""
        if self.mde.kind is EffectKind.relative:
            return self.mde.value / 100.0
        base = self.baseline_mean if self.baseline_mean is not None else control_mean
        return self.mde.value / abs(base) if base else None

    def absolute_mde(self, control_mean: float) -> float:
        """The MDE in metric units."""
        if self.mde.kind is EffectKind.absolute:
            return self.mde.value
        base = self.baseline_mean if self.baseline_mean is not None else control_mean
        return self.mde.value / 100.0 * abs(base)


class MetricStats(Frozen):
    """One arm's sufficient statistics for one metric, as a metrics source (a SQL aggregate) returns them.

    Per user y: n, sum(y), sum(y^2). CUPED (Deng et al. 2013) adds the pre-period covariate x of the same users
    (x = 0 for users without pre-period data): sum(x), sum(x^2), sum(x y). A ratio metric sum(y)/sum(d)
    (e.g. revenue per session) adds the per-user denominator d: sum(d), sum(d^2), sum(y d).
    """

    n: int = Field(ge=0)
    sum: float
    sum_sq: float = Field(ge=0)
    pre_sum: float | None = None
    pre_sum_sq: float | None = Field(default=None, ge=0)
    pre_sum_product: float | None = None
    denom_sum: float | None = None
    denom_sum_sq: float | None = Field(default=None, ge=0)
    denom_sum_product: float | None = None

    @model_validator(mode="after")
    def _complete_triples(self) -> MetricStats:
        for label, triple in (
            ("pre-period covariate", (self.pre_sum, self.pre_sum_sq, self.pre_sum_product)),
            ("ratio denominator", (self.denom_sum, self.denom_sum_sq, self.denom_sum_product)),
        ):
            if any(v is None for v in triple) and any(v is not None for v in triple):
                raise ValueError(f"{label} sums come as a complete triple (sum, sum of squares, cross product)")
        return self

    @property
    def has_covariate(self) -> bool:
        return self.pre_sum is not None

    @property
    def is_ratio(self) -> bool:
        return self.denom_sum is not None


ArmStats = dict[str, MetricStats]


class CheckInput(Frozen):
    """The data of one check, gathered by the CheckMetrics activity."""

    kind: CheckKind
    look: int = Field(default=0, ge=0, description="k of K for an `analysis` check; 0 otherwise.")
    primary: ArmStats = Field(default_factory=dict)
    guardrail_stats: dict[str, ArmStats] = Field(
        default_factory=dict, description="Per-arm sufficient statistics of guardrail metrics."
    )
    guardrail_values: dict[str, dict[str, float]] = Field(
        default_factory=dict,
        description="Observed values of threshold guardrails (e.g. latency_p95), per arm or under 'overall'.",
    )
    assignments: dict[str, int] = Field(default_factory=dict, description="Users assigned per arm (SRM).")
    prior_look_sizes: tuple[dict[str, int], ...] = Field(
        default=(),
        description="Primary-metric n per arm at planned looks 1..k-1 (a look without data repeats the one "
        "before); the boundary at look k depends on the information at every earlier look.",
    )
    data_age_seconds: float | None = Field(
        default=None, ge=0, description="How much older the newest exposure or event is than the window's end "
        "(experiment seconds); None when the source cannot tell.")

    @model_validator(mode="after")
    def _look_history(self) -> CheckInput:
        if self.kind == "analysis":
            if self.look < 1:
                raise ValueError("an analysis check names its planned look (1..K)")
            if len(self.prior_look_sizes) != self.look - 1:
                raise ValueError("prior_look_sizes must hold the sizes at looks 1..k-1")
        return self


class Interval(Frozen):
    low: float
    high: float


class ArmResult(Frozen):
    """One treatment against control on the primary metric at this check."""

    arm: str
    n: int
    control_n: int
    mean: float
    control_mean: float
    diff: float = Field(description="Treatment minus control, metric units (CUPED-adjusted when available).")
    rel_diff: float = Field(description="diff / control mean, as a fraction (0.061 is +6.1%).")
    diff_ci: Interval | None = Field(description="None when no bound exists yet at this look (unbounded).")
    rel_diff_ci: Interval | None = Field(description="Delta-method interval for rel_diff, same level and method.")
    z: float
    p_value: float = Field(description="Nominal two-sided fixed-sample p-value (not valid under peeking).")
    cuped_variance_reduction: float | None = Field(
        default=None, description="1 - var(adjusted diff)/var(raw diff); None without a covariate."
    )
    information_fraction: float | None = None
    efficacy_bound: float | None = Field(
        default=None, description="z needed for benefit at this look at the Holm level; None: cannot cross yet."
    )
    harm_bound: float | None = Field(default=None, description="|z| needed for harm at this look; None likewise.")
    efficacy_alpha: float = Field(
        description="Per-side level the efficacy test ran at after Holm step-down (for the always-valid test, half "
        "its two-sided level)."
    )
    harm_alpha: float = Field(description="Per-side level the harm test ran at after Holm step-down.")
    crossed_efficacy: bool
    crossed_harm: bool
    always_valid_p_value: float = Field(description="Two-sided, valid at any stopping time.")
    always_valid_diff_ci: Interval = Field(description="Confidence sequence for diff at level 1 - alpha.")
    always_valid_rel_diff_ci: Interval


class SrmResult(Frozen):
    chi2: float
    df: int
    p_value: float
    threshold: float
    flagged: bool
    observed: dict[str, int]
    expected: dict[str, float]


class NonInferiorityResult(Frozen):
    """One-sided always-valid test of H0: treatment worse than control by at most the margin (guardrail.3)."""

    arm: str
    harm: float = Field(description="Estimated harm in metric units (positive = treatment worse).")
    margin: float = Field(description="The margin in metric units.")
    z: float = Field(description="(harm - margin) / se")
    bound: float = Field(description="z at which the always-valid test rejects with this much data.")
    p_value: float = Field(description="Always-valid one-sided p-value.")
    harmful: bool


class GuardrailVerdict(Frozen):
    name: str
    direction: Literal["<", ">"]
    threshold: float
    observed: dict[str, float] = Field(description="Per arm, or under 'overall'.")
    evaluated: bool = Field(description="False when the check had no data for this guardrail.")
    threshold_breached: bool
    harm_detected: bool
    reason: str
    non_inferiority: tuple[NonInferiorityResult, ...] = ()

    @property
    def breached(self) -> bool:
        return self.threshold_breached or self.harm_detected


class CheckVerdict(Frozen):
    """Everything a decision needs, as recorded numbers (see `abrollout.run.decision.decide`)."""

    kind: CheckKind
    look: int
    planned_looks: int
    primary_metric: str
    test: Literal["group_sequential", "always_valid"] = Field(
        description="Which test set crossed_efficacy/crossed_harm: the planned-look boundary or, at unplanned "
        "looks, the always-valid test (informational: the primary decides only at planned looks)."
    )
    spending: SpendingName
    no_data: bool
    no_data_reason: str = ""
    arms: tuple[ArmResult, ...] = ()
    srm: SrmResult | None = None
    guardrails: tuple[GuardrailVerdict, ...] = ()


class PowerPlan(Frozen):
    """Sample size for the pre-registered MDE under the group-sequential design (see stats.power)."""

    users_per_arm: tuple[int, ...] = Field(description="Aligned with the split, control first.")
    total_users: int
    inflation_factor: float = Field(description="Group-sequential maximum information / fixed-sample information.")
    days_needed: float | None = Field(description="None without expected traffic.")
    users_at_cap: int | None = Field(description="Expected users by the cap: AnalysisPlan.planned_max_users.")
    reachable: bool | None = Field(description="Can the MDE be reached before the cap? None without traffic.")
    detectable_mde_at_cap: float | None = Field(
        description="Smallest effect detectable with the planned power by the cap, in the MDE's kind and units."
    )
