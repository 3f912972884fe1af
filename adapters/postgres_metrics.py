"""PostgreSQL as the metrics warehouse: the warehouse generator's SQL (adapters/warehouse) over the configured tables,
so a check's statistics are the embedded store's to the micro-unit and the statement it records reruns in psql as
it stands. Configured names are validated and quoted, never pasted. With `rollup`, abrollout keeps the generator's
incremental rollup in its own tables in this database and a check costs what the rows loaded since the last one
cost. Design notes: docs/adapters.md.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from functools import cached_property
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from abrollout.warehouse.catalog import Catalog, CovariateSource, ExposureSource, Labels, MetricDefinition
from abrollout.warehouse.rollup import tables as rollup_tables
from adapters.protocols import AdapterConfigError, MetricsSnapshot, Registered
from adapters.redaction import quote
from adapters.simulator import FlagReader, HourStore, Rows, Simulator
from adapters.warehouse.aggregate import Aggregate
from adapters.warehouse.metrics import WarehouseMetrics
from adapters.warehouse.postgres_engine import SCHEMA_LOCK, PostgresEngine

CONFIG_SECTION = "[postgres.tables]"
TABLES = ("exposures", "metric_events", "pre_period", "sim_progress")
DATA_TABLES = TABLES[:3]
ROLLUP_PREFIX = "abrollout_rollup_"
_TABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?")
_COLUMN_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True)
class WarehouseTables:
    """Where the warehouse keeps each table and column. A field's name is its config key under [postgres.tables]:
    `<table>` names a table (optionally schema-qualified, `analytics.exposures`), `<table>_<column>` a column.
    Names are validated and quoted, never pasted, so they are case sensitive ("Exposures" is not exposures).

    `<table>_loaded_at` is the integer that grows with each load (a batch number), which the rollup reads past; ""
    says the table has none: checks then run the full statement."""

    exposures: str = "exposures"
    exposures_exp_key: str = "exp_key"
    exposures_user_id: str = "user_id"
    exposures_arm: str = "arm"
    exposures_at_s: str = "at_s"
    exposures_loaded_at: str = "loaded_at"
    metric_events: str = "metric_events"
    metric_events_exp_key: str = "exp_key"
    metric_events_user_id: str = "user_id"
    metric_events_metric: str = "metric"
    metric_events_value: str = "value"
    metric_events_at_s: str = "at_s"
    metric_events_loaded_at: str = "loaded_at"
    pre_period: str = "pre_period"
    pre_period_exp_key: str = "exp_key"
    pre_period_user_id: str = "user_id"
    pre_period_metric: str = "metric"
    pre_period_value: str = "value"
    pre_period_loaded_at: str = "loaded_at"
    sim_progress: str = "sim_progress"
    sim_progress_exp_key: str = "exp_key"
    sim_progress_hours_done: str = "hours_done"

    def __post_init__(self) -> None:
        for item in fields(self):
            value = getattr(self, item.name)
            pattern, what = ((_TABLE_NAME, "a table name (letters, digits, _, and one . after a schema)")
                             if item.name in TABLES else (_COLUMN_NAME, "a column name (letters, digits and _)"))
            if item.name.endswith("_loaded_at") and value == "":
                continue
            if not isinstance(value, str) or not pattern.fullmatch(value):
                raise ValueError(f"{CONFIG_SECTION} {item.name} = {value!r} is not {what}"
                                 + (' (or "" for none)' if item.name.endswith("_loaded_at") else ""))

    def q(self, key: str) -> str:
        """The configured name under `key`, quoted for SQL."""
        return sql.Identifier(*getattr(self, key).split(".")).as_string()

    def columns(self, table: str) -> dict[str, str]:
        """A table's columns that it has: the embedded schema's name -> the config key that names it here."""
        prefix = f"{table}_"
        return {item.name.removeprefix(prefix): item.name for item in fields(self)
                if item.name.startswith(prefix) and getattr(self, item.name)}

    @property
    def incremental(self) -> bool:
        """Whether every data table has a loaded_at column, so the rollup can read it."""
        return all(getattr(self, f"{table}_loaded_at") for table in DATA_TABLES)

    def catalog(self) -> Catalog:
        """The tables as metric definitions: the built-in catalog's reading (every metric the metric_events rows
        labelled with its name, its covariate the pre_period rows labelled the same) under these names."""
        def source(table: str) -> dict[str, str | None]:
            return {"table": getattr(self, table), "user_id": self.q(f"{table}_user_id"),
                    "experiment_key": self.q(f"{table}_exp_key"),
                    "loaded_at": self.q(f"{table}_loaded_at") if getattr(self, f"{table}_loaded_at") else None}

        return Catalog(
            dialect="postgres",
            exposures=ExposureSource(**source("exposures"), variant=self.q("exposures_arm"),
                                     timestamp=self.q("exposures_at_s")),
            labels=Labels(events=MetricDefinition(**source("metric_events"), value=self.q("metric_events_value"),
                                                  timestamp=self.q("metric_events_at_s")),
                          covariates=CovariateSource(**source("pre_period"), value=self.q("pre_period_value")),
                          events_label=self.q("metric_events_metric"), covariates_label=self.q("pre_period_metric")))


@dataclass(frozen=True)
class TableCheck:
    """A table an adapter needs, for the start-up check: the columns it uses and the privileges it needs, each
    with where its name came from, so that a failure says what to fix. `creatable`: the adapter creates the table
    in the role's current schema if it is missing, so then the role needs CREATE there instead."""

    name: str
    origin: str
    columns: dict[str, str]
    privileges: tuple[str, ...]
    creatable: bool = False


