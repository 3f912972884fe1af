"""Metric definitions as data: the Catalog's own rules, and the catalog file people write (examples/metrics.yaml),
read with every problem named by its field path and fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from abrollout.spec.loader import parse_text, validate_raw
from abrollout.warehouse.catalog import BUILT_IN, Catalog, MetricDefinition, MetricKind
from abrollout.warehouse.checks import spec_problems
from adapters.warehouse.catalog_file import METRICS_FILE, CatalogFileError, choose_catalog, load_catalog

ROOT = Path(__file__).resolve().parents[3]
EXAMPLE = ROOT / "examples" / METRICS_FILE
SPECS = sorted(p for p in (ROOT / "examples").glob("*.yaml") if p.name != METRICS_FILE)


def test_the_example_catalog_defines_every_metric_the_example_specs_name() -> None:
    catalog = load_catalog(EXAMPLE)
    for path in SPECS:
        spec = validate_raw(parse_text(path.read_text())).spec
        assert spec is not None, path
        assert spec_problems(spec, catalog, str(EXAMPLE)) == [], path.name


def test_the_example_catalog_shows_a_ratio_and_a_covariate() -> None:
    catalog = load_catalog(EXAMPLE)
    ratios = [d for d in catalog.metrics.values() if d.kind is MetricKind.ratio]
    assert ratios and all(d.denominator in catalog.metrics for d in ratios)
    assert any(d.covariate is not None for d in catalog.metrics.values())
    assert catalog.definition("no_such_metric") is None  # a file's catalog is closed: only what it defines


def test_resolve_adds_a_ratios_denominator_once_after_the_asked_metrics() -> None:
    catalog = load_catalog(EXAMPLE)
    assert list(catalog.resolve(["refund_rate", "ctr"])) == ["refund_rate", "ctr", "orders"]
    assert list(catalog.resolve(["orders", "refund_rate"])) == ["orders", "refund_rate"]
    with pytest.raises(KeyError, match="nope"):
        catalog.resolve(["ctr", "nope"])
    assert catalog.undefined(["ctr", "nope", "nope"]) == ["nope"]


def test_the_fingerprint_follows_the_definitions_read_and_nothing_else() -> None:
    base = {"table": "events", "experiment_key": "exp_key", "loaded_at": "loaded_at"}
    catalog = Catalog(metrics={"a": MetricDefinition(**base), "b": MetricDefinition(**base)})
    other_b = catalog.model_copy(update={"metrics": {**catalog.metrics, "b": MetricDefinition(**base, value="v2")}})
    other_a = catalog.model_copy(update={"metrics": {**catalog.metrics, "a": MetricDefinition(**base, value="v2")}})
    assert catalog.fingerprint(["a"]) == other_b.fingerprint(["a"])
    assert catalog.fingerprint(["a"]) != other_a.fingerprint(["a"])


def test_the_built_in_catalog_reads_any_metric_as_a_label() -> None:
    definition = BUILT_IN.definition("anything.at_all")
    assert definition is not None and definition.filters == ("metric = 'anything.at_all'",)
    assert definition.covariate is not None and definition.covariate.table == "pre_period"
    assert BUILT_IN.undefined(["x", "y"]) == []


BAD_FILES = [
    ("metrics:\n  revenue: {table: t, covariate: {table: p, value: 3}}\n", "metrics.revenue.covariate.value",
     "valid string"),
    ("metrics:\n  revenue: {table: t, covariate: {table: p, valeu: x}}\n", "metrics.revenue.covariate.valeu",
     "did you mean 'value'?"),
    ("metrics:\n  revenue: {table: t, value: 'amount +'}\n", "metrics.revenue.value", "one SQL expression"),
    ("metrics:\n  revenue: {table: t, filters: [\"status = \"]}\n", "metrics.revenue.filters[0]",
     "one SQL condition"),
    ("metrics:\n  revenue: {sql: 'DELETE FROM t'}\n", "metrics.revenue.sql", "one SELECT"),
    ("metrics:\n  revenue: {table: t, kind: ratio, denominator: ordres}\n  orders: {table: t}\n",
     "metrics.revenue.denominator", "did you mean 'orders'?"),
    ("metrics:\n  revenue: {table: t, kind: ratio}\n", "metrics.revenue", "names its `denominator`"),
    ("metrics:\n  revenue: {table: t, sql: 'SELECT 1'}\n", "metrics.revenue", "exactly one of `table`"),
    ("metrics:\n  9lives: {table: t}\n", "metrics.9lives", "starting with a letter"),
    ("metrics:\n  revenue: {table: t, kind: sum}\n", "metrics.revenue.kind", "'mean', 'proportion' or 'ratio'"),
    ("metrics:\n  revenue: {table: t, filters: \"status = 'paid'\"}\n", "metrics.revenue.filters",
     "a list of SQL conditions"),
    ("exposures: {table: 'analytics..exposures'}\n", "exposures.table", "schema.table"),
    ("dialect: oracle\n", "dialect", "one of duckdb, postgres"),
    ("metric:\n  revenue: {table: t}\n", "metric", "did you mean 'metrics'?"),
]
"""(file text, the field path of its problem, part of the fix)."""


@pytest.mark.parametrize(("text", "path", "fix"), BAD_FILES, ids=[f"{i}-{case[1]}" for i, case in enumerate(BAD_FILES)])
def test_a_bad_catalog_file_names_the_field_and_the_fix(tmp_path: Path, text: str, path: str, fix: str) -> None:
    file = tmp_path / METRICS_FILE
    file.write_text(text)
    with pytest.raises(CatalogFileError) as raised:
        load_catalog(file)
    problems = {p.path: p.fix for p in raised.value.problems}
    assert path in problems, raised.value.problems
    assert fix in problems[path]
    assert str(file) in str(raised.value) and path in str(raised.value)


def test_every_problem_of_a_catalog_is_reported_at_once(tmp_path: Path) -> None:
    file = tmp_path / METRICS_FILE
    file.write_text("dialect: oracle\nexposures: {table: 'a..b'}\n")
    with pytest.raises(CatalogFileError) as raised:
        load_catalog(file)
    assert [p.path for p in raised.value.problems] == ["dialect", "exposures.table"]


def test_expressions_are_read_in_the_catalogs_own_dialect(tmp_path: Path) -> None:
    file = tmp_path / METRICS_FILE
    body = "metrics:\n  revenue: {table: 'proj.ds.orders', value: 'SAFE_CAST(`amount` AS FLOAT64)'}\n"
    file.write_text("dialect: bigquery\n" + body)
    assert load_catalog(file).metrics["revenue"].value == "SAFE_CAST(`amount` AS FLOAT64)"
    file.write_text("dialect: postgres\n" + body)
    with pytest.raises(CatalogFileError, match=r"metrics.revenue.value: .* does not parse as a postgres"):
        load_catalog(file)


@pytest.mark.parametrize(("text", "found"), [
    ("metrics: {a: {table: t}}\nmetrics: {}\n", "duplicate key"),
    ("- just\n- a list\n", "must be a mapping"),
    ("metrics: {a: [\n", "not valid YAML"),
])
def test_a_file_that_is_not_a_catalog_mapping_is_one_clear_problem(tmp_path: Path, text: str, found: str) -> None:
    file = tmp_path / METRICS_FILE
    file.write_text(text)
    with pytest.raises(CatalogFileError, match=found) as raised:
        load_catalog(file)
    assert "dialect:, exposures: and metrics:" in raised.value.problems[0].fix


def test_a_missing_catalog_file_says_so(tmp_path: Path) -> None:
    with pytest.raises(CatalogFileError, match="does not exist"):
        load_catalog(tmp_path / "nope.yaml")


def test_the_catalog_a_spec_uses_flag_then_beside_then_configured_then_built_in(tmp_path: Path) -> None:
    flagged, configured, spec = tmp_path / "flag.yaml", tmp_path / "conf.yaml", tmp_path / "specs" / "s.yaml"
    spec.parent.mkdir()
    for file in (flagged, configured):
        file.write_text(EXAMPLE.read_text())
    assert choose_catalog(None, spec, None).file is None
    assert choose_catalog(None, spec, None).catalog is BUILT_IN
    assert choose_catalog(None, spec, str(configured)).file == configured
    (spec.parent / METRICS_FILE).write_text(EXAMPLE.read_text())
    assert choose_catalog(None, spec, str(configured)).file == spec.parent / METRICS_FILE
    assert choose_catalog(str(flagged), spec, str(configured)).file == flagged
    assert choose_catalog(str(flagged), spec).where == str(flagged)
