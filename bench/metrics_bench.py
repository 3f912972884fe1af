"""Benchmark of the metrics check on every engine: the check from the incremental rollup and the full statement at
1M and 10M exposure+event rows, each against pulling the rows into Python, and DuckDB's check at 100M rows; how the
check's cost grows with the rows. The data, what is timed and the targets: bench/README.md.

    .venv/bin/python -m bench.metrics_bench [--quick] [--engines duckdb,postgres,clickhouse,spark] [--sizes 1M,10M]
                                            [--runs N] [--seed S] [--late N]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

from bench.metrics import report
from bench.metrics.data import (
    ARMS,
    CHECK_EVENTS,
    CHECK_LATE,
    CHECK_USERS,
    COVARIATE,
    DAYS,
    EARLIER,
    EXP,
    METRICS,
    Traffic,
    generate,
)
from bench.metrics.duckdb_side import DuckDBBench, build, export
from bench.metrics.engines import SIDES
from bench.metrics.measure import Measured, measure, role
from bench.metrics.side import Side, Unavailable

SIZES = {"100k": 100_000, "1M": 1_000_000, "10M": 10_000_000, "100M": 100_000_000}
PYTHON_ROWS = 10_000_000
"""The largest size the Python baseline runs at (at 100M its dicts alone would take tens of GB)."""


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="1M rows only, 3 checks (a smoke run)")
    parser.add_argument("--engines", default=",".join(SIDES), help=f"comma-separated, of {', '.join(SIDES)}")
    parser.add_argument("--sizes", default=None, help=f"comma-separated, of {', '.join(SIZES)} (default 1M,10M,100M)")
    parser.add_argument("--runs", type=int, default=None, help="measured checks per engine and size (default 5)")
    parser.add_argument("--seed", type=int, default=20240601)
    parser.add_argument("--late", type=int, default=CHECK_LATE,
                        help=f"late events (old users, old times) in each check's batch (default {CHECK_LATE})")
    args = parser.parse_args(argv)
    sizes = [SIZES[name] for name in (args.sizes or ("1M" if args.quick else "1M,10M,100M")).split(",")]
    unknown = [name for name in args.engines.split(",") if name not in SIDES]
    if unknown:
        parser.error(f"unknown engines {', '.join(unknown)}: use {', '.join(SIDES)}")
    runs = args.runs or (3 if args.quick else 5)
    started, load_before = time.perf_counter(), os.getloadavg()[0]
    directory = Path(tempfile.mkdtemp(prefix="abrollout-metrics-bench-", dir="/tmp"))
    sides: dict[str, Side] = {name: SIDES[name]() for name in args.engines.split(",")}
    results: list[Measured] = []
    notes: list[str] = []
    explained: list[str] = []
    try:
        for rows in sorted(sizes):
            results += bench_size(rows, args.seed, args.late, runs, sides, directory, notes, explained,
                                  rows == max(sizes))
    finally:
        for side in sides.values():
            side.stop()
        shutil.rmtree(directory, ignore_errors=True)
    print(f"metrics check bench: seed {args.seed}, {len(ARMS)} arms, metrics {', '.join(METRICS)} ({COVARIATE} with "
          f"a pre-period covariate); {DAYS} days loaded an hour at a time, then each check after one more hour "
          f"({CHECK_USERS} new users, {CHECK_EVENTS} events of recent ones, {args.late} late events of older ones, "
          f"whatever the size), for the whole window. Machine: {os.cpu_count()} CPUs, load average "
          f"{load_before:.1f} at the start and {os.getloadavg()[0]:.1f} at the end (other work inflates every timing)")
    print("fold s: the first check, folding every loaded row; check: WarehouseMetrics.aggregate after a fresh batch "
          "(refresh + read), median and best of the runs after a warm-up; full s: the full statement on the same "
          "rows, median of the same runs; Python s: the rows pulled into Python and aggregated there, one run")
    for line in report.table(results):
        print(line)
    for title, lines in (("The check's cost as the rows grow:", report.growth(results)),
                         ("Where the check's time goes (median per statement, largest size):", report.steps(results)),
                         ("Answers that differed (each fails its row):", report.problems(results)),
                         ("Not measured, or failed:", notes), ("", explained)):
        if lines:
            print()
            for line in [title, *lines] if title else lines:
                print(line)
    print(f"wall time {time.perf_counter() - started:.1f} s")


def bench_size(rows: int, seed: int, late: int, runs: int, sides: dict[str, Side], directory: Path, notes: list[str],
               explained: list[str], largest: bool) -> list[Measured]:
    """Generate one size, build the DuckDB file from it (every engine loads those rows), and measure each engine
    that takes this size."""
    data = generate(rows, seed)
    path = directory / f"metrics-{rows}.duckdb"
    built = build(path, [(EARLIER, generate(rows // 10, seed + 1)), (EXP, data)])
    traffic = Traffic(data, seed, late)
    results = []
    taking = {name: side for name, side in sides.items() if side.max_rows is None or rows <= side.max_rows}
    notes += [f"  {name} at {report.size(rows)}: not loaded (the bench loads it up to {report.size(side.max_rows)})"
              for name, side in sides.items() if side.max_rows is not None and name not in taking]
    # exported before any engine runs: each appends its own check batches to what it loaded
    kinds = sorted({side.files for side in taking.values() if side.files is not None})
    files = {kind: export(path, directory, kind) for kind in kinds}
    try:
        for name, side in taking.items():
            try:
                side.start(directory)
                loading = time.perf_counter()
                bench = side.load(path, files.get(side.files or "", {}))
                loaded = built if side.files is None else time.perf_counter() - loading
            except Unavailable as exc:
                notes.append(f"  {name}: {exc}")
                del sides[name]
                continue
            try:
                measured = measure(bench, traffic, min(runs, side.max_runs or runs), loaded, rows <= PYTHON_ROWS)
                if largest and isinstance(bench, DuckDBBench):
                    explained += explain(bench, measured, traffic, runs)
            except Exception as exc:  # one engine's failure must not lose the others' rows: it is printed instead
                notes.append(f"  {name} at {report.size(rows)}: FAILED, {type(exc).__name__}: "
                             f"{str(exc).splitlines()[0] if str(exc) else ''}")
                continue
            finally:
                bench.close()
            results.append(measured)
    finally:
        for exported in files.values():
            for file in exported.values():
                file.unlink(missing_ok=True)
        path.unlink(missing_ok=True)
    return results


def explain(bench: DuckDBBench, measured: Measured, traffic: Traffic, runs: int) -> list[str]:
    """One more check on DuckDB with its statements under EXPLAIN ANALYZE: the two slowest roles in the measured
    ones (the first statement of each)."""
    profiles: dict[str, list[str]] = {}
    for sql, profile in bench.explain(traffic.hour(runs + 1), Traffic.until(runs + 1)):
        profiles.setdefault(role(sql, bench.metrics.prefix), profile)
    slowest = sorted((name for name in profiles if name in measured.steps), key=lambda name: -measured.steps[name])
    lines = [f"EXPLAIN ANALYZE of the check's two slowest statements, DuckDB at {report.size(measured.rows)} (one "
             "more check after the measurements):"]
    for name in slowest[:2]:
        lines += [f"  {name} ({measured.steps[name] * 1e3:.1f} ms in the checks):",
                  *(f"    {line}" for line in profiles[name])]
    return lines


if __name__ == "__main__":
    main()
