"""PostgreSQL as the metrics warehouse and the registry, against a real server: the statistics equal the embedded
store's for the same rows, simulated hours are written exactly once, the recorded SQL reruns in psql to the same
numbers, configured names work and bad ones are refused, registration is race-free across processes, and start-up
errors name what is missing but never the password."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import fields
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import Any

import psycopg
import pytest

from abrollout.contracts.verdicts import MetricStats
from adapters import postgres_metrics
from adapters.local_metrics import LocalMetrics
from adapters.postgres_metrics import PostgresMetrics, WarehouseTables
from adapters.postgres_registry import PostgresRegistry
from adapters.protocols import AdapterConfigError, ConcurrencyRefused
from adapters.running_aggregate import VALUE_SCALE
from adapters.simulator import Rows, simulate_hour
from devserver import free_port
from tests.adapters.test_local_metrics import ARMS as STORE_ARMS
from tests.adapters.test_local_metrics import EXP as STORE_EXP
from tests.adapters.test_local_metrics import random_data
from tests.adapters.test_local_stores import _registration
from tests.adapters.test_simulator import EXP, FakeFlags, flag_state, registered, simulation
from tests.support.races import race
from tests.support.servers.postgres import Postgres

PASSWORD = "s3cret-Pa55word"
DEFAULT = WarehouseTables()
METRICS = ["revenue", "clicks", "absent"]
RENAMED = WarehouseTables(
    exposures="wh.assignments", exposures_exp_key="experiment", exposures_user_id="UserId", exposures_arm="variant",
    exposures_at_s="ts", metric_events="wh.events", metric_events_user_id="UserId", metric_events_metric="event_name",
    metric_events_value="amount", metric_events_at_s="ts", pre_period="wh.covariates",
    pre_period_user_id="UserId", pre_period_value="x", sim_progress="wh.progress")
READ_ONLY_ROLE = """
CREATE ROLE {role} LOGIN PASSWORD '{password}';
GRANT CONNECT ON DATABASE {database} TO {role};
GRANT USAGE ON SCHEMA public TO {role};
GRANT SELECT ON exposures, metric_events, pre_period TO {role};
ALTER ROLE {role} SET default_transaction_read_only = on;
"""
WORKER_ROLE = """
CREATE ROLE {role} LOGIN PASSWORD '{password}';
GRANT CONNECT ON DATABASE {database} TO {role};
GRANT USAGE ON SCHEMA public TO {role};
GRANT SELECT ON exposures, metric_events, pre_period TO {role};
GRANT SELECT, INSERT, UPDATE ON abrollout_experiments, abrollout_runs TO {role};
"""


@asynccontextmanager
async def opened(adapter: Any) -> AsyncIterator[Any]:
    await adapter.open()
    try:
        yield adapter
    finally:
        await adapter.close()


@pytest.fixture
async def warehouse(postgres: Postgres, database: str) -> AsyncIterator[PostgresMetrics]:
    async with opened(PostgresMetrics(postgres.dsn(database))) as metrics:
        await metrics.ensure_schema()
        yield metrics


def with_password(postgres: Postgres, database: str, user: str = "postgres") -> str:
    """A DSN carrying a password (the test server trusts loopback, so any password connects)."""
    return f"postgresql://{user}:{PASSWORD}@127.0.0.1:{postgres.port}/{database}"


def table_rows(dsn: str, tables: WarehouseTables = DEFAULT) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of the data tables, sorted: equal dumps mean no row was written twice or left out."""
    with psycopg.connect(dsn) as conn:
        return {table: sorted(conn.execute(f"SELECT * FROM {tables.q(table)}").fetchall())
                for table in ("exposures", "metric_events", "pre_period")}


def expected_rows(exp_key: str, batches: list[Rows]) -> dict[str, list[tuple[Any, ...]]]:
    """The rows the batches should have written, in `table_rows` form."""
    def rows(table: str) -> list[tuple[Any, ...]]:
        out: list[tuple[Any, ...]] = []
        for batch in batches:
            part = getattr(batch, table)
            columns = [getattr(part, column.name).tolist() for column in fields(part)]
            out += [(exp_key, *row) for row in zip(*columns, strict=True)]
        return sorted(out)

    return {table: rows(table) for table in ("exposures", "metric_events", "pre_period")}