class Database:
    """One DSN's connections: pools with every wait bounded (connect, pool checkout, statements), and a
    description of the server for messages, which never contains the password."""

    def __init__(self, dsn: str, min_size: int, max_size: int, timeout: float, statement_timeout: float,
                 settings: Sequence[str] = ()) -> None:
        """`settings`: more `name=value` session settings, passed like statement_timeout (`-c name=value`)."""
        try:
            params = conninfo_to_dict(dsn)
        except psycopg.Error:  # libpq's message quotes the string, password and all
            raise AdapterConfigError("the PostgreSQL DSN is not a connection string (postgresql://user@host/db or "
                                     "key=value pairs)") from None
        self.dsn, self.timeout, self._sizes = dsn, timeout, (min_size, max_size)
        self._password = str(params.get("password") or "")
        self.where = (f"database {params.get('dbname') or '(default)'} at {params.get('host') or 'localhost'}:"
                      f"{params.get('port') or 5432} as {params.get('user') or '(the OS user)'}")
        limit = " ".join(f"-c {setting}" for setting in (f"statement_timeout={round(statement_timeout * 1000)}",
                                                             *settings))
        options = params.get("options")
        self.settings: dict[str, Any] = {
            "connect_timeout": max(1, round(timeout)),
            "options": f"{options} {limit}" if options else limit,
            "application_name": params.get("application_name") or "abrollout",
        }

    @cached_property
    def pool(self) -> AsyncConnectionPool:
        """The async pool for an adapter's work, made when first used (the metrics source works in threads)."""
        min_size, max_size = self._sizes
        return AsyncConnectionPool(self.dsn, min_size=min_size, max_size=max_size, open=False, timeout=self.timeout,
                                   kwargs=self.settings, check=AsyncConnectionPool.check_connection)

    async def open(self) -> None:
        await self.pool.open(wait=False)

    async def close(self) -> None:
        await self.pool.close(timeout=self.timeout)

    def sync_pool(self, max_size: int) -> ConnectionPool:
        """A pool for code that runs in threads, connecting only when used."""
        return ConnectionPool(self.dsn, min_size=0, max_size=max_size, open=False, timeout=self.timeout,
                              kwargs=self.settings, check=ConnectionPool.check_connection)

    def redact(self, text: str) -> str:
        """A server's message without the password, in any form it may be echoed in."""
        return quote(text, (self._password,))

    async def check(self, tables: Sequence[TableCheck]) -> None:
        """Connect and find every missing table, column and privilege, and read-only sessions where the adapter
        writes; one AdapterConfigError lists them all."""
        try:
            conn = await psycopg.AsyncConnection.connect(self.dsn, autocommit=True, **self.settings)
        except psycopg.Error as exc:
            message = self.redact(str(exc)).strip()
            reason = message.splitlines()[0] if message else type(exc).__name__
            raise AdapterConfigError(f"PostgreSQL {self.where} cannot be reached: {reason}; check the DSN "
                                     "(ABROLLOUT_POSTGRES_DSN) and that the server is up") from None
        async with conn:
            [(user, read_only)] = await (await conn.execute(
                "SELECT current_user, current_setting('transaction_read_only')")).fetchall()
            problems = [problem for table in tables for problem in await self._problems(conn, table, user)]
        if read_only == "on" and any(p != "SELECT" for table in tables for p in table.privileges):
            problems.append(f"{user}'s transactions are read-only (default_transaction_read_only), and this adapter "
                            "writes: use a role that may write these tables")
        if problems:
            raise AdapterConfigError(f"PostgreSQL {self.where}: " + "; ".join(problems))

    async def _problems(self, conn: psycopg.AsyncConnection[Any], table: TableCheck, user: str) -> list[str]:
        quoted = sql.Identifier(*table.name.split(".")).as_string()
        try:
            [(oid,)] = await (await conn.execute("SELECT to_regclass(%s)::oid", [quoted])).fetchall()
        except psycopg.errors.InsufficientPrivilege as exc:
            return [f"table {table.name} ({table.origin}) cannot be looked up: {self.redact(str(exc)).strip()}"]
        if oid is None:
            return await self._cannot_create(conn, table, user) if table.creatable else [
                f"table {table.name} ({table.origin}) does not exist"]
        found = [name for (name,) in await (await conn.execute(
            "SELECT attname FROM pg_attribute WHERE attrelid = %s AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
            [oid])).fetchall()]
        problems = [f"table {table.name} has no column {column} ({origin}); its columns are {', '.join(found)}"
                    for column, origin in table.columns.items() if column not in found]
        lacking = [p for (p,) in await (await conn.execute(
            "SELECT p FROM unnest(%s::text[]) AS p WHERE NOT has_table_privilege(%s::oid, p)",
            [list(table.privileges), oid])).fetchall()]
        if lacking:
            problems.append(f"{user} may not {', '.join(lacking)} table {table.name}: "
                            f"GRANT {', '.join(lacking)} ON {quoted} TO {sql.Identifier(user).as_string()}")
        return problems

    async def _cannot_create(self, conn: psycopg.AsyncConnection[Any], table: TableCheck, user: str) -> list[str]:
        """Why `table` cannot be created in the role's current schema, if it cannot."""
        [(schema, may)] = await (await conn.execute(
            "SELECT current_schema(), has_schema_privilege(current_schema(), 'CREATE')")).fetchall()
        if schema is None:
            return [f"table {table.name} ({table.origin}) does not exist, and {user}'s search_path names no schema "
                    "that exists to create it in"]
        if not may:
            return [f"table {table.name} ({table.origin}) does not exist, and {user} may not create it in schema "
                    f"{schema}: GRANT CREATE ON SCHEMA {sql.Identifier(schema).as_string()} TO "
                    f"{sql.Identifier(user).as_string()}, or create it once with create_tables = true"]
        return []

    async def create(self, statements: Sequence[str]) -> None:
        """Run DDL in one transaction under the schema lock (adapters/warehouse/postgres_engine.py)."""
        async with self.pool.connection() as conn, conn.transaction():
            await conn.execute(SCHEMA_LOCK)
            for statement in statements:
                await conn.execute(statement)


