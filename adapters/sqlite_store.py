"""SQLite for the embedded stores: one file per store under ABROLLOUT_DATA_DIR, safe across processes.

WAL lets readers run beside a writer, `BEGIN IMMEDIATE` takes the write lock up front so a
read-check-write (is this key applied? is the domain full?) cannot interleave with another worker's.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


class SqliteStore:
    def __init__(self, path: Path, schema: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        with self._connect() as con:
            con.execute("PRAGMA journal_mode=WAL")
            con.executescript(schema)

    def _connect(self) -> sqlite3.Connection:
        con = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        con.row_factory = sqlite3.Row
        con.execute("PRAGMA busy_timeout=30000")
        return con

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction holding the lock from its first statement; rolled back on any error."""
        con = self._connect()
        try:
            con.execute("BEGIN IMMEDIATE")
            yield con
            con.execute("COMMIT")
        except BaseException:
            if con.in_transaction:
                con.execute("ROLLBACK")
            raise
        finally:
            con.close()

    async def run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run `work` in a transaction on a worker thread, so the event loop never blocks on the lock."""

        def in_transaction() -> T:
            with self.transaction() as con:
                return work(con)

        return await asyncio.to_thread(in_transaction)