# --- the statistics are the embedded store's -----------------------------------------------------------------


async def test_statistics_equal_the_embedded_store_for_the_same_rows(warehouse: PostgresMetrics,
                                                                   tmp_path: Path) -> None:
    """Events without exposure, an arm without users, a complete and a partial covariate, a metric without rows."""
    data = random_data()
    local = LocalMetrics(tmp_path / "m.duckdb")
    local.write_hour(STORE_EXP, 0, data.rows())
    assert await asyncio.to_thread(warehouse.write_hour, STORE_EXP, 0, data.rows()) == 1
    for until in (0, 1800, 3600, 7200):
        ours = await warehouse.aggregate(STORE_EXP, METRICS, until, STORE_ARMS)
        theirs = local.aggregate(STORE_EXP, METRICS, until, STORE_ARMS)
        assert ours.assignments == theirs.assignments
        assert ours.metrics == theirs.metrics
        assert ours.freshest_event_seconds == theirs.freshest_event_seconds
    assert ours.metrics["revenue"]["control"].has_covariate
    assert not ours.metrics["clicks"]["control"].has_covariate
    assert ours.assignments["t2"] == 0 and ours.metrics["absent"]["t1"] == MetricStats(n=ours.assignments["t1"],
                                                                                       sum=0.0, sum_sq=0.0)
    local.close()


async def test_snapshot_ids_are_stable_and_follow_the_data(warehouse: PostgresMetrics) -> None:
    await asyncio.to_thread(warehouse.write_hour, STORE_EXP, 0, random_data().rows())
    first = (await warehouse.aggregate(STORE_EXP, METRICS, 7200, STORE_ARMS)).snapshot()
    again = (await warehouse.aggregate(STORE_EXP, METRICS, 7200, STORE_ARMS)).snapshot()
    assert first.snapshot_id == again.snapshot_id and first.snapshot_id.startswith("snap-")
    await asyncio.to_thread(warehouse.write_hour, STORE_EXP, 1, simulate_hour(simulation(), flag_state(), 1))
    assert (await warehouse.aggregate(STORE_EXP, METRICS, 7200, STORE_ARMS)).snapshot().snapshot_id != first.snapshot_id


async def test_simulated_traffic_gives_the_embedded_store_statistics(postgres: Postgres, database: str,
                                                                    tmp_path: Path) -> None:
    """The golden-scenario path: the simulator behind each store, the same flag, a ramp step between checks."""
    sim = simulation(users_per_hour=800, effects={"treatment": {"conv": {"kind": "relative", "value": 10}}},
                     degradations=[{"metric": "latency", "arm": "treatment", "from_hour": 6,
                                    "shift": {"kind": "absolute", "value": 0.05}}])
    flags = FakeFlags(flag_state(rollout=20))
    local = LocalMetrics(tmp_path / "m.duckdb", flags)
    async with opened(PostgresMetrics(postgres.dsn(database), flags=flags, simulate=True)) as warehouse:
        await warehouse.ensure_schema()
        await warehouse.check()
        for hours in (3, 7.5, 12):
            at = int(hours * 3600)
            ours = await warehouse.snapshot(registered(sim), "run-1", at, list(sim.metrics))
            theirs = await local.snapshot(registered(sim), "run-1", at, list(sim.metrics))
            assert (ours.assignments, ours.metrics, ours.freshest_event_seconds) == (
                theirs.assignments, theirs.metrics, theirs.freshest_event_seconds)
            flags.state = flag_state(rollout=100)
        assert warehouse.hours_done(EXP) == 12
        assert sum(ours.assignments.values()) > 5000 and ours.metrics["revenue"]["control"].has_covariate
    local.close()


# --- exactly once ------------------------------------------------------------------------------------------


async def test_an_hour_is_written_once(warehouse: PostgresMetrics, postgres: Postgres, database: str) -> None:
    sim, flag = simulation(), flag_state()
    hour0, hour1 = simulate_hour(sim, flag, 0), simulate_hour(sim, flag, 1)
    assert await asyncio.to_thread(warehouse.write_hour, EXP, 0, hour0) == 1
    assert await asyncio.to_thread(warehouse.write_hour, EXP, 0, hour0) == 1, "a retry writes nothing"
    assert await asyncio.to_thread(warehouse.write_hour, EXP, 5, hour1) == 1, "an hour out of turn writes nothing"
    assert warehouse.hours_done(EXP) == 1 and warehouse.hours_done("other") == 0
    assert table_rows(postgres.dsn(database)) == expected_rows(EXP, [hour0])


