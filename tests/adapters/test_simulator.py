"""The traffic simulator: deterministic for a seed, exactly once per hour, assigned by the flag as it stands."""

from __future__ import annotations

import asyncio
import math
from pathlib import Path
from typing import Any

import duckdb
import pytest

from abrollout.contracts.spec import CONTROL_ARM, Effect, Simulation
from abrollout.contracts.tools import RegisterExperimentArgs
from abrollout.contracts.verdicts import AnalysisPlan, MetricStats
from abrollout.flags.evaluate import FlagState, FlexibleRollout, Variant
from abrollout.flags.rules import parse_rule
from abrollout.plan.planner import flag_key
from abrollout.stats.srm import srm_test
from adapters import local_metrics
from adapters.local_metrics import LocalMetrics
from adapters.protocols import Registered
from adapters.simulator import arm_mean, arrival_rate, simulate_hour
from adapters.warehouse.aggregate import Aggregate

EXP = "sim-test"
ARMS = ("control", "treatment")
HOUR = 3600
METRICS: dict[str, Any] = {
    "conv": {"mean": 0.1},
    "revenue": {"mean": 10.0, "sd": 3.0, "pre_period_correlation": 0.7},
    "latency": {"mean": 0.3, "sd": 0.1},
}


def simulation(**overrides: Any) -> Simulation:
    return Simulation.model_validate({"seed": 7, "users_per_hour": 500, "metrics": METRICS, **overrides})


def registered(sim: Simulation | None = None, arms: tuple[str, ...] = ARMS, exp_key: str = EXP) -> Registered:
    """A registered experiment with just enough of a plan to be valid."""
    mde = Effect(kind="relative", value=5)
    split = {arm: 100 / len(arms) for arm in arms}
    plan = AnalysisPlan(primary_metric="conv", mde=mde, planned_looks=4, arms=arms, split=split)
    args = RegisterExperimentArgs(
        exp_key=exp_key, domain="ui", primary_metric="conv", goal="increase", metrics=list(METRICS), guardrails=[],
        hypothesis="simulated", mde=mde, arms=list(arms), max_duration_days=14, max_concurrent=5,
        guardrail_check_every_seconds=HOUR, analysis_every_seconds=24 * HOUR, hour_seconds=3600.0, planned_looks=4,
        decision_rule="-",
        analysis=plan, policy_id="test", spec_hash="test", simulation=sim)
    return Registered(exp_id="exp-1", args=args)


def flag_state(split: dict[str, float] | None = None, rollout: int = 100, rules: tuple[str, ...] = ()) -> FlagState:
    """The experiment's flag as AllocateTraffic would set it: control variable, the other arms fixed."""
    split = split or {arm: 100 / len(ARMS) for arm in ARMS}
    variants = tuple(
        Variant(name=arm, weight_type="variable") if arm == CONTROL_ARM
        else Variant(name=arm, weight=round(percent * 10), weight_type="fix")
        for arm, percent in split.items()
    )
    constraints = tuple(c for rule in rules for c in parse_rule(rule))
    strategy = FlexibleRollout(rollout=rollout, group_id=EXP, constraints=constraints, variants=variants)
    return FlagState(name=flag_key(EXP), enabled=True, strategies=(strategy,))


class FakeFlags:
    """A flag provider that serves whatever state the test set (`read` is all the simulator uses)."""

    name = "fake"

    def __init__(self, state: FlagState | None) -> None:
        self.state = state
        self.reads: list[str] = []

    async def read(self, flag_key: str) -> FlagState | None:
        self.reads.append(flag_key)
        return self.state


def store(tmp_path: Path, state: FlagState | None = None, name: str = "metrics") -> LocalMetrics:
    return LocalMetrics(tmp_path / f"{name}.duckdb", FakeFlags(state if state is not None else flag_state()))


async def advance(metrics: LocalMetrics, sim: Simulation, hours: float) -> Aggregate:
    """Snapshot at `hours` (which advances the simulator first) and return the aggregate behind it."""
    await metrics.snapshot(registered(sim), "run-1", int(hours * HOUR), list(sim.metrics))
    return metrics.aggregate(EXP, list(sim.metrics), int(hours * HOUR), ARMS)


