"""Checks of a metrics catalog, and of a spec against one, as Problems (field path, what was found, the fix): a
catalog is written by people, so a wrong field, an expression that does not parse or a metric that is not defined
is reported the way a spec's problems are, all at once, before any SQL reaches a warehouse.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import sqlglot
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails
from sqlglot import exp
from sqlglot.errors import SqlglotError

from abrollout.contracts.spec import METRIC_PATTERN, ExperimentSpec
from abrollout.plan.planner import ExperimentPlan
from abrollout.spec.problems import Problem, dotted, show
from abrollout.warehouse.catalog import Catalog, CovariateSource, ExposureSource, MetricDefinition, Source
from abrollout.warehouse.dialects import DIALECTS, sqlglot_dialect, transpile_expression

_OWNERS: dict[tuple[str, ...], type[BaseModel]] = {
    (): Catalog, ("exposures",): ExposureSource, ("metrics", "*"): MetricDefinition,
    ("metrics", "*", "covariate"): CovariateSource}
"""Which model a field path's last part belongs to (`*`: a metric's name)."""

_EXPRESSIONS = ("user_id", "experiment_key", "loaded_at", "variant", "timestamp", "value")
"""A source's fields that hold one SQL expression (those its kind has)."""

_TYPE_HELP = {
    "metrics": "a mapping of metric names to definitions, e.g. {revenue: {table: orders, value: amount}}",
    "exposures": "a mapping like {table: exposures, user_id: user_id, variant: arm, timestamp: at_s}",
    "covariate": "a mapping like {table: pre_period, value: amount}, or leave it out",
    "filters": "a list of SQL conditions, e.g. [\"status = 'paid'\"]",
}


@dataclass
class CatalogCheck:
    """A catalog read from data: the Catalog when it has no problems, and every problem found."""

    catalog: Catalog | None
    problems: list[Problem] = field(default_factory=list)


def check_catalog(raw: Mapping[str, Any]) -> CatalogCheck:
    """Structure (with each metric's name and a ratio's denominator at their own paths), then every expression
    parsed in the catalog's dialect."""
    references = list(_reference_problems(raw.get("metrics")))
    try:
        catalog = Catalog.model_validate(dict(raw))
    except ValidationError as exc:
        structural = [p for p in _structure_problems(exc) if not (references and p.path == "metrics")]
        return CatalogCheck(None, [*references, *structural])
    problems = [*references, *expression_problems(catalog)]
    return CatalogCheck(None if problems else catalog, problems)


def expression_problems(catalog: Catalog) -> list[Problem]:
    """Every table name, query, expression and filter that the generator could not read in `catalog.dialect`."""
    problems = []
    dialect: str | None = catalog.dialect
    if catalog.dialect not in DIALECTS:
        problems.append(Problem(path="dialect", found=f"unknown SQL dialect {show(catalog.dialect)}",
                                fix=f"write the dialect the expressions are in: one of {', '.join(DIALECTS)}"))
        dialect = None
    sources: list[tuple[str, Source]] = [("exposures", catalog.exposures)]
    for name, definition in catalog.metrics.items():
        sources.append((f"metrics.{name}", definition))
        if definition.covariate is not None:
            sources.append((f"metrics.{name}.covariate", definition.covariate))
    return problems + [problem for path, source in sources for problem in _source_problems(path, source, dialect)]


def _source_problems(path: str, source: Source, dialect: str | None) -> Iterator[Problem]:
    """The source's table name, and (in a known dialect) its query and expressions."""
    if source.table is not None and not all(part.strip() for part in source.table.split(".")):
        yield Problem(path=f"{path}.table", found=f"found {show(source.table)}",
                      fix="a table name, qualified as schema.table or catalog.schema.table if need be")
    if dialect is None:
        return
    if source.sql is not None and not _is_query(source.sql, dialect):
        yield Problem(path=f"{path}.sql", found=f"{show(source.sql)} is not one {dialect} query",
                      fix="write one SELECT (no `;`, no other statement) whose columns the fields name")
    for name in _EXPRESSIONS:
        text = getattr(source, name, None)
        if isinstance(text, str) and not _parses(text, dialect):
            yield Problem(path=f"{path}.{name}", found=f"{show(text)} does not parse as a {dialect} expression",
                          fix="write one SQL expression over the source's columns, e.g. `amount / 100.0`")
    for i, condition in enumerate(source.filters):
        if not _parses(condition, dialect):
            yield Problem(path=f"{path}.filters[{i}]", found=f"{show(condition)} does not parse as a {dialect} "
                          "condition", fix="write one SQL condition per item, e.g. \"status = 'paid'\"")


def _parses(text: str, dialect: str) -> bool:
    try:
        transpile_expression(text, dialect)
    except SqlglotError:
        return False
    return True