class PostgresMetrics:
    """A PostgreSQL-backed `MetricsSource`, and the simulator's `HourStore`. With `simulate` and a flag reader it
    first advances the simulated traffic of experiments that have a `simulation` block, like the embedded store.

    `timeout` bounds connecting and waiting for a pooled connection, `statement_timeout` every statement (keep it
    under the check activity's 5 minutes, so a slow warehouse fails the check rather than hanging it)."""

    name = "postgres"

    def __init__(self, dsn: str, tables: WarehouseTables = WarehouseTables(), flags: FlagReader | None = None,
                 simulate: bool = False, max_pool: int = 8, *, timeout: float = 30.0,
                 statement_timeout: float = 240.0, wrap_store: Callable[[HourStore], HourStore] | None = None,
                 rollup: bool = False, catalog: Catalog | None = None) -> None:
        """`wrap_store` lets the simulator write through another store too (e.g. a Prometheus mirror). `rollup`:
        keep the generator's rollup in abrollout's own tables here (`abrollout_rollup_*`, in the role's current
        schema; created when missing) and answer checks from it where it holds the window. `catalog`: metric
        definitions (a metrics file) instead of the configured tables' labels."""
        self.tables = tables
        self.rollup = rollup
        # JIT off: the statement's joins of per-user aggregates are estimated far above their size, so the server
        # would JIT-compile it with inlining and optimisation, seconds at millions of rows, more than the compiled
        # code saves. Results do not depend on it (an analyst's rerun with JIT gets them too).
        # Its async pool stays unmade: everything here runs in threads, on the sync pool.
        self._db = Database(dsn, 0, max_pool, timeout, statement_timeout, settings=("jit=off",))
        self._pool = self._db.sync_pool(max_size=max_pool)
        self.engine = PostgresEngine(self._pool)
        self.warehouse = WarehouseMetrics(self.engine, catalog or tables.catalog(), incremental=rollup,
                                          prefix=ROLLUP_PREFIX)
        store: HourStore = wrap_store(self) if wrap_store else self
        self._simulator = Simulator(store, flags) if simulate and flags is not None else None

    async def open(self) -> None:
        self._pool.open()

    async def close(self) -> None:
        await asyncio.to_thread(self._pool.close, self._db.timeout)

    async def check(self) -> None:
        """Start-up validation: the server answers, every configured table and column exists and is readable
        (and writable where the simulator writes), and with the rollup its tables can be read and appended to
        (or created)."""
        t = self.tables
        if self.rollup and not t.incremental:
            missing = ", ".join(f"{table}_loaded_at" for table in DATA_TABLES if not getattr(t, f"{table}_loaded_at"))
            raise AdapterConfigError(f"[postgres] rollup = true reads the rows loaded since the last check by their "
                                     f"loaded_at column, and {CONFIG_SECTION} {missing} says there is none: name the "
                                     "column, or set rollup = false")
        privileges = {"exposures": ["SELECT"], "metric_events": ["SELECT"], "pre_period": ["SELECT"]}
        if self._simulator is not None:
            privileges = {table: ["SELECT", "INSERT"] for table in privileges} | {
                "sim_progress": ["SELECT", "INSERT", "UPDATE"]}
        checks = [TableCheck(name=getattr(t, table), origin=f"{CONFIG_SECTION} {table}",
                             columns={getattr(t, key): f"{CONFIG_SECTION} {key}" for key in t.columns(table).values()},
                             privileges=tuple(needed))
                  for table, needed in privileges.items()]
        if self.rollup:
            origin = ("[postgres] rollup = true: abrollout's own table (create_tables = true also removes an older "
                      "release's trigger rollup)")
            checks += [TableCheck(name=table.name, origin=origin, columns=dict.fromkeys(dict(table.columns), origin),
                                  privileges=("SELECT", "INSERT"), creatable=True)
                       for table in rollup_tables(ROLLUP_PREFIX)]
        await self._db.check(checks)

    async def ensure_schema(self) -> None:
        """Create the tables with the embedded store's types and the indexes the statistics and the rollup's reads
        filter on (for simulation and tests; a production warehouse's tables belong to its owner); add loaded_at
        to tables an older release made, and replace that release's trigger rollup."""
        t = self.tables
        statements = [f"CREATE SCHEMA IF NOT EXISTS {sql.Identifier(schema).as_string()}"
                      for schema in sorted({getattr(t, table).split(".")[0] for table in TABLES
                                            if "." in getattr(t, table)})]
        statements += [
            *(_create(t, table) for table in DATA_TABLES),
            f"CREATE TABLE IF NOT EXISTS {t.q('sim_progress')} ({t.q('sim_progress_exp_key')} text PRIMARY KEY, "
            f"{t.q('sim_progress_hours_done')} integer NOT NULL)",
            *(f"ALTER TABLE {t.q(table)} ADD COLUMN IF NOT EXISTS {t.q(f'{table}_loaded_at')} {_LOADED_AT}"
              for table in DATA_TABLES if getattr(t, f"{table}_loaded_at")),
            _index(t, "exposures", "exp_key", "at_s"),
            _index(t, "metric_events", "exp_key", "metric", "at_s"),
            _index(t, "pre_period", "exp_key", "metric", "user_id", unique=True),
            *(_index(t, table, "exp_key", "loaded_at") for table in DATA_TABLES if getattr(t, f"{table}_loaded_at")),
            _drop_trigger_rollup(t),
        ]
        await asyncio.to_thread(self.engine.create, statements)
        if self.rollup:
            await asyncio.to_thread(self.engine.create_rollup, rollup_tables(ROLLUP_PREFIX))

    async def snapshot(self, registered: Registered, run_id: str, at_seconds: int,
                       metrics: list[str]) -> MetricsSnapshot:
        """Cumulative statistics from the run's start to `at_seconds`. The tables hold one run per experiment, so
        `run_id` selects nothing."""
        if self._simulator is not None:
            await self._simulator.advance(registered, at_seconds)
        return await self.warehouse.snapshot(registered, run_id, at_seconds, metrics)

    async def aggregate(self, exp_key: str, metrics: Sequence[str], until_seconds: int,
                        arms: Sequence[str] = ()) -> Aggregate:
        """Per arm: users exposed by `until_seconds` and, per metric, n, sum and sum of squares of their values,
        plus the CUPED sums when every exposed user has a pre-period value. `arms` appear even without users."""
        return await asyncio.to_thread(self.warehouse.aggregate, exp_key, metrics, until_seconds, arms)

    def hours_done(self, exp_key: str) -> int:
        """Simulated hours already written for the experiment."""
        t = self.tables
        with self._pool.connection() as conn:
            found = conn.execute(f"SELECT {t.q('sim_progress_hours_done')} FROM {t.q('sim_progress')} "
                                 f"WHERE {t.q('sim_progress_exp_key')} = %s", [exp_key]).fetchone()
        return int(found[0]) if found else 0

    def write_hour(self, exp_key: str, hour: int, rows: Rows) -> int:
        """Write `rows` as simulated hour `hour` and count the hour done, in one transaction, unless the progress
        says otherwise (a retry, or another worker got there first): then write nothing. The hours done after.

        The progress row is created if missing and locked FOR UPDATE before anything is written: a racing writer
        waits for the first to commit, then reads the new progress and writes nothing. So the experiment's hours
        commit in order, and the rows' loaded_at, the hours done after the write, grows in commit order as the
        rollup needs."""
        t = self.tables
        table, key, done_column = t.q("sim_progress"), t.q("sim_progress_exp_key"), t.q("sim_progress_hours_done")
        with self._pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
            cur.execute(f"INSERT INTO {table} ({key}, {done_column}) VALUES (%s, 0) ON CONFLICT ({key}) DO NOTHING",
                        [exp_key])
            [(done,)] = cur.execute(f"SELECT {done_column} FROM {table} WHERE {key} = %s FOR UPDATE",
                                    [exp_key]).fetchall()
            if done != hour:
                return int(done)
            _copy(cur, t, exp_key, rows, hour + 1)
            cur.execute(f"UPDATE {table} SET {done_column} = %s WHERE {key} = %s", [hour + 1, exp_key])
        return hour + 1


