"""PostgreSQL's running aggregate (opt in: `[postgres] rollup = true`): per-arm sums kept up to date by
statement-level triggers on the warehouse's three tables, so a check reads a few rows instead of grouping every
exposed user, whoever loads the rows (COPY, INSERT, the owner's pipelines, the simulator). It means exactly what the
embedded store's does (adapters/running_aggregate.py). Tables, how it stays exact, installing: docs/adapters.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import sql

from adapters.protocols import AdapterConfigError
from adapters.running_aggregate import SUMS, VALUE_SCALE, ArmSums, latest_of

if TYPE_CHECKING:
    from adapters.postgres_metrics import WarehouseTables

MINIMUM_SERVER = 150000
PREFIX = "abrollout_rollup_"
EVENTS = ("insert", "update", "delete", "truncate")
DATA_TABLES = ("exposures", "metric_events", "pre_period")
OWN_TABLES = ("users", "values", "arms", "marks")
TRIGGER_COUNT = len(EVENTS) * len(DATA_TABLES)


@dataclass(frozen=True)
class Source:
    """Where a fold reads each table's rows (a trigger's batch, or one experiment's stored rows), as the columns the
    fold expects: exposures (exp_key, user_id, arm, at_s), metric_events (exp_key, user_id, metric, value, at_s),
    pre_period (exp_key, user_id, metric, value)."""

    exposures: str
    events: str
    pre_period: str


_CONTRIBUTION = ("{sign}{y}, {sign}({y} * {y}), {sign}({x} IS NOT NULL)::int, {sign}coalesce({x}, 0), "
                 "{sign}coalesce({x} * {x}, 0), {sign}coalesce({x} * {y}, 0)")
"""A user's value's terms of the sums s .. psp, added ({sign} empty) or taken away ({sign} -)."""


def _batch_sql(src: Source) -> str:
    """The fold's first two named subqueries: batch_values (each experiment's, user's and metric's sums in the
    batch) and touched (each user in the batch, with the first arm in name order among their exposures)."""
    micro = f"round(value * {VALUE_SCALE})::bigint"
    return f"""batch_values AS (
        SELECT exp_key, user_id, metric, sum(v) FILTER (WHERE NOT pre) AS dy, sum(v) FILTER (WHERE pre) AS dx
        FROM (SELECT exp_key, user_id::text AS user_id, metric::text AS metric, {micro} AS v, false AS pre
              FROM {src.events} AS e
              UNION ALL SELECT exp_key, user_id::text, metric::text, {micro}, true FROM {src.pre_period} AS p) AS b
        GROUP BY exp_key, user_id, metric),
    touched AS (
        SELECT exp_key, user_id, min(arm) AS arm
        FROM (SELECT exp_key, user_id::text AS user_id, arm::text COLLATE "C" AS arm FROM {src.exposures} AS x
              UNION ALL SELECT exp_key, user_id, NULL FROM batch_values) AS t
        GROUP BY exp_key, user_id)"""


class Rollup:
    """The rollup of one warehouse's tables: its DDL and its read. Names are resolved to their schemas when
    installing (`resolve`), because the trigger functions pin their search_path."""

    def __init__(self, tables: WarehouseTables, schemas: dict[str, str] | None = None) -> None:
        """`schemas`: each data table's schema, as `resolve` finds them; without it, the configured names."""
        self.t = tables
        self._schemas = schemas or {}

    @classmethod
    async def resolve(cls, conn: psycopg.AsyncConnection[Any], tables: WarehouseTables) -> Rollup:
        schemas = {}
        for table in DATA_TABLES:
            found = await (await conn.execute(
                "SELECT n.nspname FROM pg_class AS c JOIN pg_namespace AS n ON n.oid = c.relnamespace "
                "WHERE c.oid = to_regclass(%s)", [tables.q(table)])).fetchone()
            if found is None:
                raise AdapterConfigError(f"the rollup needs table {getattr(tables, table)}, which does not exist")
            schemas[table] = str(found[0])
        return cls(tables, schemas)

    async def nullable_columns(self, conn: psycopg.AsyncConnection[Any]) -> list[tuple[str, str]]:
        """The (table, column) pairs the fold reads that allow NULL, quoted for SQL."""
        found = []
        for table in DATA_TABLES:
            keys = self.t.columns(table).values()
            names = [getattr(self.t, key) for key in keys]
            rows = await (await conn.execute(
                "SELECT attname FROM pg_attribute WHERE attrelid = to_regclass(%s) AND attname = ANY(%s) "
                "AND NOT attnotnull ORDER BY attnum", [self.data(table), names])).fetchall()
            found += [(self.data(table), sql.Identifier(name).as_string()) for (name,) in rows]
        return found

    # --- names -----------------------------------------------------------------------------------------------

    def data(self, table: str) -> str:
        """A data table, qualified with its schema when resolved."""
        name = getattr(self.t, table).split(".")[-1]
        return sql.Identifier(self._schemas[table], name).as_string() if self._schemas else self.t.q(table)

    def name(self, own: str) -> str:
        """One of the rollup's own tables or functions, in the exposures table's schema: `schema.name`."""
        configured = self.t.exposures.split(".")
        schema = self._schemas.get("exposures") or (configured[0] if len(configured) == 2 else None)
        return f"{schema}.{PREFIX}{own}" if schema else PREFIX + own

    def own(self, name: str) -> str:
        """`name`, quoted for SQL."""
        return sql.Identifier(*self.name(name).split(".")).as_string()

    def column(self, table: str, column: str) -> str:
        return self.t.q(f"{table}_{column}")

    # --- reading ---------------------------------------------------------------------------------------------

    def read_sql(self) -> str:
        """The experiment's sums (parameter: exp_key), one row per (arm, metric), or no row when the rollup may not
        answer: no fresh mark, or a trigger missing or disabled. Every row repeats the mark's max_at_s."""
        sums = ", ".join(f"a.{name}" for name in SUMS)
        return (f"SELECT m.max_at_s, a.arm, a.metric, {sums}, a.max_at_s AS latest_at_s\n"
                f"FROM {self.own('marks')} AS m LEFT JOIN {self.own('arms')} AS a ON a.exp_key = m.exp_key\n"
                f"WHERE m.exp_key = %s AND NOT m.stale AND ({self.triggers_enabled()}) = {TRIGGER_COUNT}")

    def triggers_enabled(self) -> str:
        """How many of the rollup's triggers exist and fire."""
        relations = ", ".join(f"to_regclass({sql.Literal(self.data(table)).as_string()})" for table in DATA_TABLES)
        names = ", ".join(sql.Literal(PREFIX + event).as_string() for event in EVENTS)
        return (f"SELECT count(*) FROM pg_trigger WHERE tgrelid IN ({relations}) AND tgname IN ({names}) "
                "AND tgenabled IN ('O', 'A')")

    async def check_triggers(self, conn: psycopg.AsyncConnection[Any]) -> None:
        """Start-up check: every trigger is installed and enabled, or an error that says how to install them."""
        [(found,)] = await (await conn.execute(self.triggers_enabled())).fetchall()
        if found != TRIGGER_COUNT:
            raise AdapterConfigError(
                f"[postgres] rollup = true, but {found} of its {TRIGGER_COUNT} triggers on the metrics tables are "
                "installed and enabled: set [postgres] create_tables = true once (it installs them and folds the "
                "stored rows), or set rollup = false")

    @staticmethod
    def sums(rows: list[tuple[Any, ...]], until_seconds: int) -> ArmSums | None:
        """`read_sql`'s rows as sums, if they are exactly the window up to `until_seconds`."""
        if not rows or (rows[0][0] is not None and rows[0][0] > until_seconds):
            return None
        found = [row for row in rows if row[3] is not None]  # n is None: no sums yet
        return ArmSums(max_at_s=rows[0][0], sums=[(arm, metric, *(int(value) for value in values))
                                                  for _, arm, metric, *values, _ in found],
                       latest=latest_of(found, 1))

    # --- installing ------------------------------------------------------------------------------------------

    def install_sql(self, fold_all: bool) -> list[str]:
        """Every statement of the install, in order (run in one transaction by `install`). `fold_all`: fold every
        experiment afresh (the triggers were missing or disabled, so writes may have been missed); else only
        those without a fresh mark."""
        data = ", ".join(self.data(table) for table in DATA_TABLES)
        todo = self._experiments() + ("" if fold_all else f" EXCEPT SELECT exp_key FROM {self.own('marks')} "
                                                          "WHERE NOT stale")
        return [f"LOCK TABLE {data} IN SHARE ROW EXCLUSIVE MODE", *self._tables(), self._lock_function(),
                self._refold_function(), self._truncated_function(),
                *(self._trigger_function(table) for table in DATA_TABLES), *self._triggers(),
                f"REVOKE EXECUTE ON FUNCTION {', '.join(self._functions())} FROM PUBLIC",
                *([f"TRUNCATE {self.own_tables()}"] if fold_all else []),
                f"SELECT {self.own('refold')}(key) FROM ({todo}) AS todo (key) WHERE key IS NOT NULL ORDER BY key"]

    def _experiments(self) -> str:
        """Every experiment with rows in the data tables: a query of one column."""
        return " UNION ".join(f"SELECT {self.column(table, 'exp_key')}::text FROM {self.data(table)}"
                              for table in DATA_TABLES)

    def _functions(self) -> list[str]:
        """The rollup's functions with their signatures: they run with the installer's rights, so only the
        installer (and the triggers) may call them."""
        return [f"{self.own(name)}({signature})" for name, signature in (
            ("lock", "text[]"), ("refold", "text"), ("truncated", ""),
            *((f"on_{table}", "") for table in DATA_TABLES))]

    def own_tables(self) -> str:
        """The rollup's tables, quoted and comma-separated (for TRUNCATE or DROP)."""
        return ", ".join(self.own(name) for name in OWN_TABLES)

    def _tables(self) -> list[str]:
        sums = ", ".join(f"{name} {'bigint' if name in ('n', 'pn') else 'numeric'} NOT NULL" for name in SUMS)
        return [
            f"CREATE TABLE IF NOT EXISTS {self.own('marks')} (exp_key text PRIMARY KEY, max_at_s integer, "
            "stale boolean NOT NULL)",
            f"CREATE TABLE IF NOT EXISTS {self.own('users')} (exp_key text NOT NULL, user_id text NOT NULL, "
            'arm text COLLATE "C", PRIMARY KEY (exp_key, user_id))',
            f"CREATE TABLE IF NOT EXISTS {self.own('values')} (exp_key text NOT NULL, user_id text NOT NULL, "
            "metric text NOT NULL, y numeric NOT NULL, x numeric, PRIMARY KEY (exp_key, user_id, metric))",
            f'CREATE TABLE IF NOT EXISTS {self.own("arms")} (exp_key text NOT NULL, arm text COLLATE "C", '
            f"metric text, {sums}, max_at_s integer, UNIQUE NULLS NOT DISTINCT (exp_key, arm, metric))",
        ]

    def _function(self, name: str, signature: str, returns: str, body: str) -> str:
        return (f"CREATE OR REPLACE FUNCTION {self.own(name)}({signature}) RETURNS {returns} LANGUAGE plpgsql "
                f"SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$\n{body}\n$fn$")

    def _lock_function(self) -> str:
        """lock(keys): serialise the experiments' writers (locks taken in key order, so writers never deadlock);
        false, with the marks stale, where a fold would read a stale snapshot (REPEATABLE READ or SERIALIZABLE)."""
        return self._function("lock", "keys text[]", "boolean", f"""
DECLARE
    the_exp text;
BEGIN
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        INSERT INTO {self.own('marks')} SELECT key, NULL, true FROM unnest(keys) AS key
            ON CONFLICT (exp_key) DO UPDATE SET stale = true;
        RETURN false;
    END IF;
    FOR the_exp IN SELECT DISTINCT key FROM unnest(keys) AS key ORDER BY 1 LOOP
        PERFORM pg_advisory_xact_lock(hashtextextended('abrollout.rollup:' || the_exp, 0));
    END LOOP;
    RETURN true;
END""")

    def _refold_function(self) -> str:
        """refold(the_exp): the experiment's sums again, from its rows in the tables."""
        tables = Source(*(self._columns(table, self.data(table), f"{self.column(table, 'exp_key')} = the_exp")
                          for table in DATA_TABLES))
        at = (f"SELECT max(at_s) FROM (SELECT at_s FROM {tables.exposures} AS e UNION ALL SELECT at_s FROM "
              f"{tables.events} AS v) AS times")
        deletes = "\n    ".join(f"DELETE FROM {self.own(name)} WHERE exp_key = the_exp;" for name in OWN_TABLES)
        return self._function("refold", "the_exp text", "void", f"""
BEGIN
    IF NOT {self.own('lock')}(ARRAY[the_exp]) THEN
        RETURN;
    END IF;
    {deletes}
    INSERT INTO {self.own('marks')} VALUES (the_exp, ({at}), false);
    {self._fold(tables)};
END""")

    def _truncated_function(self) -> str:
        """After a TRUNCATE of any data table: every experiment refolded from what is left."""
        return self._function("truncated", "", "trigger", f"""
DECLARE
    the_exp text;
BEGIN
    TRUNCATE {self.own_tables()};
    FOR the_exp IN SELECT key FROM ({self._experiments()}) AS keys (key) WHERE key IS NOT NULL ORDER BY 1 LOOP
        PERFORM {self.own('refold')}(the_exp);
    END LOOP;
    RETURN NULL;
END""")

    def _trigger_function(self, table: str) -> str:
        """After INSERT: fold the new rows, every experiment in one statement (a filter per experiment would
        leave the planner estimating one row of the transition table, and joining the fold's steps by nested loops:
        quadratic in the batch); a stale experiment is folded too, harmlessly, as its refold starts afresh. After
        UPDATE or DELETE: refold the experiments named by the old (and new) rows."""
        exp = self.column(table, "exp_key")
        batch = Source(*(self._columns(other, "new_rows", f"{exp} IS NOT NULL") if other == table else
                         self._columns(other, self.data(other), "false") for other in DATA_TABLES))
        latest = "NULL::integer" if table == "pre_period" else f"max({self.column(table, 'at_s')})"
        refold = f"PERFORM {self.own('refold')}(the_exp);"
        return self._function(f"on_{table}", "", "trigger", f"""
DECLARE
    the_exp text;
BEGIN
    IF TG_OP = 'INSERT' THEN
        IF {self.own('lock')}(ARRAY(SELECT DISTINCT {exp}::text FROM new_rows WHERE {exp} IS NOT NULL)) THEN
            INSERT INTO {self.own('marks')} AS m SELECT {exp}::text, {latest}, false FROM new_rows
                WHERE {exp} IS NOT NULL GROUP BY 1
                ON CONFLICT (exp_key) DO UPDATE SET max_at_s = greatest(m.max_at_s, excluded.max_at_s);
            {self._fold(batch)};
        END IF;
    ELSIF TG_OP = 'UPDATE' THEN
        FOR the_exp IN SELECT {exp}::text FROM old_rows UNION SELECT {exp}::text FROM new_rows ORDER BY 1 LOOP
            CONTINUE WHEN the_exp IS NULL;
            {refold}
        END LOOP;
    ELSE
        FOR the_exp IN SELECT DISTINCT {exp}::text FROM old_rows WHERE {exp} IS NOT NULL ORDER BY 1 LOOP
            {refold}
        END LOOP;
    END IF;
    RETURN NULL;
END""")

    def _triggers(self) -> list[str]:
        statements: list[str] = []
        for table in DATA_TABLES:
            function = self.own(f"on_{table}")
            for event in EVENTS:
                name = sql.Identifier(f"{PREFIX}{event}").as_string()
                transition = {"insert": " REFERENCING NEW TABLE AS new_rows",
                              "update": " REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows",
                              "delete": " REFERENCING OLD TABLE AS old_rows", "truncate": ""}[event]
                run = self.own("truncated") if event == "truncate" else function
                statements += [f"CREATE OR REPLACE TRIGGER {name} AFTER {event.upper()} ON {self.data(table)}"
                               f"{transition} FOR EACH STATEMENT EXECUTE FUNCTION {run}()",
                               f"ALTER TABLE {self.data(table)} ENABLE TRIGGER {name}"]
        return statements

    # --- the fold --------------------------------------------------------------------------------------------

    def _columns(self, table: str, relation: str, where: str) -> str:
        """`relation`'s rows that match `where`, in `table`'s layout, as the fold's columns."""
        listed = ", ".join([f"{self.column(table, 'exp_key')}::text AS exp_key",
                            *(f"{self.t.q(key)} AS {name}" for name, key in self.t.columns(table).items()
                              if name != "exp_key")])
        return f"(SELECT {listed} FROM {relation} WHERE {where})"

    def _fold(self, src: Source) -> str:
        """One statement folding the rows of `src` (any experiments) into the rollup: the touched users' old state
        is read, the arms get (new - old) contributions, the users and values their new state. Sub-statements of
        one statement share a snapshot, so every part reads the state before the fold."""
        zeros = ", ".join(["0"] * (len(SUMS) - 1))
        arms = self.own("arms")
        return f"""WITH {_batch_sql(src)},
    moved AS (
        SELECT t.exp_key, t.user_id, o.arm AS old_arm, least(o.arm, t.arm) AS new_arm, o.user_id IS NOT NULL AS known
        FROM touched AS t LEFT JOIN {self.own('users')} AS o ON o.exp_key = t.exp_key AND o.user_id = t.user_id),
    user_values AS (
        SELECT m.exp_key, m.user_id, m.old_arm, m.new_arm, v.metric, coalesce(v.y, 0) AS old_y, v.x AS old_x,
               coalesce(v.y, 0) + coalesce(v.dy, 0) AS new_y,
               CASE WHEN v.x IS NULL AND v.dx IS NULL THEN NULL ELSE coalesce(v.x, 0) + coalesce(v.dx, 0) END AS new_x,
               v.changed
        FROM (SELECT coalesce(o.exp_key, b.exp_key) AS exp_key, coalesce(o.user_id, b.user_id) AS user_id,
                     coalesce(o.metric, b.metric) AS metric, o.y, o.x, b.dy, b.dx, b.user_id IS NOT NULL AS changed
              FROM (SELECT o.exp_key, o.user_id, o.metric, o.y, o.x FROM touched AS t JOIN {self.own('values')} AS o
                    ON o.exp_key = t.exp_key AND o.user_id = t.user_id) AS o
                   FULL JOIN batch_values AS b
                   ON b.exp_key = o.exp_key AND b.user_id = o.user_id AND b.metric = o.metric) AS v
             JOIN moved AS m ON m.exp_key = v.exp_key AND m.user_id = v.user_id),
    terms (exp_key, arm, metric, {', '.join(SUMS)}, at_s) AS (
        SELECT exp_key, new_arm, NULL::text, 1, {zeros}, NULL::integer FROM moved WHERE new_arm IS NOT NULL
        UNION ALL SELECT exp_key, old_arm, NULL, -1, {zeros}, NULL FROM moved WHERE old_arm IS NOT NULL
        UNION ALL SELECT exp_key, NULL, metric::text, 1, {zeros}, NULL FROM {src.pre_period} AS p
        UNION ALL SELECT exp_key, NULL, NULL, 0, {zeros}, max(at_s) FROM {src.exposures} AS x GROUP BY exp_key
        UNION ALL SELECT exp_key, NULL, metric::text, 0, {zeros}, max(at_s) FROM {src.events} AS e
        GROUP BY exp_key, metric
        UNION ALL SELECT exp_key, new_arm, metric, 0, {_CONTRIBUTION.format(sign="", y="new_y", x="new_x")}, NULL
        FROM user_values WHERE new_arm IS NOT NULL
        UNION ALL SELECT exp_key, old_arm, metric, 0, {_CONTRIBUTION.format(sign="-", y="old_y", x="old_x")}, NULL
        FROM user_values WHERE old_arm IS NOT NULL),
    users_written AS (
        INSERT INTO {self.own('users')} AS u SELECT exp_key, user_id, new_arm FROM moved
        WHERE NOT known OR new_arm IS DISTINCT FROM old_arm
        ON CONFLICT (exp_key, user_id) DO UPDATE SET arm = excluded.arm),
    values_written AS (
        INSERT INTO {self.own('values')} AS v SELECT exp_key, user_id, metric, new_y, new_x FROM user_values
        WHERE changed
        ON CONFLICT (exp_key, user_id, metric) DO UPDATE SET y = excluded.y, x = excluded.x)
    INSERT INTO {arms} AS a SELECT exp_key, arm, metric, {', '.join(f'sum({name})' for name in SUMS)}, max(at_s)
    FROM terms GROUP BY exp_key, arm, metric
    ON CONFLICT (exp_key, arm, metric) DO UPDATE SET {', '.join(f'{name} = a.{name} + excluded.{name}'
                                                                 for name in SUMS)},
        max_at_s = greatest(a.max_at_s, excluded.max_at_s)"""


