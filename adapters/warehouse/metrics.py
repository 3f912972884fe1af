"""A `MetricsSource` over any warehouse engine: the generator's SQL, the rollup first, the full statement as the
reference and the fallback.

A check refreshes the experiment's rollup (what was loaded since the last check) and reads its per-arm sums; it
answers from them when every row folded in is inside the window. Otherwise (an earlier window, a replayed look, a
source without `loaded_at`), and always for the record, the full statement is what the snapshot names.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

from abrollout.warehouse.catalog import BUILT_IN, Catalog
from abrollout.warehouse.dialects import Value, render
from abrollout.warehouse.layout import Layout
from abrollout.warehouse.results import ArmSums, from_rollup, from_statement
from abrollout.warehouse.rollup import NO_ATTEMPT, Commit, RollupStatements, committed_chain, tables
from abrollout.warehouse.statistics import statistics_template
from adapters.protocols import MetricsSnapshot, Registered
from adapters.warehouse.aggregate import Aggregate
from adapters.warehouse.engine import Engine

NO_WATERMARK = -1
"""The watermark before a source's first refresh: `loaded_at` values are whole numbers from 0."""


@dataclass(frozen=True)
class Statements:
    """One set of metrics' statements (templates), built once: generating them parses every definition."""

    layout: Layout
    prefix: str

    @cached_property
    def statistics(self) -> str:
        return statistics_template(self.layout)

    @cached_property
    def rollup(self) -> RollupStatements:
        return RollupStatements(self.layout, self.prefix)

    @cached_property
    def marks(self) -> str:
        return self.rollup.marks()

    @cached_property
    def highs(self) -> str:
        return self.rollup.highs()

    @cached_property
    def stage(self) -> str:
        return self.rollup.fold_users()

    @cached_property
    def bounds(self) -> str:
        return self.rollup.bounds()

    @cached_property
    def fold_sums(self) -> str:
        return self.rollup.fold_sums()

    @cached_property
    def mark(self) -> str:
        return self.rollup.mark(self.rollup.sources)

    @cached_property
    def read(self) -> str:
        return self.rollup.read()


