"""The input contract: an experiment spec as a person writes it, typed and strict.

Structure and types are checked here (unknown fields are errors, so typos never pass silently); the rules
of exp_policy.v5 are checked in `abrollout.spec.admission`, so that every refusal there cites its clause.
"""

from __future__ import annotations

import math
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
)

from abrollout.durations import Duration, Offset

EXPERIMENT_NAME_PATTERN = r"^[a-z][a-z0-9-]{1,62}$"
ARM_PATTERN = r"^[a-z][a-z0-9_]{0,31}$"
METRIC_PATTERN = r"^[A-Za-z][A-Za-z0-9_.]{0,63}$"
CONTROL_ARM = "control"

ExperimentName = Annotated[str, StringConstraints(pattern=EXPERIMENT_NAME_PATTERN)]
ArmName = Annotated[str, StringConstraints(pattern=ARM_PATTERN)]
MetricName = Annotated[str, StringConstraints(pattern=METRIC_PATTERN)]
ShortText = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
LongText = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000)]


def _not_bool(value: object) -> object:
    """pydantic's lax mode reads true as 1; a yes/no where a number belongs is a mistake to point out, not a 1."""
    if isinstance(value, bool):
        raise ValueError("write a number, not true/false")
    return value


def _finite(value: float) -> float:
    if not math.isfinite(value):
        raise ValueError("must be a finite number (not NaN or infinity)")
    return value


NotBool = BeforeValidator(_not_bool)
"""Last in an int field's metadata, after its Field constraints, so the JSON Schema keeps them as minimum/maximum."""
Finite = Annotated[float, NotBool, AfterValidator(_finite)]
"""A float field: finite, and never a boolean (an int is a float here)."""
WholeNumber = Annotated[int, NotBool]
"""An int field that refuses booleans; 14 and 14.0 both read as 14."""
Scalar = Annotated[str, StringConstraints(max_length=500)] | bool | int | Finite
AttributeValue = Annotated[str, StringConstraints(max_length=100)]


class Strict(BaseModel):
    """Base for spec models: unknown fields are errors (a typo must never be ignored); models are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class Domain(StrEnum):
    prompts = "prompts"
    policies = "policies"
    ranking = "ranking"
    pricing = "pricing"
    ui = "ui"


class Goal(StrEnum):
    """The hypothesised direction of the primary metric."""

    increase = "increase"
    decrease = "decrease"


class MetricKind(StrEnum):
    """How the metric's per-user values are summarised: a 0/1 proportion, a mean, or a ratio of sums."""

    proportion = "proportion"
    mean = "mean"
    ratio = "ratio"


class EffectKind(StrEnum):
    relative = "relative"
    absolute = "absolute"


class Effect(Strict):
    """A size of effect that says what it is: `relative` in percent of control, `absolute` in metric units
    (for a proportion, 0.01 is one percentage point)."""

    kind: EffectKind
    value: Annotated[Finite, Field(gt=0)]

    def describe(self) -> str:
        return f"{self.value:g}% relative" if self.kind is EffectKind.relative else f"{self.value:g} absolute"

    def in_units(self, baseline: float) -> float:
        """The effect in metric units: a relative one is a percent of the baseline's size."""
        return self.value if self.kind is EffectKind.absolute else self.value / 100.0 * abs(baseline)


def _metric_from_name(value: object) -> object:
    return {"name": value} if isinstance(value, str) else value


class Metric(Strict):
    """A metric by name, with what the statistics need to know about it."""

    name: MetricName
    goal: Goal = Goal.increase
    kind: MetricKind = MetricKind.mean
    baseline: Finite | None = Field(default=None, description="Expected control mean, for power planning.")
    baseline_sd: Annotated[Finite, Field(gt=0)] | None = Field(
        default=None, description="Expected per-user standard deviation (mean metrics), for power planning."
    )

    @field_validator("baseline")
    @classmethod
    def _proportion_baseline(cls, baseline: float | None, info: ValidationInfo) -> float | None:
        """A proportion's baseline is a rate; 30 (a percent) or 1.0 (no variance) would make its power plan
        meaningless. `kind` is validated first, so it is in `info.data` unless it was itself invalid."""
        if baseline is not None and info.data.get("kind") is MetricKind.proportion and not 0.0 < baseline < 1.0:
            raise ValueError("a proportion's baseline is a rate strictly between 0 and 1: write 0.3 for 30%")
        return baseline


MetricRef = Annotated[Metric, BeforeValidator(_metric_from_name)]
"""A metric written either as its bare name or as a full `Metric` object."""


class GuardrailScope(StrEnum):
    """Which arms' observed values must satisfy the threshold."""

    treatments = "treatments"
    all_arms = "all_arms"


