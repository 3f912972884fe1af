"""PostgreSQL as the metrics warehouse, against a real server: the statistics equal the embedded store's and the
Python definition's to the micro-unit, from the full statement and from the rollup (batches out of time order,
late rows, several experiments, racing workers, a refresh dying half-way, values whose sums of squares pass
2**64); simulated hours are written exactly once; the recorded SQL reruns in psql to the same numbers; configured
names (schema-qualified, renamed, no loaded_at) work and bad ones are refused; start-up errors name what is
missing, the rollup's privileges included, but never the password."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, contextmanager
from dataclasses import fields
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import psycopg
import pytest
from psycopg.rows import dict_row

from abrollout.contracts.verdicts import MetricStats
from abrollout.warehouse.layout import VALUE_SCALE, Layout
from abrollout.warehouse.results import from_statement
from abrollout.warehouse.rollup import tables as rollup_tables
from adapters import postgres_metrics
from adapters.local_metrics import LocalMetrics
from adapters.postgres_metrics import PostgresMetrics, WarehouseTables
from adapters.protocols import AdapterConfigError
from adapters.simulator import Rows, simulate_hour
from adapters.warehouse import metrics as metrics_module
from devserver import free_port
from tests.adapters.test_local_metrics import ARMS, EXP, Data, awkward_data, exact_reference, random_data
from tests.adapters.test_simulator import EXP as SIM_EXP
from tests.adapters.test_simulator import FakeFlags, flag_state, registered, simulation
from tests.support.servers.postgres import Postgres

PASSWORD = "s3cret-Pa55word"
DEFAULT = WarehouseTables()
METRICS = ["revenue", "clicks", "it's", "absent"]
OTHER = "another-exp"
QUOTED = "it's a \\ key"
RENAMED = WarehouseTables(
    exposures="wh.assignments", exposures_exp_key="experiment", exposures_user_id="UserId", exposures_arm="variant",
    exposures_at_s="ts", exposures_loaded_at="Batch", metric_events="wh.events", metric_events_user_id="UserId",
    metric_events_metric="event_name", metric_events_value="amount", metric_events_at_s="ts",
    metric_events_loaded_at="Batch", pre_period="wh.covariates", pre_period_user_id="UserId", pre_period_value="x",
    pre_period_loaded_at="Batch", sim_progress="wh.progress")
NO_LOADED_AT = WarehouseTables(exposures_loaded_at="", metric_events_loaded_at="", pre_period_loaded_at="")
READ_ONLY_ROLE = """
CREATE ROLE {role} LOGIN PASSWORD '{password}';
GRANT CONNECT ON DATABASE {database} TO {role};
GRANT USAGE ON SCHEMA public TO {role};
GRANT SELECT ON exposures, metric_events, pre_period TO {role};
ALTER ROLE {role} SET default_transaction_read_only = on;
"""
COLUMNS = {"exposures": ("user_id", "arm", "at_s"), "metric_events": ("user_id", "metric", "value", "at_s"),
           "pre_period": ("user_id", "metric", "value")}


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


@pytest.fixture
async def stores(postgres: Postgres, database: str) -> AsyncIterator[tuple[PostgresMetrics, PostgresMetrics]]:
    """The adapter keeping the rollup, and one that always runs the full statement, on the same tables. The
    unique covariate index is dropped: a warehouse may hold a duplicated covariate, and both must sum it."""
    dsn = postgres.dsn(database)
    async with opened(PostgresMetrics(dsn, rollup=True)) as folded, opened(PostgresMetrics(dsn)) as queried:
        await folded.ensure_schema()
        await folded.check()
        drop_unique_covariates(dsn)
        yield folded, queried


def drop_unique_covariates(dsn: str, tables: WarehouseTables = DEFAULT) -> None:
    schema = tables.pre_period.rpartition(".")[0] or "public"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'DROP INDEX "{schema}".{tables.pre_period.split(".")[-1]}_exp_key_metric_user_id')


def with_password(postgres: Postgres, database: str, user: str = "postgres") -> str:
    """A DSN carrying a password (the test server trusts loopback, so any password connects)."""
    return f"postgresql://{user}:{PASSWORD}@127.0.0.1:{postgres.port}/{database}"


def load(dsn: str, exp_key: str, data: Data, loaded_at: int, tables: WarehouseTables = DEFAULT) -> None:
    """A loader that is not abrollout: each table's rows by COPY, under one loaded_at, in one transaction."""
    t = tables
    with psycopg.connect(dsn) as conn, conn.cursor() as cur:
        for table, rows in (("exposures", data.exposures), ("metric_events", data.events), ("pre_period", data.pre)):
            names = ", ".join(t.q(f"{table}_{column}") for column in ("exp_key", *COLUMNS[table], "loaded_at"))
            with cur.copy(f"COPY {t.q(table)} ({names}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row((exp_key, *row, loaded_at))


def split(data: Data, parts: int, seed: int) -> list[Data]:
    """The rows dealt at random into `parts` batches: each batch mixes times, so later batches bring late rows,
    exposures after a user's events, and second exposures that move a user to an arm first in name order."""
    rng = np.random.default_rng(seed)

    def deal(table: list[Any]) -> list[list[Any]]:
        which = rng.integers(0, parts, len(table))
        return [[row for row, part in zip(table, which, strict=True) if part == p] for p in range(parts)]

    return [Data(*batch) for batch in zip(deal(data.exposures), deal(data.events), deal(data.pre), strict=True)]


def joined(batches: list[Data]) -> Data:
    """Batches as one dataset (what the tables hold once they are all loaded)."""
    return Data([row for b in batches for row in b.exposures], [row for b in batches for row in b.events],
                [row for b in batches for row in b.pre])


def latest(data: Data) -> int:
    return max((at_s for *_, at_s in data.exposures + data.events), default=0)


def answers_from_the_rollup(store: PostgresMetrics, exp_key: str, names: list[str], until: int) -> bool:
    """Whether the rollup, refreshed, holds this window (else the check runs the full statement)."""
    _, folded = store.warehouse.refresh(exp_key, names)
    return folded is not None and folded <= until


async def assert_exact(stores: tuple[PostgresMetrics, PostgresMetrics], data: Data, exp_key: str = EXP,
                       local: LocalMetrics | None = None, windows: tuple[int, ...] = (1800,)) -> None:
    """For every metric list: the rollup answers the whole window, equal to the full statement (recorded SQL,
    freshness and snapshot id included), to the Python definition and to the embedded store; earlier `windows`
    (which only the full statement can answer) likewise."""
    folded, queried = stores
    whole = latest(data)
    for names in (METRICS, ["clicks"], []):
        assert answers_from_the_rollup(folded, exp_key, names, whole)
        for until in (whole, *windows):
            ours = await folded.aggregate(exp_key, names, until, ARMS)
            assert ours == await queried.aggregate(exp_key, names, until, ARMS)
            assert ours._replace(queries=()) == exact_reference(data, names, until, ARMS)
            if local is not None:
                assert ours._replace(queries=()) == local.aggregate(exp_key, names, until, ARMS)._replace(queries=())


# --- the statistics are the embedded store's and the definition's ---------------------------------------------


@pytest.mark.parametrize("rollup", [False, True], ids=["statement", "rollup"])
async def test_statistics_equal_the_embedded_store_for_the_same_rows(postgres: Postgres, database: str,
                                                                   tmp_path: Path, rollup: bool) -> None:
    """Events without exposure, an arm without users, a complete and a partial covariate, a metric without rows."""
    data = random_data()
    local = LocalMetrics(tmp_path / "m.duckdb")
    local.write_hour(EXP, 0, data.rows())
    async with opened(PostgresMetrics(postgres.dsn(database), rollup=rollup)) as warehouse:
        await warehouse.ensure_schema()
        assert await asyncio.to_thread(warehouse.write_hour, EXP, 0, data.rows()) == 1
        for until in (0, 1800, 3600, 7200):
            ours = await warehouse.aggregate(EXP, METRICS, until, ARMS)
            theirs = local.aggregate(EXP, METRICS, until, ARMS)
            assert ours._replace(queries=()) == theirs._replace(queries=())
    assert ours.metrics["revenue"]["control"].has_covariate
    assert not ours.metrics["clicks"]["control"].has_covariate
    assert ours.assignments["t2"] == 0 and ours.metrics["absent"]["t1"] == MetricStats(n=ours.assignments["t1"],
                                                                                       sum=0.0, sum_sq=0.0)
    local.close()


@pytest.mark.parametrize(("make", "seed", "exp_key"), [(awkward_data, 1, EXP), (awkward_data, 2, QUOTED),
                                                       (random_data, 3, EXP)])
async def test_batches_in_any_order_fold_to_the_statement_s_statistics(
        stores: tuple[PostgresMetrics, PostgresMetrics], postgres: Postgres, database: str, tmp_path: Path,
        make: Callable[[int], Data], seed: int, exp_key: str) -> None:
    """Late rows, users moving to an arm first in name order, events and covariates before exposures, a
    duplicated covariate, a quoted metric name (and experiment key); another experiment with the same users
    alongside. With `random_data` every exposed user has a revenue covariate, so the CUPED sums are compared too."""
    dsn = postgres.dsn(database)
    local = LocalMetrics(tmp_path / "m.duckdb")
    other = random_data(seed + 1)
    load(dsn, OTHER, other, 1)
    local.write_rows(OTHER, other.rows())
    batches = split(make(seed), 4, seed)
    for count, batch in enumerate(batches, 1):
        load(dsn, exp_key, batch, loaded_at=count)
        local.write_rows(exp_key, batch.rows())
        await assert_exact(stores, joined(batches[:count]), exp_key, local)
    await assert_exact(stores, other, OTHER, local)
    result = await stores[0].aggregate(exp_key, METRICS, latest(joined(batches)), ARMS)
    assert result.metrics["revenue"]["control"].has_covariate == (make is random_data)
    local.close()


async def test_a_refresh_dying_half_way_is_not_counted(stores: tuple[PostgresMetrics, PostgresMetrics],
                                                       postgres: Postgres, database: str,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker dying after staging the batch's users (before the sums), or after the sums (before the mark that
    commits them), leaves rows no read counts; the next refresh folds the batch again."""
    dsn = postgres.dsn(database)
    first, second, third = split(awkward_data(4), 3, 4)
    load(dsn, EXP, first, 1)
    await assert_exact(stores, first)
    real = stores[0].engine.execute
    for loaded_at, (batch, dies_before) in enumerate([(second, "abrollout_rollup_sums"),
                                                      (third, "abrollout_rollup_marks")], 2):
        def dying(statement: str, table: str = dies_before) -> None:
            if statement.startswith(f"INSERT INTO {table}"):
                raise RuntimeError("worker died")
            real(statement)

        load(dsn, EXP, batch, loaded_at)
        monkeypatch.setattr(stores[0].engine, "execute", dying)
        with pytest.raises(RuntimeError, match="worker died"):
            await stores[0].aggregate(EXP, METRICS, 10**6, ARMS)
        monkeypatch.undo()
        with psycopg.connect(dsn) as conn:
            [(attempts, marked)] = conn.execute(
                "SELECT count(DISTINCT attempt), (SELECT count(DISTINCT attempt) FROM abrollout_rollup_marks) "
                "FROM (SELECT attempt FROM abrollout_rollup_users UNION SELECT attempt FROM abrollout_rollup_sums) "
                "AS written").fetchall()
        assert attempts > marked, "the dead refresh's rows are there, and must not count"
        await assert_exact(stores, joined([first, second, third][:loaded_at]))


@contextmanager
def stalled_refresh(store: PostgresMetrics, monkeypatch: pytest.MonkeyPatch, ranked_first: bool) -> Iterator[None]:
    """Inside: `store` (another worker) has read its watermark and stalls before folding; on leaving it folds and
    commits. Its attempt id ranks before every other (`ranked_first`) or after."""
    stalled, resume = threading.Event(), threading.Event()
    real = store.engine.execute

    def stalling(statement: str) -> None:
        if statement.startswith("INSERT INTO abrollout_rollup_sums"):
            stalled.set()
            resume.wait(timeout=60)
        real(statement)

    worker = threading.Thread(target=store.warehouse.aggregate, args=(EXP, METRICS, 10**6, ARMS))
    ranks = {True: uuid.UUID(int=0), False: uuid.UUID(int=2**128 - 1)}
    with monkeypatch.context() as patch:
        patch.setattr(metrics_module, "uuid", SimpleNamespace(
            uuid4=lambda: ranks[(threading.current_thread() is worker) == ranked_first]))
        patch.setattr(store.engine, "execute", stalling)
        worker.start()
        assert stalled.wait(timeout=60)
        try:
            yield
        finally:
            resume.set()
            worker.join(timeout=60)


@pytest.mark.parametrize("stalled_wins", [False, True])
async def test_two_workers_refreshing_at_once_count_the_batch_once(
        stores: tuple[PostgresMetrics, PostgresMetrics], postgres: Postgres, database: str,
        monkeypatch: pytest.MonkeyPatch, stalled_wins: bool) -> None:
    """Two workers (two adapters, so no shared lock) refresh one experiment at once: B reads its watermark and
    stalls, A folds the same new batch and commits, then B folds and commits the same refresh number. Whichever
    attempt ranks first (the least id) counts, and the batch must be counted once."""
    dsn = postgres.dsn(database)
    first, second = split(awkward_data(7), 2, 7)
    load(dsn, EXP, first, 1)
    await stores[0].aggregate(EXP, METRICS, 10**6, ARMS)
    load(dsn, EXP, second, 2)
    async with opened(PostgresMetrics(dsn, rollup=True)) as b:
        with stalled_refresh(b, monkeypatch, ranked_first=stalled_wins):
            stores[0].warehouse.aggregate(EXP, METRICS, 10**6, ARMS)
    await assert_exact(stores, joined([first, second]))


async def test_a_refresh_built_on_a_racing_attempt_stays_exact(
        stores: tuple[PostgresMetrics, PostgresMetrics], postgres: Postgres, database: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """B reads its watermark and stalls; more rows arrive and A refreshes twice (the second refresh building on
    its first); then B commits the first of those refresh numbers, ranked first, having folded fewer rows."""
    dsn = postgres.dsn(database)
    batches = split(awkward_data(8), 4, 8)
    load(dsn, EXP, batches[0], 1)
    await stores[0].aggregate(EXP, METRICS, 10**6, ARMS)
    load(dsn, EXP, batches[1], 2)
    async with opened(PostgresMetrics(dsn, rollup=True)) as b:
        with stalled_refresh(b, monkeypatch, ranked_first=True):
            for loaded_at in (3, 4):
                load(dsn, EXP, batches[loaded_at - 1], loaded_at)
                stores[0].warehouse.aggregate(EXP, METRICS, 10**6, ARMS)
    await assert_exact(stores, joined(batches))


async def test_workers_creating_the_rollup_at_once_all_succeed(postgres: Postgres, database: str) -> None:
    """The rollup's tables are created under the schema lock: workers starting together do not collide."""
    dsn = postgres.dsn(database)
    async with opened(PostgresMetrics(dsn, rollup=True)) as one, opened(PostgresMetrics(dsn, rollup=True)) as two:
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda store: store.engine.create_rollup(rollup_tables("abrollout_rollup_")),
                          (one, two, one, two), timeout=60))
    assert postgres.psql("SELECT count(*) FROM pg_indexes WHERE indexname LIKE 'abrollout_rollup_%_by_%'",
                         database) == "4\n"


