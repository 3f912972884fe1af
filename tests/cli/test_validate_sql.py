"""`starter.py validate` with a metrics catalog: every metric the spec names must be defined in it, and `--sql`
prints the exact statement a check runs, in any dialect. Run as a person runs them: exit codes and output."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import sqlglot

from abrollout.warehouse.dialects import DIALECTS, sqlglot_dialect
from adapters.local_metrics import LocalMetrics
from adapters.warehouse.catalog_file import load_catalog
from adapters.warehouse.metrics import WarehouseMetrics
from cli.main import main
from tests.cli.test_validate import ROOT

CATALOG = ROOT / "examples" / "metrics.yaml"
PRICING = ROOT / "examples" / "pricing-annual-discount.yaml"
PRICING_CHECKED = ["annual_conversion", "revenue_per_user", "refund_rate"]
"""What each CheckMetrics of the pricing example asks for: the primary, then the guardrails."""
CAP_SECONDS = 28 * 86400


def validate(*args: str, config: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "ABROLLOUT_CONFIG"}
    if config is not None:
        env["ABROLLOUT_CONFIG"] = str(config)
    return subprocess.run([sys.executable, str(ROOT / "starter.py"), "validate", *args], capture_output=True,
                          text=True, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, timeout=60)


def test_validate_says_which_catalog_defines_the_metrics(tmp_path: Path) -> None:
    beside = validate(str(PRICING))
    assert beside.returncode == 0, beside.stderr
    assert f"metrics defined in {CATALOG}" in beside.stdout.splitlines()[0]
    alone = tmp_path / PRICING.name
    shutil.copy(PRICING, alone)
    built_in = validate(str(alone))
    assert built_in.returncode == 0 and "metrics defined in the built-in catalog" in built_in.stdout


def test_sql_is_the_statement_the_check_runs_and_it_runs_on_the_embedded_schema(tmp_path: Path) -> None:
    result = validate(str(PRICING), "--sql")
    assert result.returncode == 0, result.stderr
    store = LocalMetrics(tmp_path / "metrics.duckdb")
    try:
        engine = store.warehouse.engine
        recorded = WarehouseMetrics(engine, load_catalog(CATALOG)).statement(
            "pricing-annual-discount", PRICING_CHECKED, CAP_SECONDS)
        assert result.stdout == recorded + "\n"
        assert engine.query(result.stdout) == []  # it runs; no rows loaded yet, so no arm and no user
    finally:
        store.close()


@pytest.mark.parametrize("dialect", list(DIALECTS))
def test_sql_in_every_dialect_is_one_statement_that_parses_there(dialect: str, capsys: pytest.CaptureFixture[str],
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI's own entry point in this process (nine interpreter starts would cost half a minute)."""
    monkeypatch.delenv("ABROLLOUT_CONFIG", raising=False)
    assert main(["validate", str(PRICING), "--sql", "--dialect", dialect]) == 0
    out = capsys.readouterr().out
    parsed = [tree for tree in sqlglot.parse(out, read=sqlglot_dialect(dialect)) if tree is not None]
    assert len(parsed) == 1
    assert "'pricing-annual-discount'" in out and str(CAP_SECONDS) in out


def test_an_unknown_dialect_exits_2_naming_the_flag_and_the_choices() -> None:
    result = validate(str(PRICING), "--sql", "--dialect", "oracle")
    assert result.returncode == 2 and result.stdout == ""
    assert "--dialect" in result.stderr and all(name in result.stderr for name in DIALECTS)


@pytest.mark.parametrize("args", [["--dialect", "trino"], ["--sql", "--json"]], ids=["dialect-alone", "sql-json"])
def test_flags_that_do_not_go_together_exit_2(args: list[str]) -> None:
    result = validate(str(PRICING), *args)
    assert result.returncode == 2 and result.stdout == "" and "fix:" in result.stderr


@pytest.mark.parametrize("sql", [True, False], ids=["sql", "plan"])
def test_undefined_metrics_exit_2_with_their_paths_and_print_nothing(tmp_path: Path, sql: bool) -> None:
    catalog = tmp_path / "few.yaml"
    catalog.write_text("metrics:\n  annual_conversion: {table: metric_events, kind: proportion}\n"
                       "  refund_rat: {table: metric_events}\n")
    result = validate(str(PRICING), "--metrics", str(catalog), *(["--sql"] if sql else []))
    assert result.returncode == 2 and result.stdout == ""
    assert f"guardrails[0].name: metric 'revenue_per_user' is not defined in {catalog}" in result.stderr
    assert "guardrails[1].name: metric 'refund_rate' is not defined" in result.stderr
    assert "did you mean 'refund_rat'?" in result.stderr and "Traceback" not in result.stderr


def test_a_bad_catalog_exits_2_naming_the_field_path(tmp_path: Path) -> None:
    catalog = tmp_path / "metrics.yaml"
    catalog.write_text(CATALOG.read_text().replace("      value: value\n", "      value: 'value +'\n", 1))
    result = validate(str(PRICING), "--metrics", str(catalog), "--sql")
    assert result.returncode == 2 and result.stdout == ""
    assert "metrics.revenue_per_user.covariate.value: 'value +' does not parse as a duckdb expression" in (
        result.stderr)


def test_the_config_gives_the_dialect_the_catalog_and_the_prometheus_guardrails(tmp_path: Path) -> None:
    spec = tmp_path / "spec.yaml"  # no metrics.yaml beside it
    spec.write_text(PRICING.read_text().replace(
        "  - {name: refund_rate, threshold: 0.03, direction: \"<\"}",
        "  - {name: refund_rate, threshold: 0.03, direction: \"<\"}\n"
        "  - {name: p99_ms, threshold: 800, direction: \"<\", query: 'histogram_quantile(0.99, x[$window])'}"))
    config = tmp_path / "abrollout.toml"
    config.write_text(f'[adapters]\nmetrics = "trino"\nguardrails = "prometheus"\n[prometheus]\nurl = '
                      f'"http://127.0.0.1:9"\n[warehouse]\nmetrics = "{CATALOG}"\n')
    configured = validate(str(spec), "--sql", config=config)
    assert configured.returncode == 0, configured.stderr
    assert configured.stdout == validate(str(spec), "--sql", "--dialect", "trino", "--metrics", str(CATALOG),
                                         config=config).stdout
    assert "p99_ms" not in configured.stdout  # observed in Prometheus, not the warehouse
    without = validate(str(spec), "--sql", "--metrics", str(CATALOG))  # no config: p99_ms is the warehouse's
    assert without.returncode == 2 and "guardrails[2].name: metric 'p99_ms' is not defined" in without.stderr


def test_a_bad_config_exits_2_naming_the_key(tmp_path: Path) -> None:
    config = tmp_path / "abrollout.toml"
    config.write_text('[adapters]\nmetrics = "oracle"\n')
    result = validate(str(PRICING), "--sql", "--config", str(config))
    assert result.returncode == 2 and result.stdout == "" and "[adapters.metrics]" in result.stderr


def test_validate_json_names_the_catalog_file(capsys: pytest.CaptureFixture[str],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ABROLLOUT_CONFIG", raising=False)
    assert main(["validate", "--json", str(PRICING)]) == 0
    assert json.loads(capsys.readouterr().out)["metrics_catalog"] == str(CATALOG)