def _is_query(text: str, dialect: str) -> bool:
    try:
        return isinstance(sqlglot.parse_one(text, read=sqlglot_dialect(dialect)), exp.Query)
    except SqlglotError:
        return False


def _reference_problems(metrics: object) -> Iterator[Problem]:
    """Metric names that do not match the pattern, and a denominator that names no metric of the catalog."""
    if not isinstance(metrics, Mapping):
        return
    for name, body in metrics.items():
        if not isinstance(name, str) or not re.fullmatch(METRIC_PATTERN, name):
            yield Problem(path=f"metrics.{name}", found=f"metric name {show(name)}",
                          fix="letters, digits, '_' or '.', starting with a letter, at most 64 characters")
        denominator = body.get("denominator") if isinstance(body, Mapping) else None
        if isinstance(denominator, str) and denominator not in metrics:
            yield Problem(path=f"metrics.{name}.denominator", found=f"'{denominator}' is not defined here",
                          fix=_define(denominator, [str(n) for n in metrics], "this file"))


def _structure_problems(exc: ValidationError) -> list[Problem]:
    return [Problem(path=dotted(error["loc"]), found=_found(error), fix=_fix(error))
            for error in exc.errors(include_url=False)]


def _found(error: ErrorDetails) -> str:
    if error["type"] == "extra_forbidden":
        return f"unknown field '{error['loc'][-1]}'"
    return f"found {show(error['input'])}"


def _fix(error: ErrorDetails) -> str:
    loc = error["loc"]
    last = str(loc[-1]) if loc else ""
    if error["type"] == "extra_forbidden":
        shape = tuple("*" if i == 1 and loc[0] == "metrics" else str(part) for i, part in enumerate(loc[:-1]))
        allowed = sorted(_OWNERS[shape].model_fields) if shape in _OWNERS else []
        close = difflib.get_close_matches(last, allowed, n=1)
        return ("did you mean '" + close[0] + "'? " if close else "") + f"remove it; allowed here: {', '.join(allowed)}"
    key = "metrics" if loc == ("metrics",) else "exposures" if loc == ("exposures",) else last
    if error["type"].endswith("_type") and key in _TYPE_HELP:
        return _TYPE_HELP[key]
    if len(loc) == 2 and loc[0] == "metrics" and error["type"] == "model_type":
        return "write the metric as a mapping, e.g. {table: orders, value: amount}"
    message = error["msg"].removeprefix("Value error, ")
    return message[:1].lower() + message[1:]


def _define(name: str, defined: list[str], where: str) -> str:
    close = difflib.get_close_matches(name, defined, n=1)
    return (f"did you mean '{close[0]}'? " if close else "") + f"define `metrics.{name}` in {where}"


def checked_metrics(plan: ExperimentPlan, prometheus: bool = False) -> list[str]:
    """The metrics every CheckMetrics asks the warehouse for: the primary, then each guardrail, once each (as
    activities/metrics_check.py asks them); with Prometheus, a guardrail with a PromQL `query` is observed there
    instead (adapters/composite_metrics.py)."""
    guardrails = [g.name for g in plan.guardrails if not (prometheus and g.query)]
    return list(dict.fromkeys([plan.primary_metric, *guardrails]))


def spec_problems(spec: ExperimentSpec, catalog: Catalog, where: str, prometheus: bool = False) -> list[Problem]:
    """Metrics the spec names that `catalog` (read from `where`) does not define, and kinds the spec and the
    definition both state and disagree on."""
    problems: list[Problem] = []
    defined = list(catalog.metrics)
    for path, metric, kind in _named(spec, prometheus):
        definition = catalog.definition(metric)
        if definition is None:
            problems.append(Problem(path=path, found=f"metric '{metric}' is not defined in {where}",
                                    fix=_define(metric, defined, where)))
            continue
        if kind is not None and "kind" in definition.model_fields_set and kind != definition.kind.value:
            problems.append(Problem(path=f"{path}.kind", found=f"{kind}, but {where} defines '{metric}' as "
                                    f"{definition.kind.value}", fix="make the two kinds agree: the definition's "
                                    "decides how each user's value is computed, the spec's how it is analysed"))
    return problems


def _named(spec: ExperimentSpec, prometheus: bool) -> Iterator[tuple[str, str, str | None]]:
    """(path, metric, the kind the spec states or None) for every metric the spec names that the warehouse
    answers."""
    stated = [("primary_metric", spec.primary_metric),
              *((f"secondary_metrics[{i}]", m) for i, m in enumerate(spec.secondary_metrics))]
    for path, metric in stated:
        yield path, metric.name, metric.kind.value if "kind" in metric.model_fields_set else None
    for i, guardrail in enumerate(spec.guardrails):
        if not (prometheus and guardrail.query):
            yield f"guardrails[{i}].name", guardrail.name, None
