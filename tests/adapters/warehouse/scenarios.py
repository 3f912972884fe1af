"""The golden scenarios' traffic, hour by hour, for the engine tests: each examples/golden spec with a `simulation`
block, planned as the starter plans it and simulated with the flag its ramp serves in each hour; loaded into a
warehouse engine or the embedded DuckDB store one `loaded_at` per hour, and checked by the CheckMetrics activity's
own code (`activities.metrics_check.run_check`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, cast

from abrollout.contracts.tools import AllocateTrafficArgs, CheckResult, RegisterExperimentArgs, ToolCall
from abrollout.flags.evaluate import FlagState
from abrollout.flags.states import allocation_state
from abrollout.plan.planner import ExperimentPlan, check_proposal
from abrollout.plan.verify import resolve_args, verify
from abrollout.run.checks import _sizes
from abrollout.spec.loader import check_text
from activities.metrics_check import run_check
from adapters.local_metrics import LocalMetrics
from adapters.protocols import MetricsSource, Registered, Registry
from adapters.simulator import HOUR_SECONDS, Rows, simulate_hour
from adapters.warehouse.embedded import Batch
from adapters.warehouse.engine import Engine

GOLDEN = Path(__file__).resolve().parents[3] / "examples" / "golden"
DAY_HOURS = 24
REFS = {"register": "exp-1", "run": "run-1", "allocate-0": "change-1"}
"""The refs a running experiment's check proposals resolve against."""


class LoadingEngine(Engine, Protocol):
    """An engine that keeps the embedded schema itself (chDB, Spark)."""

    def create_embedded_tables(self) -> None: ...

    def load_batches(self, exp_key: str, batches: Sequence[Batch]) -> None: ...


@dataclass(frozen=True)
class Scenario:
    """A golden spec's plan, its registration, and its simulated hours (hour h's rows at `hours[h]`)."""

    name: str
    plan: ExperimentPlan
    registered: Registered
    hours: list[Rows]

    @property
    def exp_key(self) -> str:
        return self.plan.exp_key

    @property
    def days(self) -> int:
        return len(self.hours) // DAY_HOURS


def golden_specs() -> list[Path]:
    """The golden specs that simulate their traffic."""
    return [path for path in sorted(GOLDEN.glob("*.yaml")) if "\nsimulation:" in path.read_text()]


def scenario(path: Path, days: int | None = None, users_per_hour: int | None = None) -> Scenario:
    """The spec's first `days` (all by default) of traffic, at most `users_per_hour` arrivals an hour on average
    (the spec's own rate by default)."""
    validation = check_text(path.read_text(), str(path))
    plan = validation.plan
    assert plan is not None, validation.problems
    register = plan.setup[0].args
    assert isinstance(register, RegisterExperimentArgs) and register.simulation is not None
    simulation = register.simulation
    if users_per_hour is not None and users_per_hour < simulation.users_per_hour:
        simulation = simulation.model_copy(update={"users_per_hour": users_per_hour})
    register = register.model_copy(update={"simulation": simulation})
    hours = plan.max_duration_seconds // HOUR_SECONDS if days is None else days * DAY_HOURS
    return Scenario(name=path.stem, plan=plan, registered=Registered(exp_id=REFS["register"], args=register),
                    hours=[simulate_hour(simulation, _flag(plan, hour), hour) for hour in range(hours)])


def _flag(plan: ExperimentPlan, hour: int) -> FlagState:
    """The flag as the ramp left it by `hour`: the last allocation step due by then."""
    steps = [plan.setup[-1], *plan.ramp_steps]
    due = [proposal for proposal, step in zip(steps, plan.ramp, strict=True) if step.at <= hour * HOUR_SECONDS]
    args = resolve_args(due[-1].args, REFS)
    assert isinstance(args, AllocateTrafficArgs)
    return allocation_state(args)


def load_engine(engine: LoadingEngine, scenario: Scenario, hours: range) -> None:
    """Append the hours to the engine's embedded tables, hour h under loaded_at h + 1."""
    engine.load_batches(scenario.exp_key, [(scenario.hours[hour], hour + 1) for hour in hours])


def load_local(metrics: LocalMetrics, scenario: Scenario, hours: range) -> None:
    """Write the hours to the DuckDB store in order, one load batch each (loaded_at h + 1 from the first hour)."""
    for hour in hours:
        assert metrics.write_hour(scenario.exp_key, hour, scenario.hours[hour]) == hour + 1


async def daily_look(scenario: Scenario, metrics: MetricsSource, day: int,
                     prior: list[dict[str, int]]) -> CheckResult:
    """What CheckMetrics records at planned look `day` (day `day`'s end), given the earlier looks' sizes."""
    at = day * scenario.plan.analysis_every
    proposal = check_proposal(scenario.plan, "analysis", day, at, prior_look_sizes=prior)
    call = ToolCall.answering(proposal, verify(proposal, REFS, "running", False))
    receipt = await run_check(cast(Registry, _Registry(scenario.registered)), metrics, call)
    assert receipt.ok and receipt.check is not None, receipt.message
    return receipt.check


def look_sizes(check: CheckResult) -> dict[str, int]:
    """The primary's users per arm at a look, as the workflow keeps them for the later looks' boundaries."""
    return _sizes(check.verdict)


class _Registry:
    """The one registry call a check makes: the experiment's registration."""

    def __init__(self, registered: Registered) -> None:
        self._registered = registered

    async def get(self, exp_id: str) -> Registered:
        assert exp_id == self._registered.exp_id
        return self._registered

