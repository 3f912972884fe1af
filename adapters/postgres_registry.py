"""The experiment registry in PostgreSQL, for teams that run several workers: registrations, runs and
max_concurrent accounting with the embedded registry's semantics (adapters/local_registry.py: the same ids, the same
refusals, a run stops once).
"""

from __future__ import annotations

from typing import Any

from psycopg import AsyncConnection

from abrollout.contracts.tools import RegisterExperimentArgs
from abrollout.ids import digest
from abrollout.policy import cite
from adapters.local_registry import release_id
from adapters.postgres_metrics import Database, TableCheck
from adapters.protocols import ConcurrencyRefused, OpenExperiment, Registered

EXPERIMENTS, RUNS = "abrollout_experiments", "abrollout_runs"
SCHEMA = (
    f"""CREATE TABLE IF NOT EXISTS {EXPERIMENTS} (
    exp_id text PRIMARY KEY,
    exp_key text NOT NULL UNIQUE,
    domain text NOT NULL,
    idempotency_key text NOT NULL UNIQUE,
    args_json text NOT NULL,
    status text NOT NULL CHECK (status IN ('running', 'stopped'))
)""",
    f"CREATE INDEX IF NOT EXISTS {EXPERIMENTS}_domain_status ON {EXPERIMENTS} (domain, status)",
    f"""CREATE TABLE IF NOT EXISTS {RUNS} (
    run_id text PRIMARY KEY,
    exp_id text NOT NULL REFERENCES {EXPERIMENTS} (exp_id),
    run_name text NOT NULL,
    population text NOT NULL,
    idempotency_key text NOT NULL UNIQUE,
    stop_id text,
    stop_key text UNIQUE,
    stop_reason text
)""",
)
_COLUMNS = {
    EXPERIMENTS: ("exp_id", "exp_key", "domain", "idempotency_key", "args_json", "status"),
    RUNS: ("run_id", "exp_id", "run_name", "population", "idempotency_key", "stop_id", "stop_key", "stop_reason"),
}
_ORIGIN = "created by ensure_schema ([postgres] create_tables = true) or the README's SQL"


