"""Metric definitions as data: where a warehouse keeps exposures and each metric's rows, and how a user's value is
read from them (the way GrowthBook's fact tables and dbt's semantic layer describe metrics once for every query).

Every column and value is a SQL expression in the catalog's `dialect`; the generator transpiles them to each engine's
dialect. Times are integer seconds of experiment time and `loaded_at` an integer that only grows as rows are loaded
(a batch number, or epoch microseconds of the load): the incremental rollup reads rows past its watermark on it.
"""

from __future__ import annotations

import hashlib
import json
import re
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator
from sqlglot import exp

from abrollout.contracts.spec import METRIC_PATTERN
from abrollout.warehouse.dialects import sqlglot_dialect

Expression = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000)]
"""A SQL expression or a table name, in the catalog's dialect; parsed when the catalog is checked."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Source(Strict):
    """Rows of one table (or one query): who (`user_id`) and, when the table holds several experiments, which
    (`experiment_key`). `filters` are SQL conditions every row must meet."""

    table: Expression | None = None
    sql: Expression | None = Field(default=None, description="A query instead of a table: its columns are used "
                                                            "like a table's.")
    user_id: Expression = "user_id"
    experiment_key: Expression | None = Field(default=None, description="Column naming the experiment; without it "
                                                                       "every row of the source counts.")
    loaded_at: Expression | None = Field(default=None, description="Integer load order; without it the rollup "
                                                                  "cannot read this source incrementally.")
    filters: tuple[Expression, ...] = ()

    @model_validator(mode="after")
    def _one_origin(self) -> Source:
        if (self.table is None) == (self.sql is None):
            raise ValueError("give exactly one of `table` (a table name) or `sql` (a query)")
        return self


class ExposureSource(Source):
    """Which arm each user was assigned, and when."""

    experiment_key: Expression | None = "exp_key"
    variant: Expression = "arm"
    timestamp: Expression = "at_s"


class CovariateSource(Source):
    """A user's pre-period value of the metric (CUPED): rows from before the experiment, so no timestamp."""

    value: Expression = "value"


class MetricKind(StrEnum):
    """How a user's rows become their value: `mean` sums them, `proportion` is 1 if the sum is positive (converted
    at least once), `ratio` is a sum over the sum of another metric (`denominator`)."""

    mean = "mean"
    proportion = "proportion"
    ratio = "ratio"


class MetricDefinition(Source):
    """One metric: its source's rows in the window, summed per user."""

    timestamp: Expression = "at_s"
    value: Expression = "value"
    kind: MetricKind = MetricKind.mean
    denominator: str | None = Field(default=None, description="For a ratio: the metric whose per-user sum divides "
                                                              "this one's.")
    covariate: CovariateSource | None = None

    @model_validator(mode="after")
    def _ratio_has_denominator(self) -> MetricDefinition:
        if (self.kind is MetricKind.ratio) != (self.denominator is not None):
            raise ValueError("a ratio metric names its `denominator` metric, and only a ratio has one")
        return self


class Labels(Strict):
    """Metrics as labels: a metric not listed is the `events` rows whose `events_label` column holds its name, its
    covariate the `covariates` rows labelled the same (the embedded schema's reading, on any tables)."""

    events: MetricDefinition = MetricDefinition(table="metric_events", experiment_key="exp_key", loaded_at="loaded_at")
    covariates: CovariateSource = CovariateSource(table="pre_period", experiment_key="exp_key", loaded_at="loaded_at")
    events_label: Expression = "metric"
    covariates_label: Expression = "metric"

    def metric(self, name: str, dialect: str) -> MetricDefinition:
        name_literal = exp.Literal.string(name).sql(sqlglot_dialect(dialect))
        covariate = self.covariates.model_copy(update={"filters": (f"{self.covariates_label} = {name_literal}",)})
        return self.events.model_copy(update={"filters": (f"{self.events_label} = {name_literal}",),
                                              "covariate": covariate})


class Catalog(Strict):
    """Exposures and the metrics, written in `dialect`; with `labels`, any other metric name is a label."""

    dialect: str = "duckdb"
    exposures: ExposureSource = ExposureSource(table="exposures", loaded_at="loaded_at")
    metrics: dict[str, MetricDefinition] = {}
    labels: Labels | None = None

    @field_validator("metrics")
    @classmethod
    def _names(cls, metrics: dict[str, MetricDefinition]) -> dict[str, MetricDefinition]:
        for name, definition in metrics.items():
            if not re.fullmatch(METRIC_PATTERN, name):
                raise ValueError(f"metric name {name!r} must match {METRIC_PATTERN}")
            if definition.denominator is not None and definition.denominator not in metrics:
                raise ValueError(f"metric {name}'s denominator {definition.denominator!r} is not defined here")
        return metrics

    def definition(self, name: str) -> MetricDefinition | None:
        """The metric's definition, or None when it is not defined."""
        if name in self.metrics:
            return self.metrics[name]
        return self.labels.metric(name, self.dialect) if self.labels is not None else None

    def undefined(self, names: list[str]) -> list[str]:
        """Names with no definition, a ratio's denominator included."""
        missing = [name for name in names if self.definition(name) is None]
        return list(dict.fromkeys(missing))

    def resolve(self, names: list[str]) -> dict[str, MetricDefinition]:
        """The definitions of `names` and of the denominators they need, in order; KeyError names a missing one."""
        found: dict[str, MetricDefinition] = {}
        for name in [*names, *(self._denominators(names))]:
            definition = self.definition(name)
            if definition is None:
                raise KeyError(name)
            found.setdefault(name, definition)
        return found

    def _denominators(self, names: list[str]) -> list[str]:
        return [d.denominator for name in names if (d := self.definition(name)) is not None and d.denominator]

    def fingerprint(self, names: list[str]) -> str:
        """Hex digest of what `names` read: a rollup kept for one set of definitions never answers another."""
        used = {name: definition.model_dump(mode="json") for name, definition in self.resolve(names).items()}
        content = {"dialect": self.dialect, "exposures": self.exposures.model_dump(mode="json"), "metrics": used}
        return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:12]


BUILT_IN = Catalog(labels=Labels())
"""The embedded schema (DuckDB, and the PostgreSQL tables `create_tables` makes): every metric a label."""