class Guardrail(Strict):
    """A hard stop. `direction` is the condition that must HOLD: `latency_p95 < 2.5` must stay below 2.5, so an
    observed 2.5 or more is a breach."""

    name: MetricName
    threshold: Finite
    direction: Literal["<", ">"]
    scope: GuardrailScope = GuardrailScope.treatments
    margin: Effect | None = Field(
        default=None,
        description="Non-inferiority margin: stop when a treatment is worse than control by more than this.",
    )
    query: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000)] | None = Field(
        default=None,
        description="PromQL for an operational guardrail, evaluated by the Prometheus adapter: one series per arm "
        "with an `arm` label; `$experiment` and `$window` are filled in.",
    )

    def holds(self, observed: float) -> bool:
        """True when the must-hold condition is met; a value equal to the threshold is a breach."""
        return observed < self.threshold if self.direction == "<" else observed > self.threshold

    def describe(self) -> str:
        return f"{self.name} {self.direction} {self.threshold:g}"


Percent = Annotated[Finite, Field(gt=0, le=100)]


class Allocation(Strict):
    split: dict[ArmName, Percent] | None = Field(
        default=None, description="Percent of exposed users per arm; an even split when omitted."
    )
    exposure_rules: list[Annotated[str, StringConstraints(min_length=1, max_length=2000)]] = Field(
        default_factory=list, max_length=50
    )
    population: ShortText = "all_users"
    expected_daily_users: Annotated[int, Field(gt=0, le=10**10), NotBool] | None = Field(
        default=None, description="Users entering the experiment per day at full exposure, for power planning."
    )


class RampStep(Strict):
    """A pre-registered exposure step: from `at` after the run starts, `percent` of eligible users are in."""

    percent: Annotated[int, Field(gt=0, le=100, description="Whole percent: flag rollouts are integers."), NotBool]
    at: Offset


class Schedule(Strict):
    guardrail_check_every: Duration = 3600
    analysis_every: Duration = 86400
    hour_seconds: Annotated[Finite, Field(gt=0, le=3600)] = Field(
        default=3600.0,
        description="Real seconds per experiment hour; below 3600 accelerates the clock (embedded adapters only).",
    )


class SimMetric(Strict):
    """A simulated metric: Bernoulli(mean) when `sd` is omitted, otherwise Normal(mean, sd)."""

    mean: Finite
    sd: Annotated[Finite, Field(gt=0)] | None = None
    pre_period_correlation: Annotated[Finite, Field(ge=0, lt=1)] = Field(
        default=0.0, description="Correlation of a simulated pre-period covariate (CUPED); needs `sd`."
    )


class Shift(Strict):
    """A simulated change to a metric: relative (percent) or absolute, either sign."""

    kind: EffectKind
    value: Finite


class Degradation(Strict):
    metric: MetricName
    arm: ArmName
    from_hour: Annotated[int, Field(ge=0, le=24 * 400), NotBool]
    shift: Shift


class Simulation(Strict):
    """Traffic for the embedded simulator (demo and golden scenarios); deterministic for a seed."""

    seed: Annotated[int, Field(ge=0, le=2**31 - 1), NotBool] = 0
    users_per_hour: Annotated[int, Field(gt=0, le=1_000_000), NotBool]
    daily_cycle: bool = Field(default=False, description="Traffic varies by hour of day.")
    metrics: dict[MetricName, SimMetric]
    effects: dict[ArmName, dict[MetricName, Shift]] = Field(default_factory=dict)
    degradations: list[Degradation] = Field(default_factory=list, max_length=20)
    exposure_loss: dict[ArmName, Annotated[Finite, Field(ge=0, lt=1)]] = Field(
        default_factory=dict, description="Fraction of an arm's exposures that never get logged (causes SRM)."
    )
    context: dict[MetricName, dict[AttributeValue, Annotated[Finite, Field(gt=0)]]] = Field(
        default_factory=dict, description="User attributes: field -> {value: weight}."
    )


class ExperimentSpec(Strict):
    """What a person pre-registers. Everything here is fixed before any traffic is allocated."""

    name: ExperimentName | None = Field(default=None, description="The experiment key; workflow id exp-<name>.")
    domain: Domain
    hypothesis: LongText | None = None
    treatment_spec: dict[ArmName, dict[AttributeValue, Scalar]] = Field(
        description="Arms by name (an arm named `control` is required), each with its configuration."
    )
    primary_metric: MetricRef
    secondary_metrics: list[MetricRef] = Field(default_factory=list, max_length=50)
    guardrails: list[Guardrail] = Field(max_length=50)
    mde: Effect
    max_duration_days: WholeNumber
    max_concurrent: WholeNumber
    owners: list[ShortText] = Field(default_factory=list, max_length=20)
    allocation: Allocation = Field(default_factory=Allocation)
    ramp: list[RampStep] = Field(default_factory=list, max_length=20)
    schedule: Schedule = Field(default_factory=Schedule)
    simulation: Simulation | None = None

    @property
    def arms(self) -> tuple[str, ...]:
        """Arms with control first, then treatments in the order written."""
        return (CONTROL_ARM, *(a for a in self.treatment_spec if a != CONTROL_ARM))

    @property
    def treatments(self) -> tuple[str, ...]:
        return self.arms[1:]