async def test_a_crash_inside_an_hour_leaves_nothing_of_it(warehouse: PostgresMetrics, postgres: Postgres,
                                                           database: str, monkeypatch: pytest.MonkeyPatch) -> None:
    sim, flag = simulation(), flag_state()
    hours = [simulate_hour(sim, flag, hour) for hour in range(2)]
    real_copy = postgres_metrics._copy

    def copy_then_die(*args: Any) -> None:
        real_copy(*args)  # the hour's rows are in the transaction...
        raise RuntimeError("worker died")  # ...and the worker dies before the progress update

    warehouse.write_hour(EXP, 0, hours[0])
    monkeypatch.setattr(postgres_metrics, "_copy", copy_then_die)
    with pytest.raises(RuntimeError, match="worker died"):
        warehouse.write_hour(EXP, 1, hours[1])
    assert warehouse.hours_done(EXP) == 1
    assert table_rows(postgres.dsn(database)) == expected_rows(EXP, hours[:1])
    monkeypatch.undo()
    assert warehouse.write_hour(EXP, 1, hours[1]) == 2  # the retry
    assert table_rows(postgres.dsn(database)) == expected_rows(EXP, hours)


async def test_racing_workers_write_each_hour_once(postgres: Postgres, database: str) -> None:
    """Two workers (two adapters, each with its own pool), two threads each, all advancing the same experiment."""
    sim, flag = simulation(), flag_state()
    hours = [simulate_hour(sim, flag, hour) for hour in range(8)]

    def advance(store: PostgresMetrics) -> int:
        done = store.hours_done(EXP)
        while done < len(hours):
            done = store.write_hour(EXP, done, hours[done])
        return done

    async with opened(PostgresMetrics(postgres.dsn(database))) as one, \
            opened(PostgresMetrics(postgres.dsn(database))) as two:
        await one.ensure_schema()
        with ThreadPoolExecutor(4) as pool:
            futures = [pool.submit(advance, store) for store in (one, two, one, two)]
            assert [future.result(timeout=120) for future in futures] == [8] * 4
    assert table_rows(postgres.dsn(database)) == expected_rows(EXP, hours)


# --- the recorded SQL ----------------------------------------------------------------------------------------


async def test_the_recorded_query_reruns_in_psql_to_the_same_numbers(warehouse: PostgresMetrics,
                                                                     postgres: Postgres, database: str) -> None:
    await asyncio.to_thread(warehouse.write_hour, STORE_EXP, 0, random_data().rows())
    result = await warehouse.aggregate(STORE_EXP, METRICS, 3600, STORE_ARMS)
    (query,) = result.queries
    names = ["arm", "n", "freshest_event_seconds"] + [
        f"{column}_{i}" for i in range(len(METRICS))
        for column in ("sum", "sum_sq", "pre_n", "pre_sum", "pre_sum_sq", "pre_sum_product")]
    rows = [dict(zip(names, line.split("|"), strict=True)) for line in postgres.psql(query, database).splitlines()]

    def units(text: str, power: int) -> float:
        scale: int = VALUE_SCALE**power  # int / int, as the adapters divide
        return int(text or 0) / scale

    exposed = [row for row in rows if row["arm"]]
    assert {row["arm"]: int(row["n"]) for row in exposed} == {a: n for a, n in result.assignments.items() if n}
    assert max(int(row["freshest_event_seconds"]) for row in rows) == result.freshest_event_seconds
    for row in exposed:
        for i, metric in enumerate(METRICS):
            stats = result.metrics[metric][row["arm"]]
            assert (units(row[f"sum_{i}"], 1), units(row[f"sum_sq_{i}"], 2)) == (stats.sum, stats.sum_sq)
            if stats.has_covariate:
                assert (units(row[f"pre_sum_{i}"], 1), units(row[f"pre_sum_sq_{i}"], 2),
                        units(row[f"pre_sum_product_{i}"], 2)) == (stats.pre_sum, stats.pre_sum_sq,
                                                                   stats.pre_sum_product)


