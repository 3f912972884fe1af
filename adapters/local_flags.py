"""The embedded flag provider: flags in SQLite, evaluated exactly as Unleash would (abrollout.flags.evaluate).

Every change is a row keyed by its idempotency key (UNIQUE), written in the same transaction as the new
state, so a change is applied at most once per key whatever crashes or retries happen around it.
Change ids are per-flag sequence numbers, like an event log.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from abrollout.flags.evaluate import FlagState
from adapters.protocols import Change
from adapters.sqlite_store import SqliteStore

SCHEMA = """
CREATE TABLE IF NOT EXISTS flags (
    flag_key TEXT PRIMARY KEY,
    description TEXT NOT NULL,
    state_json TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS changes (
    change_id TEXT PRIMARY KEY,
    flag_key TEXT NOT NULL REFERENCES flags(flag_key),
    seq INTEGER NOT NULL,
    idempotency_key TEXT NOT NULL UNIQUE,
    reason TEXT NOT NULL,
    state_json TEXT NOT NULL,
    UNIQUE (flag_key, seq)
);
"""


def _change(row: sqlite3.Row | None) -> Change | None:
    return Change(change_id=row["change_id"], idempotency_key=row["idempotency_key"]) if row else None


def _find(con: sqlite3.Connection, key: str) -> Change | None:
    return _change(con.execute("SELECT change_id, idempotency_key FROM changes WHERE idempotency_key = ?",
                               (key,)).fetchone())


def _append(con: sqlite3.Connection, flag_key: str, state: FlagState, key: str, reason: str) -> Change:
    seq = con.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM changes WHERE flag_key = ?", (flag_key,)).fetchone()[0]
    change_id = f"chg-{flag_key}-{seq}"
    body = state.model_dump_json()
    con.execute("INSERT INTO changes VALUES (?, ?, ?, ?, ?, ?)", (change_id, flag_key, seq, key, reason, body))
    con.execute("UPDATE flags SET state_json = ? WHERE flag_key = ?", (body, flag_key))
    return Change(change_id=change_id, idempotency_key=key)


class LocalFlags:
    name = "local"

    def __init__(self, path: Path) -> None:
        self.store = SqliteStore(path, SCHEMA)

    async def create_flag(self, flag_key: str, description: str, idempotency_key: str) -> Change:
        def work(con: sqlite3.Connection) -> Change:
            existing = _find(con, idempotency_key)
            if existing:
                return existing
            initial = FlagState(name=flag_key, enabled=False)
            con.execute("INSERT OR IGNORE INTO flags VALUES (?, ?, ?)",
                        (flag_key, description, initial.model_dump_json()))
            return _append(con, flag_key, initial, idempotency_key, "create flag (no exposure)")

        return await self.store.run(work)

    async def apply(self, flag_key: str, desired: FlagState, idempotency_key: str, reason: str) -> Change:
        def work(con: sqlite3.Connection) -> Change:
            existing = _find(con, idempotency_key)
            if existing:
                return existing
            if con.execute("SELECT 1 FROM flags WHERE flag_key = ?", (flag_key,)).fetchone() is None:
                raise LookupError(f"flag {flag_key} does not exist")
            return _append(con, flag_key, desired, idempotency_key, reason)

        return await self.store.run(work)

    async def find_change(self, idempotency_key: str) -> Change | None:
        return await self.store.read(lambda con: _find(con, idempotency_key))

    async def read(self, flag_key: str) -> FlagState | None:
        def work(con: sqlite3.Connection) -> FlagState | None:
            row = con.execute("SELECT state_json FROM flags WHERE flag_key = ?", (flag_key,)).fetchone()
            return FlagState.model_validate_json(row["state_json"]) if row else None

        return await self.store.read(work)

    async def changes(self, flag_key: str) -> list[tuple[str, str, str]]:
        """The change log of a flag: (change id, idempotency key, reason), oldest first."""

        def work(con: sqlite3.Connection) -> list[tuple[str, str, str]]:
            rows = con.execute("SELECT change_id, idempotency_key, reason FROM changes WHERE flag_key = ? ORDER BY seq",
                               (flag_key,)).fetchall()
            return [(r["change_id"], r["idempotency_key"], r["reason"]) for r in rows]

        return await self.store.read(work)