class WarehouseMetrics:
    """Statistics from `engine` for metrics defined in `catalog`. `incremental`: keep and use the rollup (its
    tables are created in the warehouse, named `prefix` + marks/users/sums)."""

    def __init__(self, engine: Engine, catalog: Catalog = BUILT_IN, *, incremental: bool = True,
                 prefix: str = "abrollout_rollup_") -> None:
        self.engine, self.catalog, self.incremental, self.prefix = engine, catalog, incremental, prefix
        self.name = engine.name
        self._statements: dict[tuple[str, ...], Statements] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()
        self._created = False

    async def snapshot(self, registered: Registered, run_id: str, at_seconds: int,
                       metrics: list[str]) -> MetricsSnapshot:
        """Cumulative statistics from the run's start to `at_seconds`; one run per experiment, so `run_id`
        selects nothing."""
        args = registered.args
        result = await asyncio.to_thread(self.aggregate, args.exp_key, metrics, at_seconds, args.arms)
        return result.snapshot()

    def statement(self, exp_key: str, metrics: Sequence[str], until_seconds: int) -> str:
        """The full statement for this window, as it runs on the engine."""
        return render(self.statements(metrics).statistics, self.engine.dialect,
                      {"abr_key": exp_key, "abr_until": int(until_seconds)})

    def statements(self, metrics: Sequence[str]) -> Statements:
        layout = Layout.keyed(self.catalog, metrics)
        with self._guard:
            if layout.names not in self._statements:
                self._statements[layout.names] = Statements(layout, self.prefix)
            return self._statements[layout.names]

    def aggregate(self, exp_key: str, metrics: Sequence[str], until_seconds: int,
                  arms: Sequence[str] = ()) -> Aggregate:
        """Per arm: users exposed by `until_seconds` and each metric's sums; `arms` appear even without users."""
        names = list(dict.fromkeys(metrics))
        statements = self.statements(names)
        record = self.statement(exp_key, names, until_seconds)
        sums = None
        if self.incremental and statements.layout.incremental:
            sums, folded = self.refresh(exp_key, names)
            if folded is not None and folded > until_seconds:
                sums = None
        if sums is None:
            sums = from_statement(self.engine.query(record), statements.layout)
        return Aggregate(assignments=sums.assignments(arms),
                         metrics=sums.metric_stats(statements.layout, names, arms),
                         queries=(record,), freshest_event_seconds=sums.freshest(names))

    def refresh(self, exp_key: str, metrics: Sequence[str]) -> tuple[ArmSums, int | None]:
        """Fold what was loaded since the last refresh into the experiment's rollup, then read it: the sums and
        the latest time folded in. One refresh of an experiment at a time in this process; refreshes in other
        processes may race, and the marks' chain decides which counts (`committed_chain`)."""
        statements = self.statements(metrics)
        self._create()
        key = self.rollup_key(exp_key, statements)
        with self._lock(str(key["abr_rollup"])):
            values = self.next_refresh(statements, key)
            if values is not None:
                self.fold(statements, values)
            chain = self.chain(statements, key)
            rows = self.engine.query(render(statements.read, self.engine.dialect, key | {"abr_chain": chain}))
        return from_rollup(rows, statements.layout)

    def fold(self, statements: Statements, values: dict[str, Value], *, commit: bool = True) -> None:
        """One refresh as `next_refresh` bound it: stage the new rows in the users ledger, fold the arms' change,
        then (with `commit`) the mark that makes both count."""
        dialect = self.engine.dialect
        self.engine.execute(render(statements.stage, dialect, values))
        [bounds] = self.engine.query(render(statements.bounds, dialect, values))
        values = values | {"abr_lo": str(bounds["lo"] or ""), "abr_hi": str(bounds["hi"] or "")}
        self.engine.execute(render(statements.fold_sums, dialect, values))
        if commit:
            self.engine.execute(render(statements.mark, dialect, values))

    def rollup_key(self, exp_key: str, statements: Statements) -> dict[str, Value]:
        """The placeholders naming the experiment and its rollup (one per set of metric definitions)."""
        return {"abr_rollup": f"{exp_key}:{self.catalog.fingerprint(list(statements.layout.names))}",
                "abr_key": exp_key}

    def chain(self, statements: Statements, key: dict[str, Value]) -> tuple[str, ...]:
        """The attempts that count now, as the statements' `abr_chain`."""
        return _attempts(self._commits(statements, key))

    def next_refresh(self, statements: Statements, key: dict[str, Value]) -> dict[str, Value] | None:
        """What the next refresh binds: the chain it builds on, each source's watermark and the high mark it reads
        up to, a fresh attempt id and the next refresh number; None when nothing was loaded since the last one."""
        dialect, sources = self.engine.dialect, statements.rollup.sources
        commits = self._commits(statements, key)
        head = commits[0] if commits else Commit(0, NO_ATTEMPT, NO_ATTEMPT, {})
        low: dict[str, Value] = {f"abr_w_{s}": head.watermarks.get(s, NO_WATERMARK) for s in sources}
        found = {row["source"]: row["hi"] for row in self.engine.query(render(statements.highs, dialect, key | low))}
        if all(found.get(s) is None for s in sources):
            return None
        high = {f"abr_h_{s}": int(found[s]) if found.get(s) is not None else low[f"abr_w_{s}"] for s in sources}
        refresh_no = head.refresh_no + 1
        # led by the refresh number, attempt ids grow as the ledger is appended to: block min/max skip old rows
        attempt = f"{refresh_no:012d}-{uuid.uuid4().hex}"
        return key | low | high | {"abr_attempt": attempt, "abr_refresh": refresh_no, "abr_parent": head.attempt,
                                   "abr_chain": _attempts(commits)}

    def _commits(self, statements: Statements, key: dict[str, Value]) -> list[Commit]:
        return committed_chain(self.engine.query(render(statements.marks, self.engine.dialect, key)))

    def _create(self) -> None:
        with self._guard:
            if not self._created:
                self.engine.create_rollup(tables(self.prefix))
                self._created = True

    def _lock(self, rollup_key: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(rollup_key, threading.Lock())


def _attempts(commits: list[Commit]) -> tuple[str, ...]:
    """A chain's attempts for `IN (...)`, never empty."""
    return (NO_ATTEMPT, *(commit.attempt for commit in commits))
