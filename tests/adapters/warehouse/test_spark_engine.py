"""Apache Spark (local mode) runs the generator's SQL end to end, exactly equal to DuckDB; `connect` hands a
cluster's or a Spark Connect server's address to the session builder as such."""

from __future__ import annotations

import importlib.util
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

if importlib.util.find_spec("pyspark") is None or shutil.which("java") is None:
    pytest.skip("needs pyspark and Java 17+: pip install 'pyspark[sql]>=4', install OpenJDK 17, then rerun",
                allow_module_level=True)

from adapters.warehouse.spark_engine import LOCAL, SparkEngine, builder, session_options
from tests.adapters.warehouse.conformance import (
    METRICS,
    assert_dead_refresh_never_counts,
    assert_exact_over_loads,
    assert_largest_values_exact,
    assert_same_decisions,
    naive_square_sum,
)
from tests.adapters.warehouse.scenarios import golden_specs, scenario


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SparkEngine]:
    """One local Spark for the module (it takes seconds to start), stopped at the end."""
    engine = SparkEngine.connect("local[2]", tmp_path_factory.mktemp("spark-warehouse"), app_name="abrollout-tests")
    engine.create_embedded_tables()
    yield engine
    engine.close()


def test_every_window_over_loads_with_late_rows_is_exactly_duckdbs(engine: SparkEngine, tmp_path: Path) -> None:
    """Two rounds (the first two loads, then the late one): each Spark statement takes seconds here."""
    assert_exact_over_loads(engine, tmp_path / "m.duckdb", seed=1, windows=(2400, 4799), metric_lists=[METRICS],
                            rounds=(2, 1))


@pytest.mark.parametrize("path", golden_specs(), ids=lambda path: path.stem)
async def test_the_golden_scenarios_reach_the_same_verdicts_at_every_daily_look(engine: SparkEngine, tmp_path: Path,
                                                                                path: Path) -> None:
    """The first day at the spec's traffic (the ramp's second step, SRM, CUPED, three arms): a Spark statement takes
    a second or more here whatever its size, and a look is about ten of them."""
    looks = await assert_same_decisions(engine, tmp_path / "m.duckdb", scenario(path, days=1), reference=True)
    assert len(looks) == 1 and not looks[0].verdict.no_data


def test_the_largest_values_are_exact(engine: SparkEngine, tmp_path: Path) -> None:
    assert_largest_values_exact(engine, tmp_path / "m.duckdb")


def test_a_plain_bigint_sum_of_those_squares_raises(engine: SparkEngine) -> None:
    """ANSI mode: where ClickHouse wraps, Spark refuses (so would DECIMAL(38, 0) past 38 digits)."""
    from pyspark.errors import ArithmeticException

    with pytest.raises(ArithmeticException):
        engine.query(naive_square_sum(engine, "naive"))


def test_a_refresh_that_dies_half_way_is_never_counted(engine: SparkEngine, tmp_path: Path) -> None:
    assert_dead_refresh_never_counts(engine, tmp_path / "m.duckdb", "marks")


@pytest.mark.parametrize(("master", "expected"), [
    ("local[3]", {"spark.master": "local[3]", **LOCAL, "spark.sql.shuffle.partitions": "3"}),
    ("local", {"spark.master": "local", **LOCAL, "spark.sql.shuffle.partitions": "1"}),
    ("spark://10.0.0.5:7077", {"spark.master": "spark://10.0.0.5:7077"}),
    ("sc://spark.example:15002", {"spark.remote": "sc://spark.example:15002"}),
])
def test_connect_gives_the_builder_a_master_or_a_remote(master: str, expected: dict[str, str]) -> None:
    """Only local mode runs here: for a cluster and Spark Connect, what reaches the builder is the address as
    given, and none of local mode's loopback settings."""
    warehouse = Path("/data/warehouse")
    options = expected | {"spark.app.name": "exp-app", "spark.sql.warehouse.dir": str(warehouse)}
    assert session_options(master, warehouse, "exp-app") == options
    assert builder(master, warehouse, "exp-app")._options == options
