"""Benchmark of long experiments on Temporal's time-skipping test server (a benchmark, not a timed test).
14 and 90 days of hourly checks against Temporal's own floor for that cadence; figures and targets: bench/README.md.

    .venv/bin/python -m bench.timeskip_bench [--repeat N] [--quick] [--no-long] [--long-seed S] [--profile]
                                             [--long-history-limit EVENTS]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import statistics
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path

from temporalio import activity, workflow

with workflow.unsafe.imports_passed_through():  # the sandbox re-imports this module for the floor workflows
    import structlog
    from temporalio.client import Client
    from temporalio.runtime import LogForwardingConfig, LoggingConfig, Runtime, TelemetryConfig, TelemetryFilter
    from temporalio.testing import WorkflowEnvironment
    from temporalio.worker import Worker

    from abrollout.contracts.spec import ExperimentSpec
    from abrollout.spec.loader import check_text
    from adapters.local import local_adapters
    from adapters.protocols import MetricsSnapshot, MetricsSource, Registered
    from bench.profiling import Profile, recording
    from client.experiments import start_experiment
    from client.history import receipt_trail
    from tests.support.temporal_env import time_skipping
    from workers.assembly import build_worker

HOUR = timedelta(hours=1)
WARN_EVENTS = 10_240  # Temporal's history warnings start here (the hard limit is 51,200)
WARN_BYTES = 10 * 1024 * 1024
TARGET_WALL_S = 5.0
WELL_UNDER = 0.5  # "well under" the warning threshold: at most half of it
DAYS = 14
LONG_DAYS = 90  # PARAMS.max_duration_days
PAYLOAD_WARNING = 512 * 1024  # the SDK logs TMPRL1103 above this
PAYLOAD_LIMIT = 2 * 1024 * 1024  # Temporal's default blob size limit: a larger continue-as-new input is refused
PROFILE_RATE = 250  # py-spy samples per second under --profile


# ---- the floors: Temporal's own cost of the cadence -------------------------------------------------------
@activity.defn(name="BenchNoop")
async def noop(index: int) -> int:
    return index


@workflow.defn(name="BenchFloor")
class FloorWorkflow:
    """`checks` one-hour timers, each followed by one no-op activity: what any hourly checker costs."""

    @workflow.run
    async def run(self, checks: int) -> int:
        for index in range(checks):
            with contextlib.suppress(asyncio.TimeoutError):
                await workflow.wait_condition(lambda: False, timeout=HOUR)
            await workflow.execute_activity(noop, index, start_to_close_timeout=timedelta(minutes=5))
        return checks


@workflow.defn(name="BenchFloorLocal")
class LocalFloorWorkflow:
    """The same cadence with the no-op as a local activity (run inside the workflow task, recorded as a marker)."""

    @workflow.run
    async def run(self, checks: int) -> int:
        for index in range(checks):
            with contextlib.suppress(asyncio.TimeoutError):
                await workflow.wait_condition(lambda: False, timeout=HOUR)
            await workflow.execute_local_activity(noop, index, start_to_close_timeout=timedelta(minutes=5))
        return checks


# ---- measurements -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Run:
    wall: float
    cpu: float  # this process
    server_cpu: float  # the time-skipping server
    events: int  # over every run of the workflow
    history_bytes: int  # of the largest run's history
    runs: int  # 1 + times continued as new
    checks: int
    decision: str = "-"
    carried: tuple[tuple[int, int], ...] = ()  # per continued run: (its input's bytes, checks done before it)


def cpu_seconds() -> tuple[float, float]:
    """CPU seconds so far of this process and of its child processes (the test server); Linux /proc only."""
    children = 0.0
    with contextlib.suppress(OSError, ValueError):
        tick = os.sysconf("SC_CLK_TCK")
        for stat in Path("/proc").glob("[0-9]*/stat"):
            with contextlib.suppress(OSError, IndexError, ValueError):
                after_name = stat.read_text().rsplit(")", 1)[1].split()
                if int(after_name[1]) == os.getpid():  # ppid
                    children += (int(after_name[11]) + int(after_name[12])) / tick  # utime + stime
    return time.process_time(), children


@contextlib.asynccontextmanager
async def measured(out: dict[str, float], profile: Path | None = None) -> AsyncIterator[None]:
    """Wall and CPU time of the block into `out`; with `profile`, py-spy records this process into that file."""
    cpu, server = cpu_seconds()
    started = time.perf_counter()
    with recording(os.getpid(), profile, PROFILE_RATE) if profile else contextlib.nullcontext():
        yield
    out["wall"] = time.perf_counter() - started
    cpu_after, server_after = cpu_seconds()
    out["cpu"], out["server_cpu"] = cpu_after - cpu, server_after - server


def golden(scenario: str, days: int, name: str, seed: int | None = None) -> ExperimentSpec:
    golden_dir = Path(__file__).resolve().parents[1] / "examples" / "golden"  # not at import: the sandbox
    check = check_text((golden_dir / f"{scenario}.yaml").read_text(), scenario)
    assert check.spec is not None and check.spec.simulation is not None, [str(p) for p in check.problems]
    simulation = check.spec.simulation if seed is None else check.spec.simulation.model_copy(update={"seed": seed})
    return check.spec.model_copy(update={"name": name, "max_duration_days": days, "simulation": simulation})


@dataclass(frozen=True)
class Chain:
    """The runs of one workflow id, oldest first, from each first event's continued_execution_run_id."""

    events: int  # over every run
    largest_bytes: int  # the largest run's history
    input_bytes: tuple[int, ...]  # each run's input (the first event's payloads): a continued run carries the state
    run_ids: tuple[str, ...]