def table_dump(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of the data tables, sorted: equal dumps mean no row was written twice or left out."""
    with duckdb.connect(str(path)) as con:
        return {table: con.execute(f"SELECT * FROM {table} ORDER BY ALL").fetchall()
                for table in ("exposures", "metric_events", "pre_period")}


def mean(stats: MetricStats) -> float:
    return stats.sum / stats.n


# --- determinism and exactly-once ---------------------------------------------------------------------------


async def test_same_seed_gives_identical_data_and_another_seed_does_not(tmp_path: Path) -> None:
    first = await advance(store(tmp_path, name="a"), simulation(), 6)
    again = await advance(store(tmp_path, name="b"), simulation(), 6)
    other = await advance(store(tmp_path, name="c"), simulation(seed=8), 6)
    assert first == again
    assert first.metrics != other.metrics


async def test_advancing_twice_or_in_steps_writes_each_hour_once(tmp_path: Path) -> None:
    sim = simulation()
    direct = store(tmp_path, name="direct")
    await advance(direct, sim, 10)
    repeated = store(tmp_path, name="repeated")
    await advance(repeated, sim, 10)
    await advance(repeated, sim, 10)
    stepped = store(tmp_path, name="stepped")
    await advance(stepped, sim, 5)
    await advance(stepped, sim, 9.5)  # rounds up to hour 10
    expected = table_dump(tmp_path / "direct.duckdb")
    assert expected["exposures"]
    assert table_dump(tmp_path / "repeated.duckdb") == expected
    assert table_dump(tmp_path / "stepped.duckdb") == expected
    assert stepped.hours_done(EXP) == 10


async def test_a_crash_inside_an_hour_leaves_nothing_of_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sim = simulation()
    real_insert = local_metrics._insert
    calls = 0

    def crash_on_fourth_hour(*args: Any) -> None:
        nonlocal calls
        calls += 1
        real_insert(*args)  # the hour's claim and rows are in the transaction...
        if calls == 4:
            raise RuntimeError("worker died")  # ...and die before the commit

    monkeypatch.setattr(local_metrics, "_insert", crash_on_fourth_hour)
    crashed = store(tmp_path, name="crashed")
    with pytest.raises(RuntimeError, match="worker died"):
        await advance(crashed, sim, 10)
    assert crashed.hours_done(EXP) == 3
    assert max(at_s for *_, at_s in table_dump(tmp_path / "crashed.duckdb")["exposures"]) < 3 * HOUR
    await advance(crashed, sim, 10)  # the retry
    await advance(store(tmp_path, name="clean"), sim, 10)
    assert table_dump(tmp_path / "crashed.duckdb") == table_dump(tmp_path / "clean.duckdb")


async def test_concurrent_checks_write_each_hour_once(tmp_path: Path) -> None:
    sim = simulation()
    racing = store(tmp_path, name="racing")
    await asyncio.gather(*(advance(racing, sim, 8) for _ in range(4)))
    await advance(store(tmp_path, name="alone"), sim, 8)
    assert table_dump(tmp_path / "racing.duckdb") == table_dump(tmp_path / "alone.duckdb")


async def test_a_simulator_behind_another_writer_writes_nothing_twice(tmp_path: Path) -> None:
    sim = simulation()
    first, second = store(tmp_path, name="shared"), store(tmp_path, name="shared")  # two stores, one file
    await advance(first, sim, 3)  # first now believes 3 hours are done...
    await advance(second, sim, 6)
    await advance(first, sim, 8)  # ...and learns from the store that 6 are
    await advance(store(tmp_path, name="alone"), sim, 8)
    assert table_dump(tmp_path / "shared.duckdb") == table_dump(tmp_path / "alone.duckdb")
    assert first.hours_done(EXP) == second.hours_done(EXP) == 8


async def test_without_a_flag_time_passes_but_nobody_is_exposed(tmp_path: Path) -> None:
    metrics = LocalMetrics(tmp_path / "m.duckdb", FakeFlags(None))
    result = await advance(metrics, simulation(), 3)
    assert result.assignments == {"control": 0, "treatment": 0}
    assert metrics.hours_done(EXP) == 3


# --- assignment through the flag ----------------------------------------------------------------------------


def exposed_users(state: FlagState, sim: Simulation, hours: int = 4) -> set[str]:
    return {user for hour in range(hours) for user in simulate_hour(sim, state, hour).exposures.user_id.tolist()}


def test_exposure_rules_are_evaluated_by_the_flag() -> None:
    sim = simulation(context={"country": {"US": 1, "DE": 1}})
    everyone = exposed_users(flag_state(), sim)
    us = exposed_users(flag_state(rules=('country in ["US"]',)), sim)
    de = exposed_users(flag_state(rules=('country == "DE"',)), sim)
    assert not us & de
    assert us | de == everyone
    assert len(us) / len(everyone) == pytest.approx(0.5, abs=0.05)
    assert not exposed_users(flag_state(rules=('country in ["FR"]',)), sim)


async def test_a_ramp_step_changes_exposure_from_the_next_hour(tmp_path: Path) -> None:
    sim = simulation(users_per_hour=2000)
    flags = FakeFlags(flag_state(rollout=10))
    metrics = LocalMetrics(tmp_path / "m.duckdb", flags)
    before = sum((await advance(metrics, sim, 5)).assignments.values())
    flags.state = flag_state(rollout=100)
    after = sum((await advance(metrics, sim, 10)).assignments.values()) - before
    assert before / (5 * 2000) == pytest.approx(0.10, abs=0.02)
    assert after / (5 * 2000) == pytest.approx(1.0, abs=0.03)
    assert flags.reads == [flag_key(EXP)] * 2


async def test_a_50_50_split_holds_within_sampling_error(tmp_path: Path) -> None:
    result = await advance(store(tmp_path), simulation(users_per_hour=2000), 10)
    total = sum(result.assignments.values())
    assert total == pytest.approx(20_000, rel=0.02)
    assert result.assignments["control"] / total == pytest.approx(0.5, abs=0.015)  # 4 standard errors


async def test_exposure_loss_produces_a_sample_ratio_mismatch(tmp_path: Path) -> None:
    sim = simulation(users_per_hour=2000, exposure_loss={"treatment": 0.1})
    result = await advance(store(tmp_path), sim, 10)
    assert result.assignments["treatment"] / result.assignments["control"] == pytest.approx(0.9, abs=0.03)
    srm = srm_test(result.assignments, {"control": 50.0, "treatment": 50.0}, 0.001)
    assert srm is not None
    assert srm.flagged


# --- metric values ------------------------------------------------------------------------------------------


async def test_a_true_effect_is_measured(tmp_path: Path) -> None:
    sim = simulation(users_per_hour=10_000, effects={"treatment": {"conv": {"kind": "relative", "value": 10}}})
    result = await advance(store(tmp_path), sim, 10)
    conv = result.metrics["conv"]
    assert conv["control"].n + conv["treatment"].n == pytest.approx(100_000, rel=0.02)
    assert mean(conv["control"]) == pytest.approx(0.10, abs=0.005)
    lift = mean(conv["treatment"]) / mean(conv["control"]) - 1
    assert lift == pytest.approx(0.10, abs=0.06)  # about 3 standard errors of the lift at 50k users an arm
    assert conv["control"].sum == conv["control"].sum_sq  # 0/1 values


async def test_a_degradation_shows_only_from_its_hour(tmp_path: Path) -> None:
    shift = {"kind": "absolute", "value": 0.2}
    sim = simulation(users_per_hour=1000, degradations=[{"metric": "latency", "arm": "treatment", "from_hour": 5,
                                                         "shift": shift}])
    assert arm_mean(sim, "latency", "treatment", 4) == 0.3
    assert arm_mean(sim, "latency", "treatment", 5) == pytest.approx(0.5)
    metrics = store(tmp_path)
    early = (await advance(metrics, sim, 5)).metrics["latency"]
    total = (await advance(metrics, sim, 10)).metrics["latency"]

    def late_mean(arm: str) -> float:
        return (total[arm].sum - early[arm].sum) / (total[arm].n - early[arm].n)

    assert mean(early["treatment"]) - mean(early["control"]) == pytest.approx(0.0, abs=0.01)
    assert late_mean("treatment") - late_mean("control") == pytest.approx(0.2, abs=0.01)


async def test_cuped_sums_carry_the_configured_correlation(tmp_path: Path) -> None:
    result = await advance(store(tmp_path), simulation(users_per_hour=2000), 5)
    assert all(s.pre_sum is None for arm in ("conv", "latency") for s in result.metrics[arm].values())
    for stats in result.metrics["revenue"].values():
        assert stats.pre_sum is not None and stats.pre_sum_sq is not None and stats.pre_sum_product is not None
        n = stats.n
        cov = stats.pre_sum_product - stats.pre_sum * stats.sum / n
        var_x = stats.pre_sum_sq - stats.pre_sum**2 / n
        var_y = stats.sum_sq - stats.sum**2 / n
        assert cov / math.sqrt(var_x * var_y) == pytest.approx(0.7, abs=0.03)


def test_the_daily_cycle_peaks_at_noon_and_keeps_the_daily_mean() -> None:
    sim = simulation(users_per_hour=1000, daily_cycle=True)
    assert arrival_rate(sim, 12) == pytest.approx(1600)
    assert arrival_rate(sim, 24) == pytest.approx(400)
    assert sum(arrival_rate(sim, hour) for hour in range(24)) == pytest.approx(24_000)
    assert arrival_rate(simulation(users_per_hour=1000), 12) == 1000
