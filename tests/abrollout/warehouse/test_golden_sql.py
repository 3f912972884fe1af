"""The generator's SQL for every dialect, frozen: each statement of a fixed layout (the pricing example's metrics
as examples/metrics.yaml defines them: a proportion, a mean with a CUPED covariate and a ratio) equals its golden
file, and parses back with sqlglot in its own dialect. A deliberate change is one command:

    ABROLLOUT_UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/abrollout/warehouse/test_golden_sql.py

then read the diff of tests/abrollout/warehouse/golden/ before committing it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlglot

from abrollout.warehouse.dialects import DIALECTS, Value, render, sqlglot_dialect
from abrollout.warehouse.layout import Layout
from abrollout.warehouse.rollup import RollupStatements
from abrollout.warehouse.statistics import statistics_template
from adapters.warehouse.catalog_file import load_catalog

ROOT = Path(__file__).resolve().parents[3]
GOLDEN = Path(__file__).resolve().parent / "golden"
UPDATE = os.environ.get("ABROLLOUT_UPDATE_GOLDEN") == "1"
EXPERIMENT = "pricing-annual-discount"
METRICS = ("annual_conversion", "refund_rate", "revenue_per_user")
"""What the pricing example's check asks for, in the order the metrics source keys it (sorted)."""

CATALOG = load_catalog(ROOT / "examples" / "metrics.yaml")
LAYOUT = Layout(CATALOG, METRICS)
ROLLUP = RollupStatements(LAYOUT)
KEY: dict[str, Value] = {"abr_key": EXPERIMENT, "abr_rollup": f"{EXPERIMENT}:{CATALOG.fingerprint(list(METRICS))}",
                         "abr_chain": ("", "000000000002-golden", "000000000001-golden")}
REFRESH: dict[str, Value] = {"abr_attempt": "000000000003-golden", "abr_refresh": 3,
                             "abr_parent": "000000000002-golden", "abr_lo": "u00001", "abr_hi": "u99999",
                             **{f"abr_w_{source}": 10 for source in ROLLUP.sources},
                             **{f"abr_h_{source}": 20 for source in ROLLUP.sources}}

STATEMENTS: dict[str, Callable[[str], str]] = {
    "statistics": lambda d: render(statistics_template(LAYOUT), d, {"abr_key": EXPERIMENT, "abr_until": 28 * 86400}),
    "marks": lambda d: render(ROLLUP.marks(), d, KEY),
    "highs": lambda d: render(ROLLUP.highs(), d, KEY | REFRESH),
    "stage": lambda d: render(ROLLUP.fold_users(), d, KEY | REFRESH),
    "bounds": lambda d: render(ROLLUP.bounds(), d, KEY | REFRESH),
    "fold_sums": lambda d: render(ROLLUP.fold_sums(), d, KEY | REFRESH),
    "mark": lambda d: render(ROLLUP.mark(ROLLUP.sources), d, KEY | REFRESH),
    "read": lambda d: render(ROLLUP.read(), d, KEY),
}
CASES = [(dialect, name) for dialect in DIALECTS for name in STATEMENTS]


def test_the_layout_has_a_ratio_and_a_covariate() -> None:
    """The golden files cover what they are meant to: a ratio (with its denominator read too) and CUPED."""
    assert LAYOUT.metrics == (*METRICS, "orders")
    assert LAYOUT.denominator(LAYOUT.metrics.index("refund_rate")) == LAYOUT.metrics.index("orders")
    assert [LAYOUT.metrics[i] for scan in LAYOUT.covariate_scans for i in scan.members] == ["revenue_per_user"]
    assert LAYOUT.incremental


@pytest.mark.parametrize(("dialect", "name"), CASES, ids=[f"{d}-{n}" for d, n in CASES])
def test_statement_equals_its_golden_file_and_parses_back(dialect: str, name: str) -> None:
    text = STATEMENTS[name](dialect) + "\n"
    golden = GOLDEN / dialect / f"{name}.sql"
    if UPDATE:
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(text, encoding="utf-8")
    assert golden.is_file(), f"no {golden.relative_to(ROOT)}: run with ABROLLOUT_UPDATE_GOLDEN=1 to write it"
    assert text == golden.read_text(encoding="utf-8"), (
        f"{dialect} {name} changed; if that is meant, rerun with ABROLLOUT_UPDATE_GOLDEN=1 and review the diff")
    parsed = [tree for tree in sqlglot.parse(text, read=sqlglot_dialect(dialect)) if tree is not None]
    assert len(parsed) == 1


def test_every_golden_file_is_a_rendered_statement() -> None:
    """No stale file is left behind when a statement or a dialect goes away."""
    expected = {Path(dialect, f"{name}.sql") for dialect, name in CASES}
    assert {path.relative_to(GOLDEN) for path in GOLDEN.rglob("*.sql")} == expected
