"""PostgreSQL's rollup (triggers folding every write into per-arm sums) answers a window that holds every row
exactly as the statistics query does, whoever writes the rows and however: batches out of time order, several
experiments in one statement, concurrent writers, UPDATE, DELETE and TRUNCATE. Where it cannot vouch for its sums
(a disabled trigger, a writer in REPEATABLE READ) the check runs the query instead."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest

from adapters.local_metrics import Aggregate, snapshot_id
from adapters.postgres_metrics import PostgresMetrics, WarehouseTables
from adapters.postgres_rollup import Rollup, install
from adapters.protocols import AdapterConfigError
from tests.adapters.test_local_metrics import ARMS, EXP, Data, awkward_data, exact_reference, random_data
from tests.adapters.test_running_aggregate import joined, latest, split
from tests.integration.test_postgres import DEFAULT, PASSWORD, READ_ONLY_ROLE, RENAMED, opened, with_password
from tests.support.servers.postgres import Postgres

METRICS = ["revenue", "clicks", "it's", "absent"]
OTHER = "another-exp"
TYPES = {"user_id": "text", "arm": "text", "metric": "text", "value": "float8", "at_s": "int"}


@pytest.fixture
async def stores(postgres: Postgres, database: str) -> AsyncIterator[tuple[PostgresMetrics, PostgresMetrics]]:
    """The adapter with the rollup installed (on empty tables), and one that always runs the query. The unique
    covariate index is dropped: a warehouse may hold a duplicated covariate, and both must sum it."""
    dsn = postgres.dsn(database)
    async with opened(PostgresMetrics(dsn, rollup=True)) as folded, opened(PostgresMetrics(dsn)) as queried:
        await folded.ensure_schema()
        await folded.check()
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("DROP INDEX pre_period_exp_key_metric_user_id")
        yield folded, queried


def insert(dsn: str, exp_key: str, data: Data, tables: WarehouseTables = DEFAULT,
           isolation: str = "READ COMMITTED", linger: float = 0.0) -> None:
    """Each table's rows in one INSERT statement (a loader that is not abrollout), in one transaction that stays
    open `linger` seconds after its last statement."""
    t = tables
    with psycopg.connect(dsn) as conn:
        conn.execute(f"SET TRANSACTION ISOLATION LEVEL {isolation}")
        for table, rows, columns in (("exposures", data.exposures, ("user_id", "arm", "at_s")),
                                     ("metric_events", data.events, ("user_id", "metric", "value", "at_s")),
                                     ("pre_period", data.pre, ("user_id", "metric", "value"))):
            if rows:
                names = ", ".join(t.q(f"{table}_{column}") for column in ("exp_key", *columns))
                arrays = ", ".join(f"%s::{TYPES[column]}[]" for column in columns)
                conn.execute(f"INSERT INTO {t.q(table)} ({names}) SELECT %s, * FROM unnest({arrays})",
                             [exp_key, *(list(column) for column in zip(*rows, strict=True))])
        conn.execute("SELECT pg_sleep(%s)", [linger])


async def from_rollup(store: PostgresMetrics, exp_key: str, until: int) -> bool:
    """Whether the rollup answers this window (else the check runs the query)."""
    rollup = Rollup(store.tables)
    async with store._db.pool.connection() as conn:
        rows = await (await conn.execute(rollup.read_sql(), [exp_key])).fetchall()
    return Rollup.sums(rows, until) is not None


async def both(stores: tuple[PostgresMetrics, PostgresMetrics], names: list[str], until: int,
               exp_key: str = EXP) -> tuple[Aggregate, Aggregate]:
    folded, queried = stores
    return (await folded.aggregate(exp_key, names, until, ARMS), await queried.aggregate(exp_key, names, until, ARMS))


async def assert_exact(stores: tuple[PostgresMetrics, PostgresMetrics], data: Data, exp_key: str = EXP) -> None:
    """The rollup answers the whole window, equal to the query (recorded SQL, freshness and snapshot id
    included) and to the Python definition's statistics (PostgreSQL's freshness counts only the chosen metrics'
    events, the definition's every event), for every metric list."""
    until = latest(data)
    assert await from_rollup(stores[0], exp_key, until), "the rollup should answer this window"
    for names in (METRICS, ["clicks"], []):
        folded, queried = await both(stores, names, until, exp_key)
        assert folded == queried
        assert snapshot_id(folded) == snapshot_id(queried)
        assert folded == exact_reference(data, names, until, ARMS)._replace(
            queries=folded.queries, freshest_event_seconds=folded.freshest_event_seconds)


