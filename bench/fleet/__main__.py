"""`python -m bench.fleet`: one fleet run from the command line, its figures printed and, with --json, written
for another process to read (the load test)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from bench.fleet.config import FleetConfig
from bench.fleet.harness import run_fleet
from bench.fleet.output import as_json


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fleet", description="One fleet run: N experiments (or "
                                     "the floor) on one worker process against a dev server.")
    parser.add_argument("--n", type=int, nargs="+", default=[50], help="fleet sizes, measured in turn")
    parser.add_argument("--mode", choices=["ours", "floor"], default="ours")
    parser.add_argument("--hour-seconds", type=float, default=2.0)
    parser.add_argument("--check-every-hours", type=int, default=1)
    parser.add_argument("--days", type=int, default=1)
    parser.add_argument("--window", type=float, help="measure this many seconds of steady state per size")
    parser.add_argument("--worker-options", default="{}", help="JSON: extra temporalio Worker options")
    parser.add_argument("--timeout", type=float, default=FleetConfig.timeout_seconds, metavar="SECONDS",
                        help="the longest wait for set-ups or closes (default %(default)g)")
    parser.add_argument("--dir", type=Path, help="the run's directory, kept (default: a fresh temporary one)")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the run to FILE as JSON")
    args = parser.parse_args(argv)
    config = FleetConfig(steps=tuple(args.n), mode=args.mode, hour_seconds=args.hour_seconds,
                         check_every_hours=args.check_every_hours, days=args.days, window_seconds=args.window,
                         timeout_seconds=args.timeout, worker_options=tuple(json.loads(args.worker_options).items()))
    result = run_fleet(config, args.dir, progress=lambda line: print(line, file=sys.stderr, flush=True))
    if args.json:
        args.json.write_text(json.dumps(as_json(result)))
    print(result.summary())
    print(f"data: {result.data_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
