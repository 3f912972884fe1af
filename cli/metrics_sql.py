"""`validate`'s warehouse part: the spec's metrics checked against the metrics catalog in use, and the exact
statement a check runs for them, in any dialect, to read or paste into the warehouse's console."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from abrollout.contracts.spec import ExperimentSpec
from abrollout.plan.planner import ExperimentPlan
from abrollout.warehouse.checks import checked_metrics, spec_problems
from abrollout.warehouse.dialects import DIALECTS, render
from abrollout.warehouse.layout import Layout
from abrollout.warehouse.statistics import statistics_template
from adapters.protocols import AdapterConfigError
from adapters.warehouse.catalog_file import CatalogChoice, choose_catalog
from cli.spec_input import refuse
from client.exits import BAD_INPUT, UserFacingError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--metrics", metavar="FILE", help="the metrics catalog (default: metrics.yaml beside SPEC, "
                        "else the config's [warehouse] metrics, else every metric a label of the embedded schema)")
    parser.add_argument("--sql", action="store_true", help="print only the full statement a check runs for the "
                        "spec's metrics (primary and guardrails), for the whole duration cap")
    parser.add_argument("--dialect", choices=list(DIALECTS), metavar="NAME",
                        help=f"the SQL dialect for --sql: {', '.join(DIALECTS)} (default: the configured metrics "
                        "engine's, else duckdb)")
    parser.add_argument("--config", metavar="FILE", help="the worker config file whose [adapters] metrics and "
                        "[warehouse] settings apply (env ABROLLOUT_CONFIG)")


@dataclass(frozen=True)
class Warehouse:
    """What `validate` reads from the worker config: the metrics engine's dialect, its catalog file, and whether
    Prometheus answers the guardrails with a PromQL query."""

    dialect: str = "duckdb"
    metrics_file: str | None = None
    prometheus: bool = False


def configured(flag: str | None) -> Warehouse:
    """The config file's warehouse settings (none given: the embedded defaults); a bad file is exit 2."""
    from adapters.config import config_path, load_config, metrics_dialect

    path = config_path(flag)
    if path is None:
        return Warehouse()
    try:
        config = load_config(path)
    except AdapterConfigError as exc:
        raise UserFacingError(f"error: {exc}", BAD_INPUT) from None
    return Warehouse(metrics_dialect(config.adapters.metrics), config.warehouse.metrics,
                     config.adapters.guardrails == "prometheus")


def checked_catalog(args: argparse.Namespace, spec: ExperimentSpec, warehouse: Warehouse) -> CatalogChoice:
    """The catalog in use, with every metric the spec names defined in it; otherwise exit 2 naming each."""
    try:
        choice = choose_catalog(args.metrics, Path(args.spec), warehouse.metrics_file)
    except AdapterConfigError as exc:
        raise UserFacingError(f"error: {exc}", BAD_INPUT) from None
    problems = spec_problems(spec, choice.catalog, choice.where, warehouse.prometheus)
    if problems:
        raise refuse(problems, args.spec)
    return choice


def statement(choice: CatalogChoice, plan: ExperimentPlan, dialect: str, prometheus: bool) -> str:
    """The full statement of a check at the duration cap, as the worker renders it."""
    layout = Layout.keyed(choice.catalog, checked_metrics(plan, prometheus))
    return render(statistics_template(layout), dialect,
                  {"abr_key": plan.exp_key, "abr_until": plan.max_duration_seconds})
