"""A fleet of experiments on one worker process: the harness of bench/orchestration_bench.py and of the load test
(tests/workers/test_load.py runs `python -m bench.fleet --json` as a process). Mode `ours` runs copies of
bench/fleet.yaml, mode `floor` bench/floor.py's bare workflow on the same cadence: Temporal's floor here.
One module per job; the method and the figures are in bench/README.md.
"""