_LOADED_AT = "bigint NOT NULL DEFAULT 0"
"""Rows loaded without a loaded_at (by an older release) count as loaded first."""
_TYPES = {"exp_key": "text NOT NULL", "user_id": "text NOT NULL", "arm": "text NOT NULL", "metric": "text NOT NULL",
          "value": "double precision NOT NULL", "at_s": "integer NOT NULL", "loaded_at": _LOADED_AT}


def _create(t: WarehouseTables, table: str) -> str:
    """A data table with the embedded store's columns and types."""
    columns = [f"{t.q(key)} {_TYPES[column]}" for column, key in t.columns(table).items()]
    return f"CREATE TABLE IF NOT EXISTS {t.q(table)} ({', '.join(columns)})"


def _index(t: WarehouseTables, table: str, *columns: str, unique: bool = False) -> str:
    name = sql.Identifier("_".join([getattr(t, table).split(".")[-1], *columns])).as_string()
    keys = ", ".join(t.q(f"{table}_{column}") for column in columns)
    return f"CREATE {'UNIQUE ' if unique else ''}INDEX IF NOT EXISTS {name} ON {t.q(table)} ({keys})"


_TRIGGER_ROLLUP_FUNCTIONS = ("lock(text[])", "refold(text)", "truncated()", "on_exposures()", "on_metric_events()",
                             "on_pre_period()")
