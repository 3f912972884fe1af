"""What every warehouse engine must show, shared by its test module: the generator's SQL run there gives exactly
what the embedded DuckDB store and the Python definition give (the full statement and the incremental rollup, over
loads with late rows), the same verdicts on the golden scenarios, exact sums at the contract's largest values, and
a refresh that dies before its commit never counts.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray

from abrollout.contracts.tools import CheckResult
from abrollout.warehouse.dialects import render, string
from abrollout.warehouse.layout import VALUE_SCALE
from abrollout.warehouse.results import TERMS, from_statement
from abrollout.warehouse.rollup import Table, tables
from adapters.local_metrics import LocalMetrics
from adapters.simulator import Rows
from adapters.warehouse.aggregate import Aggregate
from adapters.warehouse.engine import Row
from adapters.warehouse.metrics import WarehouseMetrics
from tests.adapters.test_local_metrics import ARMS, Data, awkward_data, exact_reference, random_data
from tests.adapters.warehouse.scenarios import (
    DAY_HOURS,
    LoadingEngine,
    Scenario,
    daily_look,
    load_engine,
    load_local,
    look_sizes,
)

METRICS = ["revenue", "clicks", "it's", "absent"]
LARGEST = 10**14
"""The largest per-user total the contract allows, in micro-units (10**8 metric units)."""


def batches(data: Data) -> list[Data]:
    """`data` as three loads in time order; the last also carries late rows (every fifth event of the first 40
    minutes) and half the covariates."""
    late = {i for i, event in enumerate(data.events) if event[3] < 2400 and i % 5 == 0}

    def between(low: int, high: int) -> tuple[list[tuple[str, str, int]], list[tuple[str, str, float, int]]]:
        return ([e for e in data.exposures if low <= e[2] < high],
                [e for i, e in enumerate(data.events) if low <= e[3] < high and i not in late])

    (e1, m1), (e2, m2), (e3, m3) = between(0, 2400), between(2400, 4800), between(4800, 2**31)
    return [Data(e1, m1, data.pre[::2]), Data(e2, m2, []),
            Data(e3, m3 + [data.events[i] for i in sorted(late)], data.pre[1::2])]


def joined(parts: Sequence[Data]) -> Data:
    return Data([e for p in parts for e in p.exposures], [e for p in parts for e in p.events],
                [e for p in parts for e in p.pre])


def same(result: Aggregate, expected: Aggregate) -> bool:
    return (result.assignments, result.metrics, result.freshest_event_seconds) == (
        expected.assignments, expected.metrics, expected.freshest_event_seconds)


def assert_exact_over_loads(engine: LoadingEngine, store: Path, seed: int, windows: Sequence[int],
                            metric_lists: Sequence[list[str]], rounds: Sequence[int] = (1, 1, 1)) -> None:
    """`batches` loaded `rounds[k]` at a time (each its own loaded_at), a refresh after each round; then the
    rollup's integers equal DuckDB's, and the rollup's answer (at the end of time, where it answers) and the full
    statement's at each window equal DuckDB's and the Python definition's."""
    exp, end = f"exact-{seed}", 2**31 - 1
    local = LocalMetrics(store)
    engine.load_batches("another-exp", [(random_data(seed + 1).rows(), 1)])  # same users elsewhere: no leak
    warehouse, full = WarehouseMetrics(engine), WarehouseMetrics(engine, incremental=False)
    parts = batches(awkward_data(seed))
    assert sum(rounds) == len(parts)
    loaded = 0
    for size in rounds:
        engine.load_batches(exp, [(part.rows(), loaded + i + 1) for i, part in enumerate(parts[loaded:loaded + size])])
        for part in parts[loaded:loaded + size]:
            local.write_rows(exp, part.rows())
        loaded += size
        so_far = joined(parts[:loaded])
        for names in metric_lists:
            assert warehouse.refresh(exp, names)[0] == local.warehouse.refresh(exp, names)[0], (loaded, names)
            assert same(warehouse.aggregate(exp, names, end, ARMS), exact_reference(so_far, names, end, ARMS))
            for until in windows:
                expected = exact_reference(so_far, names, until, ARMS)
                assert same(local.aggregate(exp, names, until, ARMS), expected)
                assert same(full.aggregate(exp, names, until, ARMS), expected), (loaded, names, until)
    local.close()