async def test_keys_and_metric_names_are_literals_not_sql(warehouse: PostgresMetrics, postgres: Postgres,
                                                          database: str) -> None:
    await asyncio.to_thread(warehouse.write_hour, STORE_EXP, 0, random_data().rows())
    hostile = ["it's", "back\\slash", "x') OR 1=1 --", "50%"]
    result = await warehouse.aggregate("x' OR '1'='1", hostile, 7200, STORE_ARMS)
    assert result.assignments == dict.fromkeys(STORE_ARMS, 0)
    assert postgres.psql(result.queries[0], database) == ""
    unexposed = await warehouse.aggregate(STORE_EXP, hostile, 7200, STORE_ARMS)
    assert all(stats.sum == 0 for arms in unexposed.metrics.values() for stats in arms.values())
    assert sum(unexposed.assignments.values()) > 0


# --- configured names ----------------------------------------------------------------------------------------


async def test_configured_table_and_column_names_work(warehouse: PostgresMetrics, postgres: Postgres,
                                                      database: str) -> None:
    async with opened(PostgresMetrics(postgres.dsn(database), RENAMED)) as renamed:
        await renamed.ensure_schema()
        await renamed.check()
        for store in (warehouse, renamed):
            await asyncio.to_thread(store.write_hour, STORE_EXP, 0, random_data().rows())
        ours = await renamed.aggregate(STORE_EXP, METRICS, 3600, STORE_ARMS)
        default = await warehouse.aggregate(STORE_EXP, METRICS, 3600, STORE_ARMS)
    assert (ours.assignments, ours.metrics) == (default.assignments, default.metrics)
    assert '"wh"."assignments"' in ours.queries[0] and '"UserId"' in ours.queries[0]
    assert table_rows(postgres.dsn(database), RENAMED) == table_rows(postgres.dsn(database))


@pytest.mark.parametrize(("key", "value"), [
    ("exposures", "exposures; DROP TABLE users"),
    ("metric_events", "1events"),
    ("pre_period", "a.b.c"),
    ("sim_progress", ""),
    ("exposures_arm", "wh.arm"),
    ("exposures_user_id", '"UserId"'),
    ("metric_events_value", "value)"),
])
def test_bad_names_are_refused_naming_the_key(key: str, value: str) -> None:
    with pytest.raises(ValueError, match=rf"\[postgres.tables\] {key} = "):
        WarehouseTables(**{key: value})


# --- start-up checks -----------------------------------------------------------------------------------------


async def test_check_names_the_missing_table_and_column_but_never_the_password(postgres: Postgres,
                                                                               database: str) -> None:
    dsn = with_password(postgres, database)
    async with opened(PostgresMetrics(dsn)) as missing:
        with pytest.raises(AdapterConfigError) as tables:
            await missing.check()
        await missing.ensure_schema()
    assert "table exposures ([postgres.tables] exposures) does not exist" in str(tables.value)
    assert "metric_events" in str(tables.value) and "pre_period" in str(tables.value)
    async with opened(PostgresMetrics(dsn, WarehouseTables(metric_events_value="amount"))) as renamed:
        with pytest.raises(AdapterConfigError) as column:
            await renamed.check()
    assert ("table metric_events has no column amount ([postgres.tables] metric_events_value); its columns are "
            "exp_key, user_id, metric, value, at_s") in str(column.value)
    unreachable = f"postgresql://postgres:{PASSWORD}@127.0.0.1:{free_port()}/{database}"
    with pytest.raises(AdapterConfigError, match=r"cannot be reached") as down:
        await PostgresMetrics(unreachable, timeout=5).check()
    with pytest.raises(AdapterConfigError, match=r"cannot be reached") as no_database:
        await PostgresMetrics(with_password(postgres, "no_such_database")).check()
    with pytest.raises(AdapterConfigError) as registry:
        await PostgresRegistry(dsn).check()
    assert "table abrollout_experiments (created by ensure_schema" in str(registry.value)
    for error in (tables, column, down, no_database, registry):
        assert PASSWORD not in str(error.value) and "as postgres" in str(error.value)


async def test_a_dsn_that_does_not_parse_is_refused_without_quoting_it() -> None:
    with pytest.raises(AdapterConfigError) as error:
        PostgresMetrics(f"host=127.0.0.1 password={PASSWORD} port")
    assert PASSWORD not in str(error.value)


