"""A fleet of experiments on one worker: the harness behind bench/orchestration_bench.py and the load test
(tests/workers/test_load.py runs `python -m bench.fleet --json`).

    .venv/bin/python -m bench.fleet --n 100 500 --window 30 [--mode ours|floor] [--hour-seconds 30]

A run starts a Temporal dev server and ONE worker as a separate process, then N workflows at once:

- mode `ours`: N copies of bench/fleet.yaml (fleet-0000, ...) on the embedded adapters, on the worker worker.py
  runs;
- mode `floor`: N copies of bench/floor.py's bare workflow, the same timer cadence and one no-op activity per
  checkpoint, on a worker with the same settings: Temporal's floor on this machine.

With a window, the fleet grows to each size in turn and each size is measured over a steady window once every clock
runs (the benchmark); without, one size runs to completion (the load test). Everything is then read from the
workflow histories.

Not as in production: beyond `max_concurrent` (50) copies the worker gives each block of 50 experiments its own
registry file (bench/fleet/tenants.py), since one embedded registry holds 250 running experiments at most.

One module per job: config (what a run is), harness (the run), worker (the worker process), tenants (its
registry), history (reading the histories), window (the figures), procfs (CPU and memory), output (the run as
JSON), __main__ (the command line).
"""