_TRIGGER_ROLLUP_TABLES = ("users", "values", "arms", "marks")


def _drop_trigger_rollup(t: WarehouseTables) -> str:
    """Remove an older release's rollup: triggers on the data tables folding into abrollout_rollup_* tables in the
    exposures table's schema, two of which share the generator's rollup's names. Its `arms` table marks it;
    dropping its functions drops the triggers with them."""
    schema = "(SELECT n.nspname FROM pg_class AS c JOIN pg_namespace AS n ON n.oid = c.relnamespace " \
             f"WHERE c.oid = to_regclass({sql.Literal(t.q('exposures')).as_string()}))"
    functions = ", ".join(f"%1$I.{ROLLUP_PREFIX}{name}" for name in _TRIGGER_ROLLUP_FUNCTIONS)
    tables = ", ".join(f"%1$I.{ROLLUP_PREFIX}{name}" for name in _TRIGGER_ROLLUP_TABLES)
    return f"""DO $$
DECLARE
    home text := {schema};
BEGIN
    IF to_regclass(format('%I.{ROLLUP_PREFIX}arms', home)) IS NOT NULL THEN
        EXECUTE format('DROP FUNCTION IF EXISTS {functions} CASCADE', home);
        EXECUTE format('DROP TABLE {tables}', home);
    END IF;
END $$"""


def _copy(cur: psycopg.Cursor[Any], t: WarehouseTables, exp_key: str, rows: Rows, loaded_at: int) -> None:
    """COPY each table's batch in (plain Python values: numpy scalars have no PostgreSQL adapter), every row
    under `loaded_at` where the table has the column."""
    for table, batch in (("exposures", rows.exposures), ("metric_events", rows.metric_events),
                         ("pre_period", rows.pre_period)):
        names = [item.name for item in fields(batch)]
        columns = [getattr(batch, name).tolist() for name in names]
        if not columns[0]:
            continue
        loaded = [loaded_at] if getattr(t, f"{table}_loaded_at") else []
        target = ", ".join(t.q(f"{table}_{name}") for name in ["exp_key", *names, *(["loaded_at"] if loaded else [])])
        with cur.copy(f"COPY {t.q(table)} ({target}) FROM STDIN") as copy:
            for row in zip(*columns, strict=True):
                copy.write_row((exp_key, *row, *loaded))
