"""Orchestration overhead: N experiments on one worker against the dev server, against Temporal's floor.
What is measured in the steady window, and the targets: bench/README.md.

    .venv/bin/python -m bench.orchestration_bench [--n 100 500 1000] [--hour-seconds 30] [--window 30] [--profile]
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bench.fleet import harness as fleet
from bench.fleet.config import FleetConfig
from bench.fleet.harness import FleetResult
from bench.fleet.window import Window, percentile
from bench.profiling import Profile, recording

TARGET_RATIO = 0.5
TARGET_P99_SECONDS = 1.0
TARGET_P99_AT = 500


@contextmanager
def _py_spy(output: Path) -> Iterator[None]:
    """Record the fleet's worker with py-spy while the fleet runs (the worker is the harness's only child
    python process that `bench.fleet.worker` names)."""
    original = fleet._worker_process

    @contextmanager
    def recorded(*args, **kwargs):  # type: ignore[no-untyped-def]
        with original(*args, **kwargs) as process, recording(process.pid, output, rate=50):
            yield process

    fleet._worker_process = recorded
    try:
        yield
    finally:
        fleet._worker_process = original


def _ms(value: float) -> str:
    return f"{value * 1000:.0f}" if not math.isnan(value) else "-"


def table(floor: FleetResult, ours: FleetResult) -> list[str]:
    header = (f"{'N':>5} {'offered/s':>9} {'floor/s':>8} {'ours/s':>7} {'ratio':>6} {'floor cap/s':>11} "
              f"{'ours cap/s':>10} {'ratio':>6} {'target':>6}  {'lateness ms p50/p99 floor':>25} "
              f"{'ours':>11} {'target':>6}  {'worker CPU s (ms/chk) floor':>27} {'ours':>12}  "
              f"{'peak RSS MiB floor/ours':>23}")
    lines = [header, "-" * len(header)]
    for f, o in zip(floor.windows, ours.windows, strict=True):
        ratio, cap_ratio = o.throughput / f.throughput, o.capacity / f.capacity
        ok = ratio >= TARGET_RATIO and cap_ratio >= TARGET_RATIO
        late_f, late_o = f.lateness, o.lateness
        p99 = percentile(late_o, 99)
        late_target = ("PASS" if p99 < TARGET_P99_SECONDS else "FAIL") if o.n == TARGET_P99_AT else "-"
        lines.append(
            f"{o.n:>5} {o.offered_rate:>9.1f} {f.throughput:>8.1f} {o.throughput:>7.1f} {ratio:>6.2f} "
            f"{f.capacity:>11.0f} {o.capacity:>10.0f} {cap_ratio:>6.2f} {'PASS' if ok else 'FAIL':>6}  "
            f"{_ms(percentile(late_f, 50)) + ' / ' + _ms(percentile(late_f, 99)):>25} "
            f"{_ms(percentile(late_o, 50)) + ' / ' + _ms(p99):>11} {late_target:>6}  "
            f"{f'{f.worker_cpu:.1f} ({f.cpu_ms_per_checkpoint()[0]:.1f})':>27} "
            f"{f'{o.worker_cpu:.1f} ({o.cpu_ms_per_checkpoint()[0]:.1f})':>12}  "
            f"{f'{f.span[1].worker_peak_rss_kib / 1024:.0f} / {o.span[1].worker_peak_rss_kib / 1024:.0f}':>23}")
    return lines


def _details(window: Window) -> str:
    worker_ms, server_ms = window.cpu_ms_per_checkpoint()
    parts = ", ".join(f"{name} p50 {_ms(percentile(v, 50))} p99 {_ms(percentile(v, 99))}"
                      for name, v in window.components().items())
    late = window.lateness
    return (f"  {window.config.mode:>5} N={window.n}: {len(window.completions)} checkpoints in {window.seconds:.0f} s; "
            f"lateness max {_ms(max(late, default=math.nan))} ms of {len(late)} due ({parts} ms); "
            f"CPU/checkpoint worker {worker_ms:.1f} ms {window.thread_cpu()}, server {server_ms:.1f} ms; "
            f"others on the machine {window.other_cpu / window.seconds:.2f} cores; "
            f"set-up {window.ready_seconds:.0f} s; {window.task_timeouts} workflow task timeouts")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--n", type=int, nargs="+", default=[100, 500, 1000], help="fleet sizes, in this order")
    parser.add_argument("--hour-seconds", type=float, default=30.0,
                        help="real seconds per experiment hour = seconds between a workflow's checkpoints")
    parser.add_argument("--window", type=float, default=30.0, help="seconds measured at each size")
    parser.add_argument("--profile", action="store_true", help="record the ours worker with py-spy")
    args = parser.parse_args(argv)
    steps = tuple(sorted(args.n))
    began = time.perf_counter()
    # Each fleet must still run when the last window closes: set-up at this rate takes ~5 activities per experiment.
    days = 1 + math.ceil((240 + max(steps) * 0.5 + len(steps) * (args.window + 10)) / (24 * args.hour_seconds))
    print(f"Orchestration overhead: fleets of {', '.join(map(str, steps))} on one worker against the dev server; "
          f"a checkpoint per workflow every {args.hour_seconds:g} s (hour_seconds {args.hour_seconds:g}, hourly "
          f"checks, {days}-day experiments), windows of {args.window:g} s; {os.cpu_count()} cores")
    results: dict[str, FleetResult] = {}
    profile = Path(tempfile.mkdtemp(prefix="orchestration-profile-")) / "ours.raw" if args.profile else Path()
    for mode in ("floor", "ours"):
        config = FleetConfig(steps=steps, mode=mode, hour_seconds=args.hour_seconds, days=days,
                             window_seconds=args.window)
        started = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix=f"fleet-{mode}-") as tmp, \
                (_py_spy(profile) if mode == "ours" and args.profile else contextlib.nullcontext()):
            results[mode] = fleet.run_fleet(config, Path(tmp), progress=lambda line: print(f"  {line}", flush=True))
        r = results[mode]
        print(f"  {mode}: {time.perf_counter() - started:.0f} s wall; {dict(r.statuses)}; server "
              f"{'healthy' if r.server_healthy else 'UNHEALTHY'} ({r.server_health}); {r.tenants} registry file(s)",
              flush=True)
    print()
    for line in table(results["floor"], results["ours"]):
        print(line)
    print()
    for f, o in zip(results["floor"].windows, results["ours"].windows, strict=True):
        print(_details(f))
        print(_details(o))
    if args.profile:
        print(f"\npy-spy of the ours worker over the whole run ({profile}):")
        for line in Profile.read(profile).summary():
            print(line)
    print(f"\nwall time {time.perf_counter() - began:.0f} s")


if __name__ == "__main__":
    main()
