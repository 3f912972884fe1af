"""ClickHouse's engine through chDB runs the generator's SQL end to end, exactly equal to DuckDB."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from adapters.warehouse.chdb_engine import ChdbEngine
from adapters.warehouse.metrics import WarehouseMetrics
from tests.adapters.test_local_metrics import ARMS, random_data
from tests.adapters.warehouse.conformance import (
    METRICS,
    assert_dead_refresh_never_counts,
    assert_exact_over_loads,
    assert_largest_values_exact,
    assert_same_decisions,
    exact_sums,
    largest_values,
    naive_square_sum,
)
from tests.adapters.warehouse.scenarios import golden_specs, scenario


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[ChdbEngine]:
    engine = ChdbEngine(tmp_path / "chdb")
    engine.create_embedded_tables()
    yield engine
    engine.close()


def test_every_window_over_loads_with_late_rows_is_exactly_duckdbs(engine: ChdbEngine, tmp_path: Path) -> None:
    assert_exact_over_loads(engine, tmp_path / "m.duckdb", seed=1, windows=(0, 2400, 4799, 7200),
                            metric_lists=[METRICS, ["clicks"], []])


@pytest.mark.parametrize("path", golden_specs(), ids=lambda path: path.stem)
async def test_the_golden_scenarios_reach_the_same_verdicts_at_every_daily_look(engine: ChdbEngine, tmp_path: Path,
                                                                                path: Path) -> None:
    """The first three days at the spec's traffic (a refresh costs ClickHouse about a second of query analysis, so
    two weeks of looks in six scenarios would take minutes)."""
    looks = await assert_same_decisions(engine, tmp_path / "m.duckdb", scenario(path, days=3), reference=True)
    assert len(looks) == 3 and not any(look.verdict.no_data for look in looks)


def test_the_largest_values_are_exact(engine: ChdbEngine, tmp_path: Path) -> None:
    assert_largest_values_exact(engine, tmp_path / "m.duckdb")


def test_a_plain_int64_sum_of_those_squares_would_wrap_silently(engine: ChdbEngine) -> None:
    """Why the sums are decimals: ClickHouse adds Int64 modulo 2**64, without an error."""
    [row] = engine.query(naive_square_sum(engine, "naive"))
    assert int(row["s"]) != sum(sums["sum_sq"] for sums in exact_sums(largest_values()).values())


@pytest.mark.parametrize("dies_at", ["sums", "marks"])
def test_a_refresh_that_dies_half_way_is_never_counted(engine: ChdbEngine, tmp_path: Path, dies_at: str) -> None:
    assert_dead_refresh_never_counts(engine, tmp_path / "m.duckdb", dies_at)


def test_the_data_outlives_the_session_in_its_directory(tmp_path: Path) -> None:
    first = ChdbEngine(tmp_path / "chdb")
    try:
        first.create_embedded_tables()
        first.load_batches("kept", [(random_data().rows(), 1)])
        before = WarehouseMetrics(first).aggregate("kept", ["revenue"], 7200, ARMS)
    finally:
        first.close()
    again = ChdbEngine(tmp_path / "chdb")  # chDB serves one path per process: the first is closed
    try:
        assert WarehouseMetrics(again).aggregate("kept", ["revenue"], 7200, ARMS).metrics == before.metrics
    finally:
        again.close()