async def chain_of_runs(client: Client, workflow_id: str) -> Chain:
    events, largest = 0, 0
    inputs: list[int] = []
    run_ids: list[str] = []
    run_id: str | None = None
    while True:
        handle = client.get_workflow_handle(workflow_id, run_id=run_id)
        history = await handle.fetch_history()
        started = history.events[0].workflow_execution_started_event_attributes
        events += len(history.events)
        largest = max(largest, sum(event.ByteSize() for event in history.events))
        inputs.insert(0, started.input.ByteSize())
        run_ids.insert(0, run_id or (await handle.describe()).run_id)
        run_id = started.continued_execution_run_id or None
        if run_id is None:
            return Chain(events, largest, tuple(inputs), tuple(run_ids))


class Recorder:
    """The metrics source, keeping every snapshot it served by experiment time (to replay them later)."""

    name = "recorder"

    def __init__(self, inner: MetricsSource, tape: dict[int, MetricsSnapshot]) -> None:
        self.inner, self.tape = inner, tape

    async def snapshot(self, registered: Registered, run_id: str, at_seconds: int,
                       metrics: list[str]) -> MetricsSnapshot:
        self.tape[at_seconds] = await self.inner.snapshot(registered, run_id, at_seconds, metrics)
        return self.tape[at_seconds]


class Replayer:
    """A metrics source that serves a recorded run's snapshots: the same checks and receipts, no data work."""

    name = "replayer"

    def __init__(self, tape: dict[int, MetricsSnapshot]) -> None:
        self.tape = tape

    async def snapshot(self, registered: Registered, run_id: str, at_seconds: int,
                       metrics: list[str]) -> MetricsSnapshot:
        return self.tape[at_seconds]


async def ours(env: WorkflowEnvironment, days: int, name: str, max_history_events: int | None = None,
               record: dict[int, MetricsSnapshot] | None = None,
               replay: dict[int, MetricsSnapshot] | None = None, seed: int | None = None,
               profile: Path | None = None) -> Run:
    """The golden steady experiment for `days`; with `record`, keep its snapshots there; with `replay`, serve
    those instead of simulating and aggregating (the data layer's cost taken out, everything else the same)."""
    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="timeskip-bench-") as tmp:
        adapters = local_adapters(Path(tmp))
        local_metrics = adapters.metrics
        if record is not None:
            adapters = replace(adapters, metrics=Recorder(adapters.metrics, record))
        if replay is not None:
            adapters = replace(adapters, metrics=Replayer(replay))
        queue = f"bench-{name}"
        async with build_worker(env.client, adapters, task_queue=queue), measured(out, profile):
            handle = await start_experiment(env.client, golden("steady", days, name, seed), queue,
                                            max_history_events=max_history_events)
            report = await handle.result()
        local_metrics.close()  # type: ignore[attr-defined]
    chain = await chain_of_runs(env.client, handle.id)
    trail = await receipt_trail(env.client, handle.id)
    assert [h.run_id for h in trail if h.receipt.step == "register"] == [chain.run_ids[0]]
    assert {h.run_id for h in trail} == set(chain.run_ids), "the receipt trail and the chain of runs disagree"
    assert [h.receipt.step for h in trail] == [r.step for r in report.receipts], "a receipt is missing from history"
    checks = sum(r.tool == "CheckMetrics" for r in report.receipts)
    checks_before = [sum(h.receipt.tool == "CheckMetrics" for h in trail if h.run_id in chain.run_ids[:i])
                     for i in range(len(chain.run_ids))]
    decision = f"{report.decision.state.value}: {report.decision.rationale}"
    return Run(out["wall"], out["cpu"], out["server_cpu"], chain.events, chain.largest_bytes, len(chain.run_ids),
               checks, decision, tuple(zip(chain.input_bytes, checks_before, strict=True))[1:])