async def install(conn: psycopg.AsyncConnection[Any], tables: WarehouseTables, schema_lock: str) -> None:
    """Install (or update) the rollup on `tables` in one transaction under `schema_lock`, folding what is not
    folded yet."""
    [(version,)] = await (await conn.execute("SELECT current_setting('server_version_num')::int")).fetchall()
    if version < MINIMUM_SERVER:
        raise AdapterConfigError(f"[postgres] rollup needs PostgreSQL 15 or newer (this server is {version}); "
                                 "set rollup = false")
    async with conn.transaction():
        await conn.execute("SET TRANSACTION ISOLATION LEVEL READ COMMITTED")  # whatever the server's default
        await conn.execute(schema_lock)
        rollup = await Rollup.resolve(conn, tables)
        nullable = await rollup.nullable_columns(conn)
        if nullable:
            raise AdapterConfigError(
                "[postgres] rollup needs every column it reads NOT NULL (a NULL user, arm or time would be folded "
                "where the statistics statement leaves it out, or stop the loader's statement): "
                + "; ".join(f"ALTER TABLE {table} ALTER COLUMN {column} SET NOT NULL" for table, column in nullable))
        [(enabled,)] = await (await conn.execute(rollup.triggers_enabled())).fetchall()
        for statement in rollup.install_sql(fold_all=enabled != TRIGGER_COUNT):
            await conn.execute(statement)
