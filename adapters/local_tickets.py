"""The embedded ticket system: tickets in SQLite, one per idempotency key."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from abrollout.contracts.tools import OpenTicketArgs
from adapters.sqlite_store import SqliteStore

SCHEMA = """
CREATE TABLE IF NOT EXISTS tickets (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    ticket_id TEXT NOT NULL UNIQUE,
    idempotency_key TEXT NOT NULL UNIQUE,
    exp_key TEXT NOT NULL,
    title TEXT NOT NULL,
    description TEXT NOT NULL,
    severity TEXT NOT NULL,
    owners_json TEXT NOT NULL
);
"""


def _open(con: sqlite3.Connection, args: OpenTicketArgs, key: str) -> str:
    row = con.execute("SELECT ticket_id FROM tickets WHERE idempotency_key = ?", (key,)).fetchone()
    if row is not None:
        return str(row["ticket_id"])
    seq = con.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM tickets").fetchone()[0]
    ticket_id = f"TCK-{seq:05d}"
    con.execute("INSERT INTO tickets VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (seq, ticket_id, key, args.exp_key, args.title, args.description, args.severity,
                 json.dumps(args.owners)))
    return ticket_id


class LocalTickets:
    name = "local"

    def __init__(self, path: Path) -> None:
        self.store = SqliteStore(path, SCHEMA)

    async def open(self, args: OpenTicketArgs, idempotency_key: str) -> str:
        return await self.store.run(lambda con: _open(con, args, idempotency_key))

    async def list(self, exp_key: str) -> list[dict[str, str]]:
        def work(con: sqlite3.Connection) -> list[dict[str, str]]:
            rows = con.execute("SELECT ticket_id, title, severity, idempotency_key FROM tickets WHERE exp_key = ? "
                               "ORDER BY seq", (exp_key,)).fetchall()
            return [dict(r) for r in rows]

        return await self.store.read(work)