async def test_the_read_only_role_recipe_reads_and_cannot_write(warehouse: PostgresMetrics, postgres: Postgres,
                                                                database: str) -> None:
    role = "abrollout_reader"
    postgres.psql(READ_ONLY_ROLE.format(role=role, password=PASSWORD, database=database), database)
    await asyncio.to_thread(warehouse.write_hour, STORE_EXP, 0, random_data().rows())
    dsn = with_password(postgres, database, role)
    async with opened(PostgresMetrics(dsn)) as reader:
        await reader.check()
        assert (await reader.aggregate(STORE_EXP, METRICS, 3600, STORE_ARMS)).assignments == (
            await warehouse.aggregate(STORE_EXP, METRICS, 3600, STORE_ARMS)).assignments
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            reader.write_hour(STORE_EXP, 1, random_data().rows())
    with pytest.raises(AdapterConfigError, match=rf"{role} may not INSERT table exposures: GRANT INSERT") as error:
        await PostgresMetrics(dsn, flags=FakeFlags(None), simulate=True).check()
    assert "may not SELECT, INSERT, UPDATE table sim_progress" in str(error.value)
    assert "transactions are read-only (default_transaction_read_only)" in str(error.value)


# --- the registry --------------------------------------------------------------------------------------------


@pytest.fixture
async def registry(postgres: Postgres, database: str) -> AsyncIterator[PostgresRegistry]:
    async with opened(PostgresRegistry(postgres.dsn(database))) as adapter:
        await adapter.ensure_schema()
        await adapter.check()
        yield adapter


async def test_registry_is_idempotent_and_counts_running_experiments(registry: PostgresRegistry) -> None:
    args = _registration("exp-one")
    exp_id = await registry.register(args, "k1")
    assert await registry.register(args, "k1") == exp_id
    assert (await registry.get(exp_id)).args == args
    with pytest.raises(LookupError):
        await registry.get("EXP-NONE")
    with pytest.raises(ConcurrencyRefused, match=r"exp_policy.v5#concurrency.1"):
        await registry.register(_registration("exp-two"), "k2")
    runs = await asyncio.gather(*(registry.start_run(exp_id, "run", "all_users", "k1-run") for _ in range(4)))
    assert len(set(runs)) == 1
    stops = await asyncio.gather(*(registry.stop_run(runs[0], "done", f"k1-stop-{i}") for i in range(4)))
    assert len(set(stops)) == 1, "a run stops once, even when four stops race"
    assert await registry.register(_registration("exp-two"), "k2")
    with pytest.raises(ConcurrencyRefused, match="already registered"):
        await registry.register(args, "k1")


def _register_in_process(dsn: str, name: str, barrier: Barrier, results: Queue[str]) -> None:
    async def register() -> str:
        async with opened(PostgresRegistry(dsn)) as registry:
            barrier.wait(timeout=60)
            try:
                return str(await registry.register(_registration(name), f"{name}:register"))
            except ConcurrencyRefused:
                return "refused"

    results.put(asyncio.run(register()))


def test_four_workers_registering_at_once_cannot_both_take_the_last_slot(registry: PostgresRegistry,
                                                                          postgres: Postgres, database: str) -> None:
    outcomes = race(_register_in_process, postgres.dsn(database))
    assert sorted(outcome == "refused" for outcome in outcomes) == [False, True, True, True]
    assert postgres.psql("SELECT count(*) FROM abrollout_experiments WHERE status = 'running'", database) == "1\n"


async def test_the_worker_role_recipe_runs_the_registry(registry: PostgresRegistry, warehouse: PostgresMetrics,
                                                        postgres: Postgres, database: str) -> None:
    role = "abrollout_worker"
    postgres.psql(WORKER_ROLE.format(role=role, password=PASSWORD, database=database), database)
    dsn = with_password(postgres, database, role)
    async with opened(PostgresRegistry(dsn)) as worker, opened(PostgresMetrics(dsn)) as metrics:
        await worker.check()
        await metrics.check()
        exp_id = await worker.register(_registration("exp-worker"), "kw")
        await worker.stop_run(await worker.start_run(exp_id, "run", "all", "kw-run"), "done", "kw-stop")