async def assert_same_decisions(engine: LoadingEngine, store: Path, scenario: Scenario,
                                reference: bool = False) -> list[CheckResult]:
    """Day by day, the day's hours loaded into the engine and into DuckDB, then the planned look: the same reading
    and verdict from both, and (with `reference`, on the last day) the full statement equal to the definition."""
    local, warehouse = LocalMetrics(store), WarehouseMetrics(engine)
    names = [scenario.plan.primary_metric, *(g.name for g in scenario.plan.guardrails)]
    arms = scenario.plan.arms
    prior: list[dict[str, int]] = []
    looks = []
    for day in range(1, scenario.days + 1):
        hours = range((day - 1) * DAY_HOURS, day * DAY_HOURS)
        load_engine(engine, scenario, hours)
        load_local(local, scenario, hours)
        expected = await daily_look(scenario, local, day, prior)
        found = await daily_look(scenario, warehouse, day, prior)
        assert found.snapshot == expected.snapshot, (scenario.name, day)
        assert found.verdict == expected.verdict, (scenario.name, day)
        prior.append(look_sizes(expected))
        looks.append(found)
    if reference:
        until = scenario.days * scenario.plan.analysis_every
        definition = exact_reference(data_of(scenario.hours), names, until, arms)
        assert same(WarehouseMetrics(engine, incremental=False).aggregate(scenario.exp_key, names, until, arms),
                    definition)
    local.close()
    return looks


def data_of(hours: Sequence[Rows]) -> Data:
    """Simulated hours as the Python definition's tuples."""
    def rows(*columns: NDArray[Any]) -> list[tuple[Any, ...]]:
        return list(zip(*(column.tolist() for column in columns), strict=True))

    return Data([e for h in hours for e in rows(h.exposures.user_id, h.exposures.arm, h.exposures.at_s)],
                [e for h in hours for e in rows(h.metric_events.user_id, h.metric_events.metric,
                                                h.metric_events.value, h.metric_events.at_s)],
                [e for h in hours for e in rows(h.pre_period.user_id, h.pre_period.metric, h.pre_period.value)])