async def test_the_largest_values_sum_exactly(stores: tuple[PostgresMetrics, PostgresMetrics], postgres: Postgres,
                                              database: str) -> None:
    """Per-user totals up to 10**8 units (10**14 micro-units): the sums of squares and products pass 2**64 many
    times over, and the full statement and the rollup give Python's integers exactly."""
    rng = np.random.default_rng(11)
    users = [f"u{i}" for i in range(400)]
    exposures = [(user, str(rng.choice(ARMS[:2])), int(rng.integers(0, 3600))) for user in users]
    events = [(user, "revenue", int(rng.integers(0, 5 * 10**10)) / 1000, int(rng.integers(0, 3600)))
              for user in users for _ in range(2)]
    pre = [(user, "revenue", int(rng.integers(-10**11, 10**11)) / 1000) for user in users]
    data = Data(exposures, events, pre)
    load(postgres.dsn(database), EXP, data, 1)
    await assert_exact(stores, data, windows=())
    folded, queried = stores
    layout = Layout(queried.warehouse.catalog, ("revenue",))
    statement = from_statement(queried.engine.query(queried.warehouse.statement(EXP, ["revenue"], 3600)), layout)
    rollup, _ = folded.warehouse.refresh(EXP, ["revenue"])
    totals = {user: sum(round(v * VALUE_SCALE) for u, _, v, _ in events if u == user) for user in users}
    covariates = {user: round(v * VALUE_SCALE) for user, _, v in pre}
    for arm in ARMS[:2]:
        ys = [(totals[user], covariates[user]) for user, a, _ in exposures if a == arm]
        expected = {"sum": sum(y for y, _ in ys), "sum_sq": sum(y * y for y, _ in ys),
                    "pre_sum": sum(x for _, x in ys), "pre_sum_sq": sum(x * x for _, x in ys),
                    "pre_sum_product": sum(x * y for y, x in ys)}
        assert expected["sum_sq"] > 2**64 * 10**8
        for found in (statement, rollup):
            assert {term: found.sums[arm, "revenue"][term] for term in expected} == expected