@pytest.mark.parametrize(("make", "seed"), [(awkward_data, 1), (awkward_data, 2), (random_data, 3)])
async def test_batches_in_any_order_fold_to_the_query_s_statistics(
        stores: tuple[PostgresMetrics, PostgresMetrics], postgres: Postgres, database: str,
        make: Callable[[int], Data], seed: int) -> None:
    """Late rows, users moving to an arm first in name order, events and covariates before exposures, a
    duplicated covariate, a quoted metric name; another experiment with the same users alongside. With
    `random_data` every exposed user has a revenue covariate, so the CUPED sums are compared too."""
    dsn = postgres.dsn(database)
    insert(dsn, OTHER, random_data(seed + 1))
    batches = split(make(seed), 4, seed)
    for count, batch in enumerate(batches, 1):
        if count % 2:
            insert(dsn, EXP, batch)
        else:  # through the adapter's own COPY path
            assert await asyncio.to_thread(stores[0].write_hour, EXP, count // 2 - 1, batch.rows()) == count // 2
        await assert_exact(stores, joined(batches[:count]))
    await assert_exact(stores, random_data(seed + 1), OTHER)
    result = await stores[0].aggregate(EXP, METRICS, latest(joined(batches)), ARMS)
    assert result.metrics["revenue"]["control"].has_covariate == (make is random_data)


async def test_one_statement_with_several_experiments_folds_each(
        stores: tuple[PostgresMetrics, PostgresMetrics], postgres: Postgres, database: str) -> None:
    one, two = random_data(4), awkward_data(5)
    with psycopg.connect(postgres.dsn(database)) as conn:
        conn.execute("CREATE TEMP TABLE staged AS SELECT * FROM exposures WHERE false")
        with conn.cursor().copy("COPY staged FROM STDIN") as copy:
            for exp_key, data in ((EXP, two), (OTHER, one)):
                for row in data.exposures:
                    copy.write_row((exp_key, *row))
        conn.execute("INSERT INTO exposures SELECT * FROM staged")
    insert(postgres.dsn(database), EXP, Data([], two.events, two.pre))
    insert(postgres.dsn(database), OTHER, Data([], one.events, one.pre))
    await assert_exact(stores, two)
    await assert_exact(stores, one, OTHER)


async def test_a_window_ending_before_the_latest_row_runs_the_query(
        stores: tuple[PostgresMetrics, PostgresMetrics], postgres: Postgres, database: str) -> None:
    data = awkward_data(1)
    insert(postgres.dsn(database), EXP, data)
    assert not await from_rollup(stores[0], EXP, latest(data) - 1)
    folded, queried = await both(stores, METRICS, 3600)
    assert folded == queried == exact_reference(data, METRICS, 3600, ARMS)._replace(queries=folded.queries)


async def test_rows_stored_before_the_install_are_folded_by_it(postgres: Postgres, database: str) -> None:
    dsn = postgres.dsn(database)
    data = random_data(6)
    async with opened(PostgresMetrics(dsn)) as queried, opened(PostgresMetrics(dsn, rollup=True)) as folded:
        await queried.ensure_schema()
        insert(dsn, EXP, data)
        with pytest.raises(AdapterConfigError, match="create_tables = true"):
            await folded.check()
        await folded.ensure_schema()
        await folded.check()
        await assert_exact((folded, queried), data)
        await folded.ensure_schema()  # installing again folds nothing twice
        await assert_exact((folded, queried), data)


async def test_update_delete_and_truncate_fold_the_experiment_again(
        stores: tuple[PostgresMetrics, PostgresMetrics], postgres: Postgres, database: str) -> None:
    """Each statement touches both experiments: values changed, users moved between arms, a user erased."""
    dsn = postgres.dsn(database)
    datasets = {EXP: awkward_data(3), OTHER: random_data(3)}
    for exp_key, data in datasets.items():
        insert(dsn, exp_key, data)
    with psycopg.connect(dsn) as conn:
        conn.execute("UPDATE metric_events SET value = value * 2 WHERE user_id LIKE 'u1%'")
        conn.execute("UPDATE exposures SET arm = 'control' WHERE user_id IN ('u3', 'u4')")
        conn.execute("DELETE FROM exposures WHERE user_id = 'u5'")

    def edited(data: Data) -> Data:
        return Data([(u, "control" if u in ("u3", "u4") else a, t) for u, a, t in data.exposures if u != "u5"],
                    [(u, m, v * 2 if u.startswith("u1") else v, t) for u, m, v, t in data.events], data.pre)

    for exp_key, data in datasets.items():
        await assert_exact(stores, edited(data), exp_key)
    with psycopg.connect(dsn) as conn:
        conn.execute("TRUNCATE pre_period")
    for exp_key, data in datasets.items():
        await assert_exact(stores, Data(edited(data).exposures, edited(data).events, []), exp_key)


async def test_writers_racing_on_one_experiment_leave_the_rollup_exact(
        stores: tuple[PostgresMetrics, PostgresMetrics], postgres: Postgres, database: str) -> None:
    """Eight loaders, released together, each inserting a batch of the same experiment's rows (most users are in
    several) and committing 0.2 s later: without the per-experiment lock, every fold would read the same old state
    and the sums would be wrong."""
    batches = split(awkward_data(7), 8, 7)
    start = threading.Barrier(len(batches))

    def load(batch: Data) -> None:
        start.wait(timeout=30)
        insert(postgres.dsn(database), EXP, batch, linger=0.2)

    with ThreadPoolExecutor(len(batches)) as pool:
        list(pool.map(load, batches, timeout=120))
    await assert_exact(stores, joined(batches))


async def test_where_the_rollup_cannot_vouch_for_its_sums_the_check_runs_the_query(
        stores: tuple[PostgresMetrics, PostgresMetrics], postgres: Postgres, database: str) -> None:
    """A disabled trigger misses writes, and a REPEATABLE READ writer would fold on a stale snapshot: the check
    then runs the query (and gets the right numbers) until the experiment is folded again (by installing again,
    which enables the triggers and, as one was off, folds everything afresh; or by the refold function)."""
    dsn = postgres.dsn(database)
    first, second = split(awkward_data(8), 2, 8)
    insert(dsn, EXP, first)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("ALTER TABLE metric_events DISABLE TRIGGER abrollout_rollup_insert")
        insert(dsn, EXP, Data([], second.events, []))
        assert not await from_rollup(stores[0], EXP, 10**6)
        folded, queried = await both(stores, METRICS, 10**6)
        assert folded == queried
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:  # installing again mends it
        await install(conn, DEFAULT, "SELECT 1")
    await assert_exact(stores, Data(first.exposures, first.events + second.events, first.pre))
    insert(dsn, EXP, Data(second.exposures, [], second.pre), isolation="REPEATABLE READ")
    assert not await from_rollup(stores[0], EXP, 10**6)
    folded, queried = await both(stores, METRICS, 10**6)
    assert folded == queried
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SELECT abrollout_rollup_refold(%s)", [EXP])
    await assert_exact(stores, joined([first, second]))


async def test_configured_names_and_schemas_work(postgres: Postgres, database: str) -> None:
    dsn = postgres.dsn(database)
    data = awkward_data(9)
    async with opened(PostgresMetrics(dsn, RENAMED, rollup=True)) as folded, \
            opened(PostgresMetrics(dsn, RENAMED)) as queried:
        await folded.ensure_schema()
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("DROP INDEX wh.covariates_exp_key_metric_user_id")
            assert conn.execute("SELECT to_regclass('wh.abrollout_rollup_arms')").fetchone() != (None,)
        insert(dsn, EXP, data, RENAMED)
        await assert_exact((folded, queried), data)


async def test_a_loader_needs_no_grant_on_the_rollup_and_a_read_only_reader_reads_it(
        stores: tuple[PostgresMetrics, PostgresMetrics], postgres: Postgres, database: str) -> None:
    """The recipes of docs/configuration.md: the worker's read-only role with SELECT on the rollup's marks and
    arms; a loader with INSERT on the data tables only (the triggers fold with the installer's rights); neither may
    call the rollup's functions."""
    postgres.psql(READ_ONLY_ROLE.format(role="reader", password=PASSWORD, database=database)
                  + "GRANT SELECT ON abrollout_rollup_marks, abrollout_rollup_arms TO reader;", database)
    postgres.psql(f"CREATE ROLE loader LOGIN; GRANT CONNECT ON DATABASE {database} TO loader; "
                  "GRANT USAGE ON SCHEMA public TO loader; "
                  "GRANT INSERT ON exposures, metric_events, pre_period TO loader;", database)
    data = awkward_data(10)
    insert(postgres.dsn(database, "loader"), EXP, data)
    async with opened(PostgresMetrics(with_password(postgres, database, "reader"), rollup=True)) as reader:
        await reader.check()
        await assert_exact((reader, stores[1]), data)
    for role in ("reader", "loader"):
        with pytest.raises(psycopg.errors.InsufficientPrivilege), \
                psycopg.connect(postgres.dsn(database, role)) as conn:
            conn.execute("SELECT abrollout_rollup_refold(%s)", [EXP])


async def test_a_column_that_allows_null_is_refused_with_the_fix_and_nothing_installed(
        postgres: Postgres, database: str) -> None:
    dsn = postgres.dsn(database)
    async with opened(PostgresMetrics(dsn)) as plain:
        await plain.ensure_schema()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("ALTER TABLE exposures ALTER COLUMN user_id DROP NOT NULL")
        conn.execute("ALTER TABLE metric_events ALTER COLUMN at_s DROP NOT NULL")
    async with opened(PostgresMetrics(dsn, rollup=True)) as folded:
        with pytest.raises(AdapterConfigError) as refused:
            await folded.ensure_schema()
        assert ('ALTER TABLE "public"."exposures" ALTER COLUMN "user_id" SET NOT NULL; '
                'ALTER TABLE "public"."metric_events" ALTER COLUMN "at_s" SET NOT NULL') in str(refused.value)
        with psycopg.connect(dsn) as conn:
            assert conn.execute("SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'abrollout%'").fetchone() == (0,)
            assert conn.execute("SELECT to_regclass('abrollout_rollup_marks')").fetchone() == (None,)
