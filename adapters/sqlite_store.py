"""SQLite for the embedded stores: one file per store under ABROLLOUT_DATA_DIR, safe across processes.

WAL lets readers run beside a writer: writes take the lock up front (`run`), reads take none (`read`).
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


class SqliteStore:
    def __init__(self, path: Path, schema: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._local = threading.local()
        con = self._connection()
        con.execute("PRAGMA journal_mode=WAL")
        con.executescript(schema)

    def _connection(self) -> sqlite3.Connection:
        """This thread's connection to the store, opened on first use: opening one per call cost more than the query
        it ran (a check reads two stores)."""
        con: sqlite3.Connection | None = getattr(self._local, "con", None)
        if con is None:
            con = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            con.row_factory = sqlite3.Row
            con.execute("PRAGMA busy_timeout=30000")
            self._local.con = con
        return con

    async def run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run `work` in a write transaction on a worker thread, so the event loop never blocks on the lock.
        `BEGIN IMMEDIATE` takes the lock up front, so a read-check-write (is this key applied? is the domain
        full?) cannot interleave with another worker's."""
        return await asyncio.to_thread(self._in_transaction, work, "BEGIN IMMEDIATE")

    async def read(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run read-only `work` on one consistent snapshot, without the write lock, on a worker thread: a deferred
        transaction reads one WAL snapshot, so reads never queue behind each other or behind a writer."""
        return await asyncio.to_thread(self._in_transaction, work, "BEGIN")

    def _in_transaction(self, work: Callable[[sqlite3.Connection], T], begin: str) -> T:
        """`work` in one transaction on this thread's connection; rolled back on any error."""
        con = self._connection()
        try:
            con.execute(begin)
            result = work(con)
            con.execute("COMMIT")
            return result
        except BaseException:
            if con.in_transaction:
                con.execute("ROLLBACK")
            raise