class PostgresRegistry:
    """A `Registry` every worker connected to the database shares (the tables: `SCHEMA`)."""

    name = "postgres"

    def __init__(self, dsn: str, min_pool: int = 1, max_pool: int = 4, *, timeout: float = 30.0,
                 statement_timeout: float = 30.0) -> None:
        self._db = Database(dsn, min_pool, max_pool, timeout, statement_timeout)

    async def open(self) -> None:
        await self._db.open()

    async def close(self) -> None:
        await self._db.close()

    async def check(self) -> None:
        """Start-up validation: the server answers, and the registry's tables exist and may be read and written."""
        await self._db.check([
            TableCheck(name=table, origin=_ORIGIN, columns=dict.fromkeys(columns, _ORIGIN),
                       privileges=("SELECT", "INSERT", "UPDATE"))
            for table, columns in _COLUMNS.items()])

    async def ensure_schema(self) -> None:
        await self._db.create(SCHEMA)

    async def register(self, args: RegisterExperimentArgs, idempotency_key: str) -> str:
        """The domain's advisory lock (transaction-scoped) is taken before counting its running experiments and
        inserting, so workers registering in one domain at once cannot both take the last slot (concurrency.1);
        other domains do not wait, and a lock wait ends at the statement timeout."""
        async with self._db.pool.connection() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext('abrollout.registry'), hashtext(%s))",
                               [args.domain])
            row = await _one(conn, f"SELECT exp_id, idempotency_key, status FROM {EXPERIMENTS} WHERE exp_key = %s",
                             args.exp_key)
            if row is not None:
                exp_id, key, status = row
                if key == idempotency_key and status == "running":
                    return str(exp_id)
                raise ConcurrencyRefused(f"an experiment named {args.exp_key} was already registered ({exp_id}, "
                                         f"{status}); give this one a new name")
            running = await _value(conn, f"SELECT count(*) FROM {EXPERIMENTS} WHERE domain = %s AND "
                                         "status = 'running'", args.domain)
            if running >= args.max_concurrent:
                raise ConcurrencyRefused(f"{running} {args.domain} experiments are running and max_concurrent is "
                                         f"{args.max_concurrent} [{cite('concurrency.1')}]")
            exp_id = f"EXP-{digest(args.exp_key, 10).upper()}"
            await conn.execute(f"INSERT INTO {EXPERIMENTS} VALUES (%s, %s, %s, %s, %s, 'running')",
                               [exp_id, args.exp_key, args.domain, idempotency_key, args.model_dump_json()])
            return exp_id

    async def get(self, exp_id: str) -> Registered:
        async with self._db.pool.connection() as conn:
            args = await _value(conn, f"SELECT args_json FROM {EXPERIMENTS} WHERE exp_id = %s", exp_id)
        if args is None:
            raise LookupError(f"experiment {exp_id} is not registered")
        return Registered(exp_id=exp_id, args=RegisterExperimentArgs.model_validate_json(args))

    async def start_run(self, exp_id: str, run_name: str, population: str, idempotency_key: str) -> str:
        """The run id. The experiment's advisory lock makes the check for an earlier call and the insert one step,
        so a retry racing the first call returns the same run."""
        async with self._db.pool.connection() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext('abrollout.runs'), hashtext(%s))", [exp_id])
            existing = await _value(conn, f"SELECT run_id FROM {RUNS} WHERE idempotency_key = %s", idempotency_key)
            if existing is not None:
                return str(existing)
            if await _value(conn, f"SELECT 1 FROM {EXPERIMENTS} WHERE exp_id = %s", exp_id) is None:
                raise LookupError(f"experiment {exp_id} is not registered")
            run_id = f"RUN-{digest([exp_id, run_name], 10).upper()}"
            await conn.execute(f"INSERT INTO {RUNS} (run_id, exp_id, run_name, population, idempotency_key) "
                               "VALUES (%s, %s, %s, %s, %s)", [run_id, exp_id, run_name, population, idempotency_key])
            return run_id

    async def stop_run(self, run_id: str, reason: str, idempotency_key: str) -> str:
        """The stop record's id. The run's row is locked first, so of two racing stops the second returns the
        first's receipt (a run stops once)."""
        async with self._db.pool.connection() as conn, conn.transaction():
            return await _stop_run(conn, run_id, reason, idempotency_key)

    async def open_experiments(self) -> list[OpenExperiment]:
        async with self._db.pool.connection() as conn:
            rows = await (await conn.execute(f"SELECT exp_id, exp_key FROM {EXPERIMENTS} WHERE status = 'running' "
                                             "ORDER BY exp_key")).fetchall()
        return [OpenExperiment(exp_id=str(exp_id), exp_key=str(exp_key)) for exp_id, exp_key in rows]

    async def release(self, exp_id: str, reason: str, idempotency_key: str) -> str:
        async with self._db.pool.connection() as conn, conn.transaction():
            if await _one(conn, f"SELECT 1 FROM {EXPERIMENTS} WHERE exp_id = %s FOR UPDATE", exp_id) is None:
                raise LookupError(f"experiment {exp_id} is not registered")
            run_id = await _value(conn, f"SELECT run_id FROM {RUNS} WHERE exp_id = %s ORDER BY run_id DESC LIMIT 1",
                                  exp_id)
            if run_id is not None:
                return await _stop_run(conn, str(run_id), reason, idempotency_key)
            await conn.execute(f"UPDATE {EXPERIMENTS} SET status = 'stopped' WHERE exp_id = %s", [exp_id])
            return release_id(exp_id, idempotency_key)


async def _stop_run(conn: AsyncConnection[Any], run_id: str, reason: str, idempotency_key: str) -> str:
    row = await _one(conn, f"SELECT exp_id, stop_id FROM {RUNS} WHERE run_id = %s FOR UPDATE", run_id)
    if row is None:
        raise LookupError(f"run {run_id} does not exist")
    exp_id, stop_id = row
    if stop_id is not None:
        return str(stop_id)
    stop_id = f"STOP-{digest([run_id, idempotency_key], 10).upper()}"
    await conn.execute(f"UPDATE {RUNS} SET stop_id = %s, stop_key = %s, stop_reason = %s WHERE run_id = %s",
                       [stop_id, idempotency_key, reason, run_id])
    await conn.execute(f"UPDATE {EXPERIMENTS} SET status = 'stopped' WHERE exp_id = %s", [exp_id])
    return str(stop_id)


async def _one(conn: AsyncConnection[Any], query: str, param: str) -> tuple[Any, ...] | None:
    row: tuple[Any, ...] | None = await (await conn.execute(query, [param])).fetchone()
    return row


async def _value(conn: AsyncConnection[Any], query: str, param: str) -> Any:
    """The first column of the first row, None without rows."""
    row = await _one(conn, query, param)
    return None if row is None else row[0]