async def floor(env: WorkflowEnvironment, days: int, name: str, local: bool = False,
                profile: Path | None = None) -> Run:
    out: dict[str, float] = {}
    queue = f"bench-{name}"
    worker = Worker(env.client, task_queue=queue, workflows=[FloorWorkflow, LocalFloorWorkflow], activities=[noop])
    async with worker, measured(out, profile):
        run = LocalFloorWorkflow.run if local else FloorWorkflow.run
        checks = await env.client.execute_workflow(run, days * 24, id=name, task_queue=queue)
    chain = await chain_of_runs(env.client, name)
    return Run(out["wall"], out["cpu"], out["server_cpu"], chain.events, chain.largest_bytes, len(chain.run_ids),
               checks)


async def median_of(repeat: int, measures: dict[str, Callable[[int], Awaitable[Run]]]) -> dict[str, list[Run]]:
    """Each figure `repeat` times, alternated so that a burst of outside load hits them alike."""
    runs: dict[str, list[Run]] = {name: [] for name in measures}
    for index in range(repeat):
        for name, measure in measures.items():
            runs[name].append(await measure(index))
    return runs


def median(runs: list[Run]) -> Run:
    """The run of median wall time, with the median CPU times."""
    middle = sorted(runs, key=lambda r: r.wall)[(len(runs) - 1) // 2]
    return replace(middle, cpu=statistics.median(r.cpu for r in runs),
                   server_cpu=statistics.median(r.server_cpu for r in runs))


# ---- output -------------------------------------------------------------------------------------------------
def _mark(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


HEADER = (f"{'figure':<20}{'wall s':>8}{'':<14}{'CPU s':>7}{'server':>8}{'checks':>8}{'events':>8}{'ev/day':>8}"
          f"{'KB':>7}{'runs':>6}")


def row(label: str, runs: list[Run], days: int) -> str:
    run = median(runs)
    spread = f" [{min(r.wall for r in runs):.2f}-{max(r.wall for r in runs):.2f}]" if len(runs) > 1 else ""
    return (f"{label:<20}{run.wall:>8.2f}{spread:<14}{run.cpu:>7.2f}{run.server_cpu:>8.2f}{run.checks:>8}"
            f"{run.events:>8}{run.events / days:>8.0f}{run.history_bytes / 1024:>7.0f}{run.runs:>6}")


def ratio(label: str, mine: Run, base: Run) -> str:
    return (f"{label:<20}{mine.wall / base.wall:>7.2f}x{'':<14}{mine.cpu / base.cpu:>6.2f}x"
            f"{mine.server_cpu / base.server_cpu:>7.2f}x{'':>8}{mine.events / base.events:>7.2f}x{'':>8}"
            f"{mine.history_bytes / base.history_bytes:>6.1f}x")


def per_check(mine: Run, base: Run) -> str:
    wall = (mine.wall - base.wall) / mine.checks * 1000
    cpu = (mine.cpu - base.cpu) / mine.checks * 1000
    return f"{'':<20}our code per check over the floor: {wall:+.1f} ms wall, {cpu:+.1f} ms CPU (this process)"


async def fourteen_days(env: WorkflowEnvironment, repeat: int, profile_dir: Path | None) -> None:
    await floor(env, 1, "warm-up-floor")  # the first workflows pay for the sandbox's imports
    await ours(env, 1, "warm-up")
    tapes: dict[int, dict[int, MetricsSnapshot]] = {}
    runs = await median_of(repeat, {
        "ours": lambda i: ours(env, DAYS, f"fourteen-days-{i}", record=tapes.setdefault(i, {})),
        "replayed": lambda i: ours(env, DAYS, f"fourteen-days-replayed-{i}", replay=tapes[i]),
        "floor": lambda i: floor(env, DAYS, f"floor-{DAYS}-{i}"),
        "floor-LA": lambda i: floor(env, DAYS, f"floor-la-{DAYS}-{i}", local=True),
    })
    mine, base, local = median(runs["ours"]), median(runs["floor"]), median(runs["floor-LA"])
    replayed = median(runs["replayed"])
    assert {r.decision for r in runs["replayed"]} == {r.decision for r in runs["ours"]}, "the replay decided otherwise"
    print(row(f"ours, {DAYS} days", runs["ours"], DAYS))
    print(row("  data replayed", runs["replayed"], DAYS))
    print(row(f"floor, {DAYS} days", runs["floor"], DAYS))
    print(row(f"floor-LA, {DAYS} days", runs["floor-LA"], DAYS))
    print(ratio("ours / floor", mine, base))
    print(per_check(mine, base))
    print(f"{'':<20}of which the data layer (simulator + DuckDB; ours - replayed): "
          f"{(mine.wall - replayed.wall) / mine.checks * 1000:+.1f} ms wall, "
          f"{(mine.cpu - replayed.cpu) / mine.checks * 1000:+.1f} ms CPU; workflow, activity and receipts "
          f"(replayed - floor): {(replayed.wall - base.wall) / mine.checks * 1000:+.1f} ms wall, "
          f"{(replayed.cpu - base.cpu) / mine.checks * 1000:+.1f} ms CPU")
    print(ratio("floor-LA / floor", local, base))
    print(f"{'':<20}a local activity saves {(base.wall - local.wall) / base.checks * 1000:.1f} ms wall and "
          f"{(base.cpu + base.server_cpu - local.cpu - local.server_cpu) / base.checks * 1000:.1f} ms CPU per check "
          f"(worker + server), {(base.events - local.events) / base.checks:.1f} events")
    print()
    print(f"target {DAYS}-day wall < {TARGET_WALL_S:g} s: {mine.wall:.2f} s {_mark(mine.wall < TARGET_WALL_S)} "
          f"(the floor alone {base.wall:.2f} s)")
    events_ok = mine.events < WELL_UNDER * WARN_EVENTS and mine.history_bytes < WELL_UNDER * WARN_BYTES
    print(f"target history well under the warning threshold: {mine.events:,} events = "
          f"{mine.events / WARN_EVENTS:.0%} of {WARN_EVENTS:,}, {mine.history_bytes / 2**20:.1f} MB = "
          f"{mine.history_bytes / WARN_BYTES:.0%} of 10 MB {_mark(events_ok)} (floor {base.events:,} events)")
    print(f"decision: {mine.decision}")
    if profile_dir is not None:
        await profiled(env, profile_dir, tapes[0])


async def profiled(env: WorkflowEnvironment, directory: Path, tape: dict[int, MetricsSnapshot]) -> None:
    """One more 14-day run of ours, data replayed and the floor, each under py-spy (not counted in the figures:
    recording slows them): busy time per check of this process, and where ours and the replay spend it."""
    raw = {name: directory / f"{name}.raw" for name in ("ours", "replayed", "floor")}
    runs = {"ours": await ours(env, DAYS, "profiled", profile=raw["ours"]),
            "replayed": await ours(env, DAYS, "profiled-replayed", replay=tape, profile=raw["replayed"]),
            "floor": await floor(env, DAYS, "profiled-floor", profile=raw["floor"])}
    profiles = {name: Profile.read(path) for name, path in raw.items()}
    busy = ", ".join(f"{name} {profiles[name].total / PROFILE_RATE / run.checks * 1000:.1f} ms"
                     for name, run in runs.items())
    print(f"\npy-spy of this process ({PROFILE_RATE} Hz; the time-skipping server is another process), one more "
          f"{DAYS}-day run each, raw stacks in {directory}:")
    print(f"  busy time per check: {busy}")
    for name in ("ours", "replayed"):
        print(f"  {name}:")
        print("\n".join(f"  {line}" for line in profiles[name].summary()))


async def ninety_days(env: WorkflowEnvironment, history_limit: int | None, seed: int | None) -> None:
    mine = await ours(env, LONG_DAYS, "ninety-days", max_history_events=history_limit, seed=seed)
    base = await floor(env, LONG_DAYS, f"floor-{LONG_DAYS}")
    print(row(f"ours, {LONG_DAYS} days", [mine], LONG_DAYS))
    print(row(f"floor, {LONG_DAYS} days", [base], LONG_DAYS))
    print(ratio("ours / floor", mine, base))
    days = mine.checks / 24
    ok = mine.runs > 1 and not mine.decision.startswith("running")
    limit = f"at {history_limit} events" if history_limit else "when the server suggested it"
    single = base.events / base.checks * mine.checks
    print(f"target {LONG_DAYS}-day run continues as new and decides: {mine.runs} runs (continued as new {limit}, "
          f"~{mine.events / mine.runs:,.0f} events a run; one run would have held ~{single:,.0f}), "
          f"decided after {days:g} days {_mark(ok)}")
    print(f"decision: {mine.decision}")
    if mine.carried:
        size, before = max(mine.carried)
        per_check = size / max(before, 1)
        at_cap = per_check * LONG_DAYS * 24
        reached = PAYLOAD_LIMIT / per_check
        inputs = ", ".join(f"{b / 1024:,.0f} KB after {n:,}" for b, n in mine.carried)
        print(f"continue-as-new input (the carried state): {inputs} checks = {per_check:,.0f} B per check; the SDK "
              f"warns above {PAYLOAD_WARNING // 1024} KB, the server refuses a payload over "
              f"{PAYLOAD_LIMIT // 2**20} MB: reached after ~{reached:,.0f} checks (day {reached / 24:.0f})")
        print(f"target the state a run to the {LONG_DAYS}-day cap carries stays under {PAYLOAD_LIMIT // 2**20} MB: "
              f"~{at_cap / 2**20:.1f} MB at {LONG_DAYS * 24:,} checks (projected at the measured rate) "
              f"{_mark(at_cap < PAYLOAD_LIMIT)}")


def log_to(path: Path) -> None:
    """The tool activities' log lines as the worker writes them off a terminal (JSON lines, as client/logs.py
    configures it), into a file: the same cost per call, and the table stays readable. The SDK core's warnings
    (the test server's missing capabilities; payloads over 512 KB, which the 90-day figure reports itself) go
    to the same file. Call before the first client: the runtime is set once."""
    log_file = path.open("w")
    structlog.configure(
        processors=[structlog.processors.add_log_level, structlog.processors.TimeStamper(fmt="iso", utc=True),
                    structlog.processors.JSONRenderer()],
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
        logger_factory=structlog.WriteLoggerFactory(file=log_file), cache_logger_on_first_use=True)
    core = logging.getLogger("temporalio.core")
    core.addHandler(logging.StreamHandler(log_file))
    core.propagate = False
    Runtime.set_default(Runtime(telemetry=TelemetryConfig(logging=LoggingConfig(
        filter=TelemetryFilter(core_level="WARN", other_level="WARN"), forwarding=LogForwardingConfig(logger=core)))))


async def main_async(args: argparse.Namespace) -> None:
    log_to(Path(args.log))
    env = await time_skipping()
    try:
        started = time.perf_counter()
        print(f"time-skipping bench: golden 'steady', {'median of ' + str(args.repeat) if args.repeat > 1 else '1 run'}"
              "; every baseline measured in this run on the same server")
        print(f"tool logs (JSON lines, as the worker writes them) and SDK warnings: {args.log}")
        print("CPU s: this process (client, worker, activities, DuckDB); server: the time-skipping server; "
              "KB: the largest run's history")
        print()
        print(HEADER)
        print("-" * len(HEADER))
        await fourteen_days(env, args.repeat, Path(tempfile.mkdtemp(prefix="timeskip-profile-")) if args.profile
                            else None)
        if not args.no_long:
            print()
            await ninety_days(env, args.long_history_limit, args.long_seed)
        print(f"\nbench wall time {time.perf_counter() - started:.1f} s")
    finally:
        await env.shutdown()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--repeat", type=int, default=3, help="runs of each 14-day figure (the median is printed)")
    parser.add_argument("--quick", action="store_true", help="one run of each 14-day figure, no 90-day run")
    parser.add_argument("--profile", action="store_true",
                        help="one more 14-day run of ours, data replayed and the floor under py-spy")
    parser.add_argument("--no-long", action="store_true", help=f"skip the {LONG_DAYS}-day continue-as-new figure")
    parser.add_argument("--long-history-limit", type=int, default=None,
                        help="continue as new at this many events (default: when the server suggests it)")
    parser.add_argument("--long-seed", type=int, default=None,
                        help="the 90-day run's simulation seed (default: the golden scenario's)")
    parser.add_argument("--log", default=str(Path(tempfile.gettempdir()) / "timeskip_bench.log"),
                        help="where the tool activities' log lines go")
    args = parser.parse_args(argv)
    if args.quick:
        args.repeat, args.no_long = 1, True
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
