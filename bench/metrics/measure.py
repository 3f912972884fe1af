"""One engine loaded with one size's rows, measured: the initial fold, the check after each fresh batch, the full
statement on the same rows, and the Python baseline; every answer compared with the full statement's, to the
integer."""

from __future__ import annotations

import re
import statistics
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from abrollout.warehouse.results import from_statement
from abrollout.warehouse.rollup import Table
from adapters.simulator import Rows
from adapters.warehouse.engine import Engine, Row
from adapters.warehouse.metrics import WarehouseMetrics
from bench.metrics.baseline import timed_baseline
from bench.metrics.data import ARMS, EXP, HORIZON, METRICS, Traffic
from bench.metrics.exact import Exact, difference, exact

ROLES = ("marks", "highs", "stage", "bounds", "fold sums", "mark", "read")
"""What a check's statements do, in the order a refresh first runs them (`role` tells them apart)."""
_WRITES = {"users": "stage", "sums": "fold sums", "marks": "mark"}


def role(sql: str, prefix: str) -> str:
    """A check's statement by what it does, from the rollup tables (`prefix` + marks, users, sums) it appends to
    or reads: the statements' text and order change as the rollup evolves; these roles have not."""
    kinds = ("marks", "users", "sums")
    # at a line's start, not the statement's: Spark SQL puts an INSERT's WITH clause first
    written = re.search(rf"^\s*INSERT INTO (?:TABLE )?{re.escape(prefix)}(\w+)", sql, re.MULTILINE)
    if written:
        return _WRITES.get(written.group(1), f"append to {written.group(1)}")
    read = {kind for kind in kinds if re.search(rf"\b{re.escape(prefix)}{kind}\b", sql)}
    if not read:
        return "highs"  # the new rows' loaded_at, in the source tables
    if read == {"marks"}:
        return "marks"
    return "read" if "sums" in read else "bounds"


class Bench(Protocol):
    """An engine holding one size's rows, as the bench drives it."""

    name: str
    metrics: WarehouseMetrics

    def append(self, rows: Rows) -> None:
        """Load one batch under the experiment's next `loaded_at`, as a pipeline would."""
        ...

    def fetch(self, sql: str) -> Iterable[tuple[Any, ...]]:
        """The query's rows streamed into Python through the engine's own client."""
        ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class Timing:
    median: float
    best: float
    runs: int

    @classmethod
    def of(cls, seconds: list[float]) -> Timing:
        return cls(statistics.median(seconds), min(seconds), len(seconds))


@dataclass
class Measured:
    """One row of the table. `problems` lists every answer that differed from the full statement's (or the
    baseline's), and a check the rollup did not answer; a row with problems fails whatever its times."""

    engine: str
    rows: int
    load: float
    fold: float = 0.0
    check: Timing | None = None
    full: Timing | None = None
    python: float | None = None
    steps: dict[str, float] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


class Recorder:
    """An engine that times every statement it passes on: where a check's time goes, on any engine."""

    def __init__(self, engine: Engine) -> None:
        self.inner = engine
        self.name, self.dialect = engine.name, engine.dialect
        self.calls: list[tuple[str, float]] = []

    @classmethod
    def install(cls, metrics: WarehouseMetrics) -> Recorder:
        recorder = cls(metrics.engine)
        metrics.engine = recorder
        return recorder

    def query(self, sql: str) -> list[Row]:
        started = time.perf_counter()
        rows = self.inner.query(sql)
        self.calls.append((sql, time.perf_counter() - started))
        return rows

    def execute(self, sql: str) -> None:
        started = time.perf_counter()
        self.inner.execute(sql)
        self.calls.append((sql, time.perf_counter() - started))

    def create_rollup(self, tables: Sequence[Table]) -> None:
        self.inner.create_rollup(tables)

    def close(self) -> None:
        self.inner.close()

    def take(self) -> list[tuple[str, float]]:
        calls, self.calls = self.calls, []
        return calls


def measure(bench: Bench, traffic: Traffic, runs: int, load: float, python: bool) -> Measured:
    """The initial fold (the first check folds every loaded row), then one unmeasured warm-up check and `runs`
    measured ones, each after a fresh batch; after each check the full statement on the same rows (its first
    run, after the fold, is its warm-up). With `python`, the baseline on the last rows."""
    metrics, measured = bench.metrics, Measured(bench.name, traffic.rows, load)
    recorder = Recorder.install(metrics)
    started = time.perf_counter()
    metrics.aggregate(EXP, METRICS, HORIZON - 1, ARMS)
    measured.fold = time.perf_counter() - started
    _compare(measured, "after the initial fold", _rollup(metrics, measured, HORIZON - 1),
             _statement(metrics, HORIZON - 1)[1])
    checks: list[float] = []
    fulls: list[float] = []
    steps: list[list[tuple[str, float]]] = []
    reference: Exact = {}
    for k in range(runs + 1):
        bench.append(traffic.hour(k))
        until = Traffic.until(k)
        recorder.take()
        started = time.perf_counter()
        metrics.aggregate(EXP, METRICS, until, ARMS)
        seconds = time.perf_counter() - started
        calls = recorder.take()
        ours = _rollup(metrics, measured, until)
        full_seconds, reference = _statement(metrics, until)
        _compare(measured, f"check {k}", ours, reference)
        if k:
            checks.append(seconds)
            fulls.append(full_seconds)
            steps.append(calls)
    measured.check, measured.full = Timing.of(checks), Timing.of(fulls)
    measured.steps = _steps(steps, checks, metrics.prefix)
    if python:
        measured.python, baseline = timed_baseline(bench.fetch, Traffic.until(runs))
        _compare(measured, "the Python baseline", baseline, reference)
    return measured


def _rollup(metrics: WarehouseMetrics, measured: Measured, until: int) -> Exact:
    """The rollup's answer as integers (a refresh with nothing new: it only reads); a problem if the rollup holds
    rows past the window (then the check ran the full statement instead)."""
    sums, folded = metrics.refresh(EXP, METRICS)
    if folded is None or folded > until:
        measured.problems.append(f"the rollup did not answer the window to {until} (latest folded: {folded})")
    return exact(sums)


def _statement(metrics: WarehouseMetrics, until: int) -> tuple[float, Exact]:
    """The full statement run through the engine, and its answer as integers."""
    sql = metrics.statement(EXP, METRICS, until)
    started = time.perf_counter()
    rows = metrics.engine.query(sql)
    seconds = time.perf_counter() - started
    return seconds, exact(from_statement(rows, metrics.statements(METRICS).layout))


def _compare(measured: Measured, what: str, ours: Exact, reference: Exact) -> None:
    if ours != reference:
        measured.problems.append(f"{what}: not the full statement's answer: {difference(ours, reference)}")


def _steps(calls: list[list[tuple[str, float]]], totals: list[float], prefix: str) -> dict[str, float]:
    """Median seconds per role over the measured checks (a role's statements summed within a check), and the rest
    of the check (Python: rendering, building the answer)."""
    per_check = []
    for run in calls:
        spent: dict[str, float] = {}
        for sql, seconds in run:
            spent[role(sql, prefix)] = spent.get(role(sql, prefix), 0.0) + seconds
        per_check.append(spent)
    names = sorted({name for spent in per_check for name in spent},
                   key=lambda name: ROLES.index(name) if name in ROLES else len(ROLES))
    found = {name: statistics.median(spent.get(name, 0.0) for spent in per_check) for name in names}
    rest = [total - sum(seconds for _, seconds in run) for run, total in zip(calls, totals, strict=True)]
    return found | {"the rest": statistics.median(rest)}