def largest_values(users: int = 400, seed: int = 8) -> Data:
    """Per-user totals and covariates anywhere in +-LARGEST micro-units (both ends included), in two arms; a user's
    total is one event or two halves of it. Per arm, the sums of squares are some 1e29: far beyond 2**64 (1.8e19)."""
    rng = np.random.default_rng(seed)
    totals = [LARGEST, -LARGEST, *rng.integers(-LARGEST, LARGEST, users - 2, endpoint=True).tolist()]
    covariates = [-LARGEST, LARGEST, *rng.integers(-LARGEST, LARGEST, users - 2, endpoint=True).tolist()]
    events = []
    for i, total in enumerate(totals):
        halves = [total // 2, total - total // 2] if i % 3 else [total]
        events += [(f"big{i}", "revenue", part / VALUE_SCALE, 100 + i) for part in halves]
    return Data(exposures=[(f"big{i}", ARMS[i % 2], i) for i in range(users)], events=events,
                pre=[(f"big{i}", "revenue", x / VALUE_SCALE) for i, x in enumerate(covariates)])


def exact_sums(data: Data) -> dict[str, dict[str, int]]:
    """Per arm, revenue's sums as Python integers (one event or two per user, each a whole number of micro-units)."""
    total: dict[str, int] = {}
    for user, _, value, _ in data.events:
        total[user] = total.get(user, 0) + round(value * VALUE_SCALE)
    covariate = {user: round(value * VALUE_SCALE) for user, _, value in data.pre}
    sums = {arm: dict.fromkeys(TERMS[:5], 0) for arm in ARMS[:2]}
    for user, arm, _ in data.exposures:
        y, x, arm_sums = total[user], covariate[user], sums[arm]
        for term, value in (("sum", y), ("sum_sq", y * y), ("pre_sum", x), ("pre_sum_sq", x * x),
                            ("pre_sum_product", x * y)):
            arm_sums[term] += value
    return sums


def assert_largest_values_exact(engine: LoadingEngine, store: Path) -> None:
    """At the contract's largest values, the full statement's and the rollup's integers are Python's (and the
    rollup's are DuckDB's), and the statistics are the definition's."""
    exp, names, data, until = "largest", ["revenue"], largest_values(), 10**6
    expected = exact_sums(data)
    assert all(sums["sum_sq"] > 2**64 and sums["pre_sum_sq"] > 2**64 for sums in expected.values())
    engine.load_batches(exp, [(data.rows(), 1)])
    local = LocalMetrics(store)
    local.write_rows(exp, data.rows())
    warehouse = WarehouseMetrics(engine)
    layout = warehouse.statements(names).layout
    found = from_statement(engine.query(warehouse.statement(exp, names, until)), layout)
    folded = warehouse.refresh(exp, names)[0]
    for sums in (found, folded):
        assert {arm: {term: sums.sums[arm, "revenue"][term] for term in terms}
                for arm, terms in expected.items()} == expected
    assert folded == local.warehouse.refresh(exp, names)[0]
    assert same(warehouse.aggregate(exp, names, until, ARMS), exact_reference(data, names, until, ARMS))
    local.close()


def naive_square_sum(engine: LoadingEngine, exp: str) -> str:
    """`largest_values` loaded under `exp`, and the query that sums their squares the way a plain BIGINT query
    would: the engine's overflow behaviour (an error, or silent wrapping) is what the exact decimals avoid."""
    engine.load_batches(exp, [(largest_values().rows(), 1)])
    micro = f"CAST(FLOOR(value * {VALUE_SCALE} + 0.5) AS BIGINT)"
    return render(f"SELECT CAST(SUM({micro} * {micro}) AS VARCHAR) AS s FROM metric_events WHERE exp_key = "
                  f"{string(exp)}", engine.dialect, {})


class Died(RuntimeError):
    """The refresh's process died at this statement."""


class DiesAt:
    """The engine, except that an INSERT into `table` fails: a refresh that dies half-way."""

    def __init__(self, engine: LoadingEngine, table: Table) -> None:
        self.engine, self.name, self.dialect = engine, engine.name, engine.dialect
        self._insert = re.compile(rf"\bINSERT INTO {re.escape(table.name)}\b")

    def query(self, sql: str) -> list[Row]:
        return self.engine.query(sql)

    def execute(self, sql: str) -> None:
        if self._insert.search(sql):
            raise Died(sql)
        self.engine.execute(sql)

    def create_rollup(self, tables: Sequence[Table]) -> None:
        self.engine.create_rollup(tables)

    def close(self) -> None:
        """The engine stays open: the test's healthy refresh uses it next."""


def assert_dead_refresh_never_counts(engine: LoadingEngine, store: Path, dies_at: str, seed: int = 4) -> None:
    """A refresh that died at its INSERT into `dies_at` (`sums`: after staging its ledger rows; `marks`: after its
    ledger rows and sums, before its commit) is not counted, and the next refresh folds the same rows (late ones
    among them) once, on top of what was committed before."""
    exp, names, prefix = f"dies-{seed}-{dies_at}", ["revenue", "clicks"], "abrollout_rollup_"
    marks, users, sums = tables(prefix)
    local = LocalMetrics(store)
    healthy = WarehouseMetrics(engine, prefix=prefix)
    dying = WarehouseMetrics(DiesAt(engine, {"sums": sums, "marks": marks}[dies_at]), prefix=prefix)
    first, second, last = batches(awkward_data(seed))
    engine.load_batches(exp, [(first.rows(), 1), (second.rows(), 2)])
    healthy.refresh(exp, names)
    engine.load_batches(exp, [(last.rows(), 3)])
    for part in (first, second, last):
        local.write_rows(exp, part.rows())
    with pytest.raises(Died):
        dying.refresh(exp, names)
    attempts = f"SELECT COUNT(DISTINCT attempt) AS n FROM {{}} WHERE rollup_key LIKE '{exp}:%'"
    assert int(engine.query(attempts.format(users.name))[0]["n"]) == 2  # the dead attempt's rows are there
    assert int(engine.query(attempts.format(marks.name))[0]["n"]) == 1  # but only the first refresh committed
    assert healthy.refresh(exp, names)[0] == local.warehouse.refresh(exp, names)[0]
    end = 2**31 - 1
    assert same(healthy.aggregate(exp, names, end, ARMS), exact_reference(awkward_data(seed), names, end, ARMS))
    local.close()