async def test_the_rollup_looks_a_batch_s_users_up_in_its_ledger_by_index(
        stores: tuple[PostgresMetrics, PostgresMetrics], postgres: Postgres, database: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """After a large first batch, a refresh of a few users reads their ledger rows by the (rollup key, user)
    index, not the whole ledger: a check's cost follows the new rows."""
    dsn = postgres.dsn(database)
    users = 20_000
    load(dsn, EXP, Data([(f"u{i}", ARMS[i % 2], i % 3600) for i in range(users)],
                        [(f"u{i}", metric, 1.0, i % 3600) for i in range(users) for metric in ("revenue", "clicks")],
                        [(f"u{i}", "revenue", 2.0) for i in range(users)]), 1)
    await stores[0].aggregate(EXP, METRICS, 10**6, ARMS)
    load(dsn, EXP, Data([("u1", "t1", 10), ("new", "control", 20)], [("u2", "revenue", 3.0, 30)], []), 2)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("ANALYZE")
    statements: list[str] = []
    real = stores[0].engine.execute

    def recorded(statement: str) -> None:
        statements.append(statement)
        real(statement)

    monkeypatch.setattr(stores[0].engine, "execute", recorded)
    await stores[0].aggregate(EXP, METRICS, 10**6, ARMS)
    [fold_sums] = [statement for statement in statements if statement.startswith("INSERT INTO abrollout_rollup_sums")]
    with psycopg.connect(dsn) as conn:
        plan = "\n".join(line for (line,) in conn.execute(f"EXPLAIN {fold_sums}").fetchall())
    assert "using abrollout_rollup_users_by_rollup_key_user_id on abrollout_rollup_users" in plan
    assert "abrollout_rollup_users_by_rollup_key_attempt" in plan  # its own staged rows, by index too
    assert "Seq Scan on abrollout_rollup_users" not in plan


async def test_snapshot_ids_are_stable_and_follow_the_data(warehouse: PostgresMetrics) -> None:
    await asyncio.to_thread(warehouse.write_hour, EXP, 0, random_data().rows())
    first = (await warehouse.aggregate(EXP, METRICS, 7200, ARMS)).snapshot()
    again = (await warehouse.aggregate(EXP, METRICS, 7200, ARMS)).snapshot()
    assert first.snapshot_id == again.snapshot_id and first.snapshot_id.startswith("snap-")
    await asyncio.to_thread(warehouse.write_hour, EXP, 1, simulate_hour(simulation(), flag_state(), 1))
    assert (await warehouse.aggregate(EXP, METRICS, 7200, ARMS)).snapshot().snapshot_id != first.snapshot_id


@pytest.mark.parametrize("rollup", [False, True], ids=["statement", "rollup"])
async def test_simulated_traffic_gives_the_embedded_store_statistics(postgres: Postgres, database: str,
                                                                    tmp_path: Path, rollup: bool) -> None:
    """The golden-scenario path: the simulator behind each store, the same flag, a ramp step between checks."""
    sim = simulation(users_per_hour=800, effects={"treatment": {"conv": {"kind": "relative", "value": 10}}},
                     degradations=[{"metric": "latency", "arm": "treatment", "from_hour": 6,
                                    "shift": {"kind": "absolute", "value": 0.05}}])
    flags = FakeFlags(flag_state(rollout=20))
    local = LocalMetrics(tmp_path / "m.duckdb", flags)
    async with opened(PostgresMetrics(postgres.dsn(database), flags=flags, simulate=True, rollup=rollup)) as warehouse:
        await warehouse.ensure_schema()
        await warehouse.check()
        for hours in (3, 7.5, 12):
            at = int(hours * 3600)
            ours = await warehouse.snapshot(registered(sim), "run-1", at, list(sim.metrics))
            theirs = await local.snapshot(registered(sim), "run-1", at, list(sim.metrics))
            assert (ours.assignments, ours.metrics, ours.freshest_event_seconds) == (
                theirs.assignments, theirs.metrics, theirs.freshest_event_seconds)
            flags.state = flag_state(rollout=100)
        assert warehouse.hours_done(SIM_EXP) == 12
        assert sum(ours.assignments.values()) > 5000 and ours.metrics["revenue"]["control"].has_covariate
        kept = postgres.psql("SELECT to_regclass('abrollout_rollup_sums') IS NOT NULL", database) == "t\n"
        assert kept == rollup
        assert not rollup or answers_from_the_rollup(warehouse, SIM_EXP, list(sim.metrics), 12 * 3600)
    local.close()


# --- exactly once ------------------------------------------------------------------------------------------


def table_rows(dsn: str, tables: WarehouseTables = DEFAULT) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of the data tables, sorted: equal dumps mean no row was written twice or left out."""
    with psycopg.connect(dsn) as conn:
        return {table: sorted(conn.execute(f"SELECT * FROM {tables.q(table)}").fetchall())
                for table in ("exposures", "metric_events", "pre_period")}


def expected_rows(exp_key: str, batches: list[Rows]) -> dict[str, list[tuple[Any, ...]]]:
    """The rows the hours should have written, in `table_rows` form: hour h's rows carry loaded_at h + 1."""
    def rows(table: str) -> list[tuple[Any, ...]]:
        out: list[tuple[Any, ...]] = []
        for hour, batch in enumerate(batches):
            part = getattr(batch, table)
            columns = [getattr(part, column.name).tolist() for column in fields(part)]
            out += [(exp_key, *row, hour + 1) for row in zip(*columns, strict=True)]
        return sorted(out)

    return {table: rows(table) for table in ("exposures", "metric_events", "pre_period")}


async def test_an_hour_is_written_once(warehouse: PostgresMetrics, postgres: Postgres, database: str) -> None:
    sim, flag = simulation(), flag_state()
    hour0, hour1 = simulate_hour(sim, flag, 0), simulate_hour(sim, flag, 1)
    assert await asyncio.to_thread(warehouse.write_hour, SIM_EXP, 0, hour0) == 1
    assert await asyncio.to_thread(warehouse.write_hour, SIM_EXP, 0, hour0) == 1, "a retry writes nothing"
    assert await asyncio.to_thread(warehouse.write_hour, SIM_EXP, 5, hour1) == 1, "an hour out of turn writes nothing"
    assert warehouse.hours_done(SIM_EXP) == 1 and warehouse.hours_done("other") == 0
    assert table_rows(postgres.dsn(database)) == expected_rows(SIM_EXP, [hour0])


async def test_a_crash_inside_an_hour_leaves_nothing_of_it(warehouse: PostgresMetrics, postgres: Postgres,
                                                           database: str, monkeypatch: pytest.MonkeyPatch) -> None:
    sim, flag = simulation(), flag_state()
    hours = [simulate_hour(sim, flag, hour) for hour in range(2)]
    real_copy = postgres_metrics._copy

    def copy_then_die(*args: Any) -> None:
        real_copy(*args)  # the hour's rows are in the transaction...
        raise RuntimeError("worker died")  # ...and the worker dies before the progress update

    warehouse.write_hour(SIM_EXP, 0, hours[0])
    monkeypatch.setattr(postgres_metrics, "_copy", copy_then_die)
    with pytest.raises(RuntimeError, match="worker died"):
        warehouse.write_hour(SIM_EXP, 1, hours[1])
    assert warehouse.hours_done(SIM_EXP) == 1
    assert table_rows(postgres.dsn(database)) == expected_rows(SIM_EXP, hours[:1])
    monkeypatch.undo()
    assert warehouse.write_hour(SIM_EXP, 1, hours[1]) == 2  # the retry
    assert table_rows(postgres.dsn(database)) == expected_rows(SIM_EXP, hours)


async def test_racing_workers_write_each_hour_once(postgres: Postgres, database: str) -> None:
    """Two workers (two adapters, each with its own pool), two threads each, all advancing the same experiment."""
    sim, flag = simulation(), flag_state()
    hours = [simulate_hour(sim, flag, hour) for hour in range(8)]

    def advance(store: PostgresMetrics) -> int:
        done = store.hours_done(SIM_EXP)
        while done < len(hours):
            done = store.write_hour(SIM_EXP, done, hours[done])
        return done

    async with opened(PostgresMetrics(postgres.dsn(database))) as one, \
            opened(PostgresMetrics(postgres.dsn(database))) as two:
        await one.ensure_schema()
        with ThreadPoolExecutor(4) as pool:
            futures = [pool.submit(advance, store) for store in (one, two, one, two)]
            assert [future.result(timeout=120) for future in futures] == [8] * 4
    assert table_rows(postgres.dsn(database)) == expected_rows(SIM_EXP, hours)


# --- the recorded SQL ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("rollup", [False, True], ids=["statement", "rollup"])
async def test_the_recorded_query_reruns_in_psql_to_the_same_numbers(postgres: Postgres, database: str,
                                                                     rollup: bool) -> None:
    """Whichever answered, the snapshot names the full statement, which an analyst reruns as it stands."""
    async with opened(PostgresMetrics(postgres.dsn(database), rollup=rollup)) as warehouse:
        await warehouse.ensure_schema()
        await asyncio.to_thread(warehouse.write_hour, EXP, 0, random_data().rows())
        result = await warehouse.aggregate(EXP, METRICS, 7200, ARMS)
        layout = Layout(warehouse.warehouse.catalog, tuple(sorted(METRICS)))
    (query,) = result.queries
    with psycopg.connect(postgres.dsn(database)) as conn, conn.cursor(row_factory=dict_row) as cur:
        cur.execute(query)
        names = [column.name for column in cur.description or ()]
    rows = [dict(zip(names, [value or None for value in line.split("|")], strict=True))
            for line in postgres.psql(query, database).splitlines()]
    rerun = from_statement(rows, layout)
    assert rerun.assignments(ARMS) == result.assignments
    assert rerun.metric_stats(layout, METRICS, ARMS) == result.metrics
    assert rerun.freshest(METRICS) == result.freshest_event_seconds


async def test_keys_and_metric_names_are_literals_not_sql(stores: tuple[PostgresMetrics, PostgresMetrics],
                                                          postgres: Postgres, database: str) -> None:
    load(postgres.dsn(database), EXP, random_data(), 1)
    hostile = ["it's", "back\\slash", "x') OR 1=1 --", "50%"]
    for store in stores:
        result = await store.aggregate("x' OR '1'='1", hostile, 7200, ARMS)
        assert result.assignments == dict.fromkeys(ARMS, 0)
        assert postgres.psql(result.queries[0], database) == "", "no row: nobody is exposed, and no row matched"
        unexposed = await store.aggregate(EXP, hostile, 7200, ARMS)
        assert all(stats.sum == 0 for arms in unexposed.metrics.values() for stats in arms.values())
        assert sum(unexposed.assignments.values()) > 0


# --- configured names ----------------------------------------------------------------------------------------


async def test_schema_qualified_and_renamed_tables_and_columns_work(
        stores: tuple[PostgresMetrics, PostgresMetrics], postgres: Postgres, database: str) -> None:
    dsn = postgres.dsn(database)
    data = awkward_data(9)
    async with opened(PostgresMetrics(dsn, RENAMED, rollup=True)) as folded, \
            opened(PostgresMetrics(dsn, RENAMED)) as queried:
        await folded.ensure_schema()
        await folded.check()
        drop_unique_covariates(dsn, RENAMED)
        for tables in (RENAMED, DEFAULT):
            load(dsn, EXP, data, 1, tables)
        await assert_exact((folded, queried), data)
        ours = await folded.aggregate(EXP, METRICS, 3600, ARMS)
        default = await stores[0].aggregate(EXP, METRICS, 3600, ARMS)
    assert ours._replace(queries=()) == default._replace(queries=())
    assert '"wh"."assignments"' in ours.queries[0] and '"UserId"' in ours.queries[0]
    assert table_rows(dsn, RENAMED) == table_rows(dsn)


async def test_tables_without_loaded_at_are_read_by_the_full_statement(postgres: Postgres, database: str,
                                                                       tmp_path: Path) -> None:
    """`<table>_loaded_at = ""` declares a table without one (an owner's table): checks run the full statement,
    and asking for the rollup is refused at start, naming the keys."""
    dsn = postgres.dsn(database)
    data = random_data(12)
    async with opened(PostgresMetrics(dsn, NO_LOADED_AT)) as queried:
        await queried.ensure_schema()
        await queried.check()
        assert await asyncio.to_thread(queried.write_hour, EXP, 0, data.rows()) == 1
        for until in (1800, 7200):
            assert (await queried.aggregate(EXP, METRICS, until, ARMS))._replace(queries=()) == exact_reference(
                data, METRICS, until, ARMS)
    assert "loaded_at" not in postgres.psql("SELECT string_agg(attname, ',') FROM pg_attribute "
                                            "WHERE attrelid = 'metric_events'::regclass", database)
    partly = WarehouseTables(pre_period_loaded_at="")
    async with opened(PostgresMetrics(dsn, partly, rollup=True)) as folded:
        with pytest.raises(AdapterConfigError, match=r"rollup = true .* \[postgres.tables\] pre_period_loaded_at "
                                                     r"says there is none"):
            await folded.check()
        assert (await folded.aggregate(EXP, METRICS, 7200, ARMS))._replace(queries=()) == exact_reference(
            data, METRICS, 7200, ARMS)
    assert postgres.psql("SELECT to_regclass('abrollout_rollup_marks')", database) == "\n", "no rollup was made"


@pytest.mark.parametrize(("key", "value"), [
    ("exposures", "exposures; DROP TABLE users"),
    ("metric_events", "1events"),
    ("pre_period", "a.b.c"),
    ("sim_progress", ""),
    ("exposures_arm", "wh.arm"),
    ("exposures_user_id", '"UserId"'),
    ("metric_events_value", "value)"),
    ("metric_events_loaded_at", "loaded at"),
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
            "exp_key, user_id, metric, value, at_s, loaded_at") in str(column.value)
    unreachable = f"postgresql://postgres:{PASSWORD}@127.0.0.1:{free_port()}/{database}"
    with pytest.raises(AdapterConfigError, match=r"cannot be reached") as down:
        await PostgresMetrics(unreachable, timeout=5).check()
    with pytest.raises(AdapterConfigError, match=r"cannot be reached") as no_database:
        await PostgresMetrics(with_password(postgres, "no_such_database")).check()
    for error in (tables, column, down, no_database):
        assert PASSWORD not in str(error.value) and "as postgres" in str(error.value)


async def test_a_dsn_that_does_not_parse_is_refused_without_quoting_it() -> None:
    with pytest.raises(AdapterConfigError) as error:
        PostgresMetrics(f"host=127.0.0.1 password={PASSWORD} port")
    assert PASSWORD not in str(error.value)


async def test_the_read_only_role_recipe_reads_and_cannot_write(warehouse: PostgresMetrics, postgres: Postgres,
                                                                database: str) -> None:
    role = "abrollout_reader"
    postgres.psql(READ_ONLY_ROLE.format(role=role, password=PASSWORD, database=database), database)
    await asyncio.to_thread(warehouse.write_hour, EXP, 0, random_data().rows())
    dsn = with_password(postgres, database, role)
    async with opened(PostgresMetrics(dsn)) as reader:
        await reader.check()
        assert (await reader.aggregate(EXP, METRICS, 3600, ARMS)).assignments == (
            await warehouse.aggregate(EXP, METRICS, 3600, ARMS)).assignments
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            reader.write_hour(EXP, 1, random_data().rows())
    with pytest.raises(AdapterConfigError, match=rf"{role} may not INSERT table exposures: GRANT INSERT") as error:
        await PostgresMetrics(dsn, flags=FakeFlags(None), simulate=True).check()
    assert "may not SELECT, INSERT, UPDATE table sim_progress" in str(error.value)
    assert "transactions are read-only (default_transaction_read_only)" in str(error.value)
    with pytest.raises(AdapterConfigError) as rollup:
        await PostgresMetrics(dsn, rollup=True).check()
    assert (f"table abrollout_rollup_marks ([postgres] rollup = true: abrollout's own table (create_tables = true "
            f"also removes an older release's trigger rollup)) does not exist, and {role} may not create it in "
            f'schema public: GRANT CREATE ON SCHEMA "public" TO "{role}"') in str(rollup.value)
    assert "transactions are read-only" in str(rollup.value)


async def test_the_rollup_needs_select_and_insert_on_its_tables_and_no_more(
        stores: tuple[PostgresMetrics, PostgresMetrics], postgres: Postgres, database: str) -> None:
    """The owner made the rollup's tables (create_tables = true); a worker role that may only read and append to
    them keeps the rollup (it creates nothing), and one that may not append is told the GRANT."""
    role = "abrollout_appender"
    postgres.psql(f"CREATE ROLE {role} LOGIN; GRANT CONNECT ON DATABASE {database} TO {role}; "
                  f"GRANT USAGE ON SCHEMA public TO {role}; GRANT SELECT ON exposures, metric_events, pre_period, "
                  f"abrollout_rollup_marks, abrollout_rollup_users, abrollout_rollup_sums TO {role};", database)
    dsn = postgres.dsn(database, role)
    with pytest.raises(AdapterConfigError) as error:
        await PostgresMetrics(dsn, rollup=True).check()
    for table in ("marks", "users", "sums"):
        assert (f"{role} may not INSERT table abrollout_rollup_{table}: GRANT INSERT ON "
                f'"abrollout_rollup_{table}" TO "{role}"') in str(error.value)
    postgres.psql(f"GRANT INSERT ON abrollout_rollup_marks, abrollout_rollup_users, abrollout_rollup_sums "
                  f"TO {role}", database)
    data = awkward_data(13)
    load(postgres.dsn(database), EXP, data, 1)
    async with opened(PostgresMetrics(dsn, rollup=True)) as worker:
        await worker.check()
        await assert_exact((worker, stores[1]), data)


async def test_create_tables_upgrades_an_older_release_s_tables_and_trigger_rollup(postgres: Postgres,
                                                                                 database: str) -> None:
    """An older release made the tables without loaded_at, and its rollup was triggers on them writing
    abrollout_rollup_* tables (two of them named like the generator's): the check says what is wrong, and
    create_tables = true adds loaded_at (the rows already there count as loaded first), removes the triggers
    and their tables, and the rollup then answers exactly."""
    dsn = postgres.dsn(database)
    first, second = split(random_data(14), 2, 14)
    postgres.psql("""
        CREATE TABLE exposures (exp_key text NOT NULL, user_id text NOT NULL, arm text NOT NULL, at_s int NOT NULL);
        CREATE TABLE metric_events (exp_key text NOT NULL, user_id text NOT NULL, metric text NOT NULL,
                                    value float8 NOT NULL, at_s int NOT NULL);
        CREATE TABLE pre_period (exp_key text NOT NULL, user_id text NOT NULL, metric text NOT NULL,
                                 value float8 NOT NULL);
        CREATE TABLE abrollout_rollup_marks (exp_key text PRIMARY KEY, max_at_s integer, stale boolean NOT NULL);
        CREATE TABLE abrollout_rollup_users (exp_key text, user_id text, arm text);
        CREATE TABLE abrollout_rollup_values (exp_key text, user_id text, metric text, y numeric, x numeric);
        CREATE TABLE abrollout_rollup_arms (exp_key text);
        CREATE FUNCTION abrollout_rollup_on_exposures() RETURNS trigger LANGUAGE plpgsql AS
            $$ BEGIN INSERT INTO abrollout_rollup_arms VALUES ('folded'); RETURN NULL; END $$;
        CREATE TRIGGER abrollout_rollup_insert AFTER INSERT ON exposures FOR EACH STATEMENT
            EXECUTE FUNCTION abrollout_rollup_on_exposures();
    """, database)
    with psycopg.connect(dsn) as conn, conn.cursor() as cur:
        for table, rows in (("exposures", first.exposures), ("metric_events", first.events),
                            ("pre_period", first.pre)):
            with cur.copy(f"COPY {table} FROM STDIN") as copy:
                for row in rows:
                    copy.write_row((EXP, *row))
    async with opened(PostgresMetrics(dsn, rollup=True)) as folded, opened(PostgresMetrics(dsn)) as queried:
        with pytest.raises(AdapterConfigError) as error:
            await folded.check()
        assert "table exposures has no column loaded_at ([postgres.tables] exposures_loaded_at)" in str(error.value)
        assert ("table abrollout_rollup_marks has no column rollup_key ([postgres] rollup = true: abrollout's own "
                "table (create_tables = true also removes an older release's trigger rollup))") in str(error.value)
        await folded.ensure_schema()
        await folded.check()
        assert postgres.psql("SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'abrollout%'", database) == "0\n"
        assert postgres.psql("SELECT to_regclass('abrollout_rollup_arms')", database) == "\n"
        await assert_exact((folded, queried), first)
        load(dsn, EXP, second, 1)
        await assert_exact((folded, queried), joined([first, second]))
        await folded.ensure_schema()  # again: the rollup is kept
        await assert_exact((folded, queried), joined([first, second]))
