"""PostgreSQL as the metrics warehouse: per-arm sufficient statistics computed inside the database by one statement
whose exact text the check records, so an analyst can rerun it in psql and get the same numbers (the embedded
store's statistics, in exact micro-units). Configured names are validated and quoted, never pasted; with `rollup` a
window holding every row reads the triggers' sums (adapters/postgres_rollup.py). Design notes: docs/adapters.md.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from adapters.local_metrics import Aggregate, aggregate_from_rows
from adapters.postgres_rollup import Rollup, install
from adapters.protocols import AdapterConfigError, MetricsSnapshot, Registered
from adapters.redaction import quote
from adapters.running_aggregate import VALUE_SCALE
from adapters.simulator import FlagReader, HourStore, Rows, Simulator

CONFIG_SECTION = "[postgres.tables]"
TABLES = ("exposures", "metric_events", "pre_period", "sim_progress")
_TABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?")
_COLUMN_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SCHEMA_LOCK = "SELECT pg_advisory_xact_lock(hashtext('abrollout.schema'))"


@dataclass(frozen=True)
class WarehouseTables:
    """Where the warehouse keeps each table and column. A field's name is its config key under [postgres.tables]:
    `<table>` names a table (optionally schema-qualified, `analytics.exposures`), `<table>_<column>` a column.
    Names are validated and quoted, never pasted, so they are case sensitive ("Exposures" is not exposures)."""

    exposures: str = "exposures"
    exposures_exp_key: str = "exp_key"
    exposures_user_id: str = "user_id"
    exposures_arm: str = "arm"
    exposures_at_s: str = "at_s"
    metric_events: str = "metric_events"
    metric_events_exp_key: str = "exp_key"
    metric_events_user_id: str = "user_id"
    metric_events_metric: str = "metric"
    metric_events_value: str = "value"
    metric_events_at_s: str = "at_s"
    pre_period: str = "pre_period"
    pre_period_exp_key: str = "exp_key"
    pre_period_user_id: str = "user_id"
    pre_period_metric: str = "metric"
    pre_period_value: str = "value"
    sim_progress: str = "sim_progress"
    sim_progress_exp_key: str = "exp_key"
    sim_progress_hours_done: str = "hours_done"

    def __post_init__(self) -> None:
        for item in fields(self):
            value = getattr(self, item.name)
            pattern, what = ((_TABLE_NAME, "a table name (letters, digits, _, and one . after a schema)")
                             if item.name in TABLES else (_COLUMN_NAME, "a column name (letters, digits and _)"))
            if not isinstance(value, str) or not pattern.fullmatch(value):
                raise ValueError(f"{CONFIG_SECTION} {item.name} = {value!r} is not {what}")

    def q(self, key: str) -> str:
        """The configured name under `key`, quoted for SQL."""
        return sql.Identifier(*getattr(self, key).split(".")).as_string()

    def columns(self, table: str) -> dict[str, str]:
        """A table's columns: the embedded schema's name -> the config key that names it here."""
        prefix = f"{table}_"
        return {item.name.removeprefix(prefix): item.name for item in fields(self) if item.name.startswith(prefix)}


@dataclass(frozen=True)
class TableCheck:
    """A table an adapter needs, for the start-up check: the columns it uses and the privileges it needs, each
    with where its name came from, so that a failure says what to fix."""

    name: str
    origin: str
    columns: dict[str, str]
    privileges: tuple[str, ...]


class Database:
    """One DSN's connections: an async pool for the adapter's work with every wait bounded (connect, pool checkout,
    statements), and a description of the server for messages, which never contains the password."""

    def __init__(self, dsn: str, min_size: int, max_size: int, timeout: float, statement_timeout: float,
                 settings: Sequence[str] = ()) -> None:
        """`settings`: more `name=value` session settings, passed like statement_timeout (`-c name=value`)."""
        try:
            params = conninfo_to_dict(dsn)
        except psycopg.Error:  # libpq's message quotes the string, password and all
            raise AdapterConfigError("the PostgreSQL DSN is not a connection string (postgresql://user@host/db or "
                                     "key=value pairs)") from None
        self.dsn, self.timeout = dsn, timeout
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
        self.pool = AsyncConnectionPool(dsn, min_size=min_size, max_size=max_size, open=False, timeout=timeout,
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
            return [f"table {table.name} ({table.origin}) does not exist"]
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

    async def create(self, statements: Sequence[str]) -> None:
        """Run DDL in one transaction under an advisory lock: workers creating the same tables at once would
        otherwise collide in the catalog even with IF NOT EXISTS."""
        async with self.pool.connection() as conn, conn.transaction():
            await conn.execute(_SCHEMA_LOCK)
            for statement in statements:
                await conn.execute(statement)


class PostgresMetrics:
    """A PostgreSQL-backed `MetricsSource`, and the simulator's `HourStore`. With `simulate` and a flag reader it
    first advances the simulated traffic of experiments that have a `simulation` block, like the embedded store.

    `timeout` bounds connecting and waiting for a pooled connection, `statement_timeout` every statement (keep it
    under the check activity's 5 minutes, so a slow warehouse fails the check rather than hanging it)."""

    name = "postgres"

    def __init__(self, dsn: str, tables: WarehouseTables = WarehouseTables(), flags: FlagReader | None = None,
                 simulate: bool = False, min_pool: int = 1, max_pool: int = 8, *, timeout: float = 30.0,
                 statement_timeout: float = 240.0, wrap_store: Callable[[HourStore], HourStore] | None = None,
                 rollup: bool = False) -> None:
        """`wrap_store` lets the simulator write through another store too (e.g. a Prometheus mirror). `rollup`:
        answer checks from the triggers' running aggregate (adapters/postgres_rollup.py) where it holds the
        window; `ensure_schema` installs it, `check` requires it."""
        self.tables = tables
        self._rollup = Rollup(tables) if rollup else None
        # JIT off: the statistics statement's joins of per-user aggregates are estimated far above their size, so
        # the server would JIT-compile it with inlining and optimisation, about 2 s at 1M rows and 4 s at 10M, more
        # than the compiled code saves. Results do not depend on it (an analyst's rerun with JIT gets them too).
        self._db = Database(dsn, min_pool, max_pool, timeout, statement_timeout, settings=("jit=off",))
        self._writer = self._db.sync_pool(max_size=2)
        store: HourStore = wrap_store(self) if wrap_store else self
        self._simulator = Simulator(store, flags) if simulate and flags is not None else None

    async def open(self) -> None:
        await self._db.open()
        self._writer.open()

    async def close(self) -> None:
        await asyncio.to_thread(self._writer.close, self._db.timeout)
        await self._db.close()

    async def check(self) -> None:
        """Start-up validation: the server answers, and every configured table and column exists and is readable
        (and writable where the simulator writes)."""
        t = self.tables
        privileges = {"exposures": ["SELECT"], "metric_events": ["SELECT"], "pre_period": ["SELECT"]}
        if self._simulator is not None:
            privileges = {table: ["SELECT", "INSERT"] for table in privileges} | {
                "sim_progress": ["SELECT", "INSERT", "UPDATE"]}
        checks = [TableCheck(name=getattr(t, table), origin=f"{CONFIG_SECTION} {table}",
                             columns={getattr(t, key): f"{CONFIG_SECTION} {key}" for key in t.columns(table).values()},
                             privileges=tuple(needed))
                  for table, needed in privileges.items()]
        if self._rollup is not None:
            checks += [TableCheck(name=self._rollup.name(table), columns={},
                                  origin="[postgres] rollup; create_tables = true installs it",
                                  privileges=("SELECT",)) for table in ("marks", "arms")]
        await self._db.check(checks)
        if self._rollup is not None:
            async with self._db.pool.connection() as conn:
                await self._rollup.check_triggers(conn)

    async def ensure_schema(self) -> None:
        """Create the tables with the embedded store's types and the indexes the statistics query filters on (for
        simulation and tests; a production warehouse's tables belong to its owner)."""
        t = self.tables
        statements = [f"CREATE SCHEMA IF NOT EXISTS {sql.Identifier(schema).as_string()}"
                      for schema in sorted({getattr(t, table).split(".")[0] for table in TABLES
                                            if "." in getattr(t, table)})]
        statements += [
            f"CREATE TABLE IF NOT EXISTS {t.q('exposures')} ({t.q('exposures_exp_key')} text NOT NULL, "
            f"{t.q('exposures_user_id')} text NOT NULL, {t.q('exposures_arm')} text NOT NULL, "
            f"{t.q('exposures_at_s')} integer NOT NULL)",
            f"CREATE TABLE IF NOT EXISTS {t.q('metric_events')} ({t.q('metric_events_exp_key')} text NOT NULL, "
            f"{t.q('metric_events_user_id')} text NOT NULL, {t.q('metric_events_metric')} text NOT NULL, "
            f"{t.q('metric_events_value')} double precision NOT NULL, {t.q('metric_events_at_s')} integer NOT NULL)",
            f"CREATE TABLE IF NOT EXISTS {t.q('pre_period')} ({t.q('pre_period_exp_key')} text NOT NULL, "
            f"{t.q('pre_period_user_id')} text NOT NULL, {t.q('pre_period_metric')} text NOT NULL, "
            f"{t.q('pre_period_value')} double precision NOT NULL)",
            f"CREATE TABLE IF NOT EXISTS {t.q('sim_progress')} ({t.q('sim_progress_exp_key')} text PRIMARY KEY, "
            f"{t.q('sim_progress_hours_done')} integer NOT NULL)",
            _index(t, "exposures", "exp_key", "at_s"),
            _index(t, "metric_events", "exp_key", "metric", "at_s"),
            _index(t, "pre_period", "exp_key", "metric", "user_id", unique=True),
        ]
        await self._db.create(statements)
        if self._rollup is not None:
            async with self._db.pool.connection() as conn:
                await install(conn, t, _SCHEMA_LOCK)

    async def snapshot(self, registered: Registered, run_id: str, at_seconds: int,
                       metrics: list[str]) -> MetricsSnapshot:
        """Cumulative statistics from the run's start to `at_seconds`. The tables hold one run per experiment, so
        `run_id` selects nothing."""
        if self._simulator is not None:
            await self._simulator.advance(registered, at_seconds)
        args = registered.args
        return (await self.aggregate(args.exp_key, metrics, at_seconds, args.arms)).snapshot()

    async def aggregate(self, exp_key: str, metrics: Sequence[str], until_seconds: int,
                        arms: Sequence[str] = ()) -> Aggregate:
        """Per arm: users exposed by `until_seconds` and, per metric, n, sum and sum of squares of their values,
        plus the CUPED sums when every exposed user has a pre-period value. `arms` appear even without users."""
        names = list(dict.fromkeys(metrics))
        query = statistics_sql(self.tables, exp_key, names, until_seconds)
        async with self._db.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            if self._rollup is not None:
                await cur.execute(self._rollup.read_sql(), [exp_key], prepare=True)
                folded = Rollup.sums([tuple(row.values()) for row in await cur.fetchall()], until_seconds)
                if folded is not None:
                    with_rows = folded.covariates(names)
                    return aggregate_from_rows(folded.query_rows(names, with_rows), names, arms, with_rows,
                                               (query,), folded.freshest(names))
            await cur.execute(query)
            rows = [{column: value if column == "arm" or value is None else int(value)
                     for column, value in row.items()} for row in await cur.fetchall()]
        freshest = max((row["freshest_event_seconds"] for row in rows
                        if row["freshest_event_seconds"] is not None), default=None)
        covariates = {name for index, name in enumerate(names) if any(row[f"pre_n_{index}"] for row in rows)}
        return aggregate_from_rows([row for row in rows if row["arm"] is not None], names, arms, covariates,
                                   (query,), None if freshest is None else float(freshest))

    def hours_done(self, exp_key: str) -> int:
        """Simulated hours already written for the experiment."""
        t = self.tables
        with self._writer.connection() as conn:
            found = conn.execute(f"SELECT {t.q('sim_progress_hours_done')} FROM {t.q('sim_progress')} "
                                 f"WHERE {t.q('sim_progress_exp_key')} = %s", [exp_key]).fetchone()
        return int(found[0]) if found else 0

    def write_hour(self, exp_key: str, hour: int, rows: Rows) -> int:
        """Write `rows` as simulated hour `hour` and count the hour done, in one transaction, unless the progress
        says otherwise (a retry, or another worker got there first): then write nothing. The hours done after.

        The progress row is created if missing and locked FOR UPDATE before anything is written: a racing writer
        waits for the first to commit, then reads the new progress and writes nothing."""
        t = self.tables
        table, key, done_column = t.q("sim_progress"), t.q("sim_progress_exp_key"), t.q("sim_progress_hours_done")
        with self._writer.connection() as conn, conn.transaction(), conn.cursor() as cur:
            cur.execute(f"INSERT INTO {table} ({key}, {done_column}) VALUES (%s, 0) ON CONFLICT ({key}) DO NOTHING",
                        [exp_key])
            [(done,)] = cur.execute(f"SELECT {done_column} FROM {table} WHERE {key} = %s FOR UPDATE",
                                    [exp_key]).fetchall()
            if done != hour:
                return int(done)
            _copy(cur, t, exp_key, rows)
            cur.execute(f"UPDATE {table} SET {done_column} = %s WHERE {key} = %s", [hour + 1, exp_key])
        return hour + 1


def statistics_sql(tables: WarehouseTables, exp_key: str, metrics: Sequence[str], until_seconds: int) -> str:
    """The statistics statement, literals written in so that it reruns in psql as it stands.

    Each table is aggregated by user on its own (`exposed`: the user's arm; `events`: y<i>, metric i's value;
    `covariates`: x<i>, its covariate; all in micro-units), then the three are joined on the user and summed per
    arm. Grouping each table by itself lets the planner size every aggregate from that table's statistics (an
    aggregate over a UNION of the three is estimated at 200 groups, which at millions of users means a hash
    aggregate spilling hundreds of batches and external sorts; this is about 1.5x faster at 10M rows). The joins are
    FULL joins so that users without an exposure in the window land in the arm-NULL row, which the statistics
    leave out; it still counts for the freshest time and for whether a metric has any pre-period row.
    `min(arm)` only matters for a user logged in two arms: they count once, in the arm first in byte order (as
    in DuckDB).
    """
    t, key, until = tables, _literal(exp_key), int(until_seconds)
    indices = range(len(metrics))
    ys, xs = [f"y{i}" for i in indices], [f"x{i}" for i in indices]
    window = f"{t.q('exposures_exp_key')} = {key} AND {t.q('exposures_at_s')} <= {until}"
    ctes = [("exposed", _by_user(t, "exposures", [f'min({t.q("exposures_arm")}::text COLLATE "C") AS arm',
                                                  f"max({t.q('exposures_at_s')}) AS last_at_s"], window))]
    per_user = ["exposed.arm", "exposed.last_at_s"]
    joins = "exposed"
    if metrics:
        chosen = ", ".join(map(_literal, metrics))
        values = [f"sum({v}) AS {y}" for v, y in zip(_micro_units(t, "metric_events", metrics), ys, strict=True)]
        pre = [f"sum({v}) AS {x}" for v, x in zip(_micro_units(t, "pre_period", metrics), xs, strict=True)]
        ctes += [
            ("events", _by_user(t, "metric_events", [f"max({t.q('metric_events_at_s')}) AS last_at_s", *values],
                                f"{t.q('metric_events_exp_key')} = {key} AND {t.q('metric_events_at_s')} <= {until} "
                                f"AND {t.q('metric_events_metric')} IN ({chosen})")),
            ("covariates", _by_user(t, "pre_period", pre, f"{t.q('pre_period_exp_key')} = {key} "
                                                          f"AND {t.q('pre_period_metric')} IN ({chosen})")),
        ]
        per_user = ["exposed.arm", "greatest(exposed.last_at_s, events.last_at_s) AS last_at_s", *ys, *xs]
        joins = "exposed\n    FULL JOIN events USING (user_id)\n    FULL JOIN covariates USING (user_id)"
    per_arm = ["arm", "count(*) AS n", "max(last_at_s) AS freshest_event_seconds"]
    for i in indices:
        per_arm += [f"sum(y{i}) AS sum_{i}", f"sum(y{i} * y{i}) AS sum_sq_{i}", f"count(x{i}) AS pre_n_{i}",
                    f"sum(x{i}) AS pre_sum_{i}", f"sum(x{i} * x{i}) AS pre_sum_sq_{i}",
                    f"sum(x{i} * y{i}) AS pre_sum_product_{i}"]
    definitions = ",\n".join(f"{name} AS (\n    {body}\n)" for name, body in ctes)
    return (
        f"-- per-arm sufficient statistics up to at_s {until}, values in units of 1/{VALUE_SCALE}; the arm-NULL row "
        "is users not exposed in the window\n"
        f"WITH {definitions},\n"
        f"per_user AS (\n    SELECT {_list(per_user, 11)}\n    FROM {joins}\n)\n"
        f"SELECT {_list(per_arm, 7)}\nFROM per_user\nGROUP BY arm\nORDER BY arm NULLS LAST"
    )


def _by_user(t: WarehouseTables, table: str, columns: list[str], where: str) -> str:
    """One table's rows in the window, aggregated per user (the user column named user_id for the joins)."""
    user = t.q(f"{table}_user_id")
    return (f"SELECT {_list([f'{user} AS user_id', *columns], 11)}\n    FROM {t.q(table)}\n    WHERE {where}\n"
            f"    GROUP BY {user}")


def _micro_units(t: WarehouseTables, table: str, metrics: Sequence[str]) -> list[str]:
    """One column per metric: the row's value in micro-units where the row is that metric's, else NULL. PostgreSQL
    rounds half to even for double precision (half away from zero for numeric), which differs from DuckDB's only
    for a value exactly half a micro-unit away from two."""
    return [f"CASE WHEN {t.q(f'{table}_metric')} = {_literal(m)} THEN round({t.q(f'{table}_value')} * {VALUE_SCALE})"
            f"::bigint END" for m in metrics]


def _list(items: Sequence[str], indent: int) -> str:
    return (",\n" + " " * indent).join(items)


def _literal(text: str) -> str:
    """A string literal as psycopg quotes it (E'' when it holds a backslash): valid whatever the server settings."""
    return sql.Literal(text).as_string()


def _index(t: WarehouseTables, table: str, *columns: str, unique: bool = False) -> str:
    name = sql.Identifier("_".join([getattr(t, table).split(".")[-1], *columns])).as_string()
    keys = ", ".join(t.q(f"{table}_{column}") for column in columns)
    return f"CREATE {'UNIQUE ' if unique else ''}INDEX IF NOT EXISTS {name} ON {t.q(table)} ({keys})"


def _copy(cur: psycopg.Cursor[Any], t: WarehouseTables, exp_key: str, rows: Rows) -> None:
    """COPY each table's batch in (plain Python values: numpy scalars have no PostgreSQL adapter)."""
    for table, batch in (("exposures", rows.exposures), ("metric_events", rows.metric_events),
                         ("pre_period", rows.pre_period)):
        names = [item.name for item in fields(batch)]
        columns = [getattr(batch, name).tolist() for name in names]
        if not columns[0]:
            continue
        target = ", ".join(t.q(f"{table}_{name}") for name in ["exp_key", *names])
        with cur.copy(f"COPY {t.q(table)} ({target}) FROM STDIN") as copy:
            for row in zip(*columns, strict=True):
                copy.write_row((exp_key, *row))
