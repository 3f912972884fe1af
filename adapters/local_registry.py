"""The embedded experiment registry: registrations, runs and max_concurrent accounting in SQLite.

Registration counts the domain's running experiments and inserts in one `BEGIN IMMEDIATE` transaction, so
two experiments started in the same second cannot both take the last slot (concurrency.1).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from abrollout.contracts.tools import RegisterExperimentArgs
from abrollout.ids import digest
from abrollout.policy import cite
from adapters.protocols import ConcurrencyRefused, OpenExperiment, Registered
from adapters.sqlite_store import SqliteStore

SCHEMA = """
CREATE TABLE IF NOT EXISTS experiments (
    exp_id TEXT PRIMARY KEY,
    exp_key TEXT NOT NULL UNIQUE,
    domain TEXT NOT NULL,
    idempotency_key TEXT NOT NULL UNIQUE,
    args_json TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('running', 'stopped'))
);
CREATE INDEX IF NOT EXISTS experiments_domain_status ON experiments(domain, status);
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    exp_id TEXT NOT NULL REFERENCES experiments(exp_id),
    run_name TEXT NOT NULL,
    population TEXT NOT NULL,
    idempotency_key TEXT NOT NULL UNIQUE,
    stop_id TEXT,
    stop_key TEXT UNIQUE,
    stop_reason TEXT
);
"""


def _register(con: sqlite3.Connection, args: RegisterExperimentArgs, key: str) -> str:
    row = con.execute("SELECT exp_id, idempotency_key, status FROM experiments WHERE exp_key = ?",
                      (args.exp_key,)).fetchone()
    if row is not None:
        if row["idempotency_key"] == key and row["status"] == "running":
            return str(row["exp_id"])
        raise ConcurrencyRefused(f"an experiment named {args.exp_key} was already registered ({row['exp_id']}, "
                                 f"{row['status']}); give this one a new name")
    running = con.execute("SELECT COUNT(*) FROM experiments WHERE domain = ? AND status = 'running'",
                          (args.domain,)).fetchone()[0]
    if running >= args.max_concurrent:
        raise ConcurrencyRefused(f"{running} {args.domain} experiments are running and max_concurrent is "
                                 f"{args.max_concurrent} [{cite('concurrency.1')}]")
    exp_id = f"EXP-{digest(args.exp_key, 10).upper()}"
    con.execute("INSERT INTO experiments VALUES (?, ?, ?, ?, ?, 'running')",
                (exp_id, args.exp_key, args.domain, key, args.model_dump_json()))
    return exp_id


def _start_run(con: sqlite3.Connection, exp_id: str, run_name: str, population: str, key: str) -> str:
    row = con.execute("SELECT run_id FROM runs WHERE idempotency_key = ?", (key,)).fetchone()
    if row is not None:
        return str(row["run_id"])
    if con.execute("SELECT 1 FROM experiments WHERE exp_id = ?", (exp_id,)).fetchone() is None:
        raise LookupError(f"experiment {exp_id} is not registered")
    run_id = f"RUN-{digest([exp_id, run_name], 10).upper()}"
    con.execute("INSERT INTO runs (run_id, exp_id, run_name, population, idempotency_key) VALUES (?, ?, ?, ?, ?)",
                (run_id, exp_id, run_name, population, key))
    return run_id


def release_id(exp_id: str, key: str) -> str:
    """The stop id of an experiment released before it started a run: nothing is stored but the status, so the
    id is derived, the same on every release."""
    return f"STOP-{digest([exp_id, key], 10).upper()}"


def _stop_run(con: sqlite3.Connection, run_id: str, reason: str, key: str) -> str:
    row = con.execute("SELECT exp_id, stop_id FROM runs WHERE run_id = ?", (run_id,)).fetchone()
    if row is None:
        raise LookupError(f"run {run_id} does not exist")
    if row["stop_id"] is not None:
        return str(row["stop_id"])  # a run stops once; a second stop returns the first receipt
    stop_id = f"STOP-{digest([run_id, key], 10).upper()}"
    con.execute("UPDATE runs SET stop_id = ?, stop_key = ?, stop_reason = ? WHERE run_id = ?",
                (stop_id, key, reason, run_id))
    con.execute("UPDATE experiments SET status = 'stopped' WHERE exp_id = ?", (row["exp_id"],))
    return stop_id


def _release(con: sqlite3.Connection, exp_id: str, reason: str, key: str) -> str:
    run = con.execute("SELECT run_id FROM runs WHERE exp_id = ? ORDER BY rowid DESC LIMIT 1", (exp_id,)).fetchone()
    if run is not None:
        return _stop_run(con, str(run["run_id"]), reason, key)
    if con.execute("SELECT 1 FROM experiments WHERE exp_id = ?", (exp_id,)).fetchone() is None:
        raise LookupError(f"experiment {exp_id} is not registered")
    con.execute("UPDATE experiments SET status = 'stopped' WHERE exp_id = ?", (exp_id,))
    return release_id(exp_id, key)


class LocalRegistry:
    name = "local"

    def __init__(self, path: Path) -> None:
        self.store = SqliteStore(path, SCHEMA)

    async def register(self, args: RegisterExperimentArgs, idempotency_key: str) -> str:
        return await self.store.run(lambda con: _register(con, args, idempotency_key))

    async def get(self, exp_id: str) -> Registered:
        def work(con: sqlite3.Connection) -> Registered:
            row = con.execute("SELECT args_json FROM experiments WHERE exp_id = ?", (exp_id,)).fetchone()
            if row is None:
                raise LookupError(f"experiment {exp_id} is not registered")
            return Registered(exp_id=exp_id, args=RegisterExperimentArgs.model_validate_json(row["args_json"]))

        return await self.store.read(work)

    async def start_run(self, exp_id: str, run_name: str, population: str, idempotency_key: str) -> str:
        return await self.store.run(lambda con: _start_run(con, exp_id, run_name, population, idempotency_key))

    async def stop_run(self, run_id: str, reason: str, idempotency_key: str) -> str:
        return await self.store.run(lambda con: _stop_run(con, run_id, reason, idempotency_key))

    async def open_experiments(self) -> list[OpenExperiment]:
        def work(con: sqlite3.Connection) -> list[OpenExperiment]:
            rows = con.execute("SELECT exp_id, exp_key FROM experiments WHERE status = 'running' ORDER BY exp_key")
            return [OpenExperiment(exp_id=str(r["exp_id"]), exp_key=str(r["exp_key"])) for r in rows]

        return await self.store.read(work)

    async def release(self, exp_id: str, reason: str, idempotency_key: str) -> str:
        return await self.store.run(lambda con: _release(con, exp_id, reason, idempotency_key))

    async def running(self, domain: str) -> list[str]:
        """Keys of the experiments that count towards max_concurrent in `domain`."""

        def work(con: sqlite3.Connection) -> list[str]:
            rows = con.execute("SELECT exp_key FROM experiments WHERE domain = ? AND status = 'running'",
                               (domain,)).fetchall()
            return [str(r["exp_key"]) for r in rows]

        return await self.store.read(work)
