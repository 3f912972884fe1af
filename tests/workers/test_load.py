"""Load (issue 8): N experiments running at once on one worker, on an accelerated clock and the embedded adapters,
against a real dev server and a real worker process. Every experiment must reach the decision its own data call
for, with every planned checkpoint run once and none later than one check interval; every side effect applied once
per idempotency key; the worker's memory bounded; the dev server healthy afterwards.

The fleet harness (bench/fleet/, which also drives the orchestration benchmark) runs as a process of its own,
`python -m bench.fleet --json`, so that tests import no bench code: the test asserts on the run it writes and on
the stores left in its data directory (tests/support/embedded_stores.py).

N is ABROLLOUT_LOAD_EXPERIMENTS: 30 by default (`make test`, ~1 min), 500 for the issue's load test (~8 min). The
clocks offer ABROLLOUT_LOAD_RATE (4) checkpoints/s whatever N: the interval is N / 4 s (at least 15 s), four
checkpoints per experiment, a guardrail check every 6 experiment hours and the analysis look at the 24 h cap. Above
50 experiments the worker gives each block of 50 its own registry file: exp_policy.v5 allows 50 running per domain
in one registry (bench/fleet/tenants.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from abrollout.policy import PARAMS
from abrollout.stats.srm import srm_test
from tests.support import embedded_stores, replay_guard

N = int(os.environ.get("ABROLLOUT_LOAD_EXPERIMENTS", "30"))
CHECK_EVERY_HOURS = 6
OFFERED = float(os.environ.get("ABROLLOUT_LOAD_RATE", "4"))  # checkpoints/s; one worker sustained 5.1 here at worst
INTERVAL = max(15.0, N / OFFERED)  # at least 15 s: on a loaded 2-core machine a check can wait ~9 s
HARNESS = ["-m", "bench.fleet", "--n", str(N), "--mode", "ours", "--hour-seconds", repr(INTERVAL / CHECK_EVERY_HOURS),
           "--check-every-hours", str(CHECK_EVERY_HOURS), "--timeout", str(600 + 6 * N)]
ROOT = Path(__file__).resolve().parents[2]
RSS_LIMIT_MIB = 400 + N  # generous: the worker peaked at 288 MiB at N=50 and 449 MiB at N=500 (2026-12-02)
STORES = {"flags": ("CreateFlag", "AllocateTraffic", "PromoteVariant", "RollbackVariant"),
          "registry": ("RegisterExperiment", "StartRun", "StopRun"), "tickets": ("OpenTicket",)}


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The harness's run, as the JSON it writes: the figures of its one window, every execution with its result and
    checkpoints, and its data directory (kept under this test's temporary directory)."""
    tmp = tmp_path_factory.mktemp("load")
    replay_guard.dev_server_database(tmp / "temporal.sqlite")
    written = tmp / "fleet.json"
    subprocess.run([sys.executable, *HARNESS, "--dir", str(tmp), "--json", str(written)], cwd=ROOT, check=True)
    run: dict[str, Any] = json.loads(written.read_text())
    return run


def expected_outcomes(fleet: dict[str, Any]) -> dict[str, tuple[str, int]]:
    """Per experiment, the decision and number of checks its data call for. The treatment's effect decides at the
    cap (promote) unless a check finds a sample ratio mismatch first (p < 0.001 at any of the four checks: ~0.3% of
    experiments, by chance): then a guardrail stop at that check. Computed from the assignments the metrics store
    recorded, by the same SRM test, independently of the workflows."""
    split = fleet["spec"]["allocation"]["split"] or {}
    checks_per_experiment = fleet["checks_per_workflow"]
    recorded = embedded_stores.hourly_assignments(Path(fleet["data_dir"]))
    expected = {}
    for i in range(N):
        key, seen = f"fleet-{i:04d}", Counter[str]()
        outcome = ("promote", checks_per_experiment)
        for k in range(1, checks_per_experiment + 1):
            for hour in range((k - 1) * CHECK_EVERY_HOURS, k * CHECK_EVERY_HOURS):
                seen.update(recorded.get(key, {}).get(hour, {}))
            srm = srm_test(seen, split, PARAMS.srm_p_threshold)
            if srm is not None and srm.flagged:
                outcome = ("guardrail_stop", k)
                break
        expected[key] = outcome
    return expected


def test_the_load_figures(fleet: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    window = fleet["windows"][0]
    late = window["lateness"]
    with capsys.disabled():
        print(f"\nload: {N} experiments, a checkpoint each every {INTERVAL:g} s ({N / INTERVAL:.1f}/s offered), "
              f"{fleet['checks_per_workflow']} per experiment; {fleet['wall_seconds']:.0f} s wall "
              f"(set-up of all {N} done after {window['ready_seconds']:.0f} s)")
        print(f"  {window['completions']} checkpoints, {window['throughput']:.1f}/s sustained; lateness p50 "
              f"{late['p50']:.3f} s, p99 {late['p99']:.3f} s, "
              f"max {late['max']:.3f} s (limit: one interval, {INTERVAL:g} s)")
        print(f"  worker: CPU {window['worker_cpu']:.0f} s {window['worker_threads_cpu']}, peak RSS "
              f"{window['worker_peak_rss_kib'] / 1024:.0f} MiB (limit {RSS_LIMIT_MIB} MiB)")
        print(f"  server: CPU {window['server_cpu']:.0f} s, peak RSS {window['server_peak_rss_kib'] / 1024:.0f} MiB, "
              f"{'healthy' if fleet['server_healthy'] else 'UNHEALTHY'} ({fleet['server_health']}), "
              f"{fleet['server_log_errors']} error lines in its log; others on the machine "
              f"{window['other_cpu']:.0f} CPU s")
        print(f"  closed: {fleet['statuses']}; decisions: "
              f"{dict(Counter(run['result']['decision']['state'] for run in fleet['executions'] if run['result']))}")
    assert window["completions"]


def test_every_experiment_decides_as_its_data_call_for_with_every_checkpoint_once(fleet: dict[str, Any]) -> None:
    assert Counter(fleet["statuses"]) == Counter({"completed": N}), fleet["statuses"]
    expected = expected_outcomes(fleet)
    wrong: list[str] = []
    for run in fleet["executions"]:
        key = run["workflow_id"].removeprefix("exp-")
        state, checks = expected[key]
        report: dict[str, Any] = run["result"]
        decided = report["decision"]["state"]
        indexes = run["checks"]
        if decided != state:
            wrong.append(f"{key}: {decided} ({report['decision']['rationale'][:120]}), expected {state}")
        if indexes != list(range(1, checks + 1)):
            wrong.append(f"{key}: checkpoints {indexes}, expected 1..{checks} once each")
        receipts = [r["step"] for r in report["receipts"] if r["tool"] == "CheckMetrics" and r["ok"]]
        if len(receipts) != checks or len(set(receipts)) != checks:
            wrong.append(f"{key}: check receipts {receipts}, expected {checks} different ones")
    assert not wrong, "\n".join(wrong[:20])


def test_no_checkpoint_is_later_than_one_interval(fleet: dict[str, Any]) -> None:
    late = sorted(fleet["windows"][0]["late_checks"], reverse=True)
    assert late and late[0][0] <= INTERVAL, f"latest checkpoints (s, workflow, k): {late[:5]}"


def test_every_side_effect_is_applied_once_per_idempotency_key(fleet: dict[str, Any]) -> None:
    data_dir = Path(fleet["data_dir"])
    stored = embedded_stores.effects(data_dir)
    for store, tools in STORES.items():
        receipts = Counter(r["idempotency_key"] for run in fleet["executions"] if run["result"]
                           for r in run["result"]["receipts"] if r["tool"] in tools and r["ok"])
        assert all(count == 1 for count in receipts.values()), f"{store}: a receipt key twice"
        twice = {key: count for key, count in stored[store].items() if count != 1}
        assert not twice, f"{store}: applied more than once: {twice}"
        assert set(stored[store]) == set(receipts), (
            f"{store}: applied without a receipt {sorted(set(stored[store]) - set(receipts))[:5]}, "
            f"receipted but not applied {sorted(set(receipts) - set(stored[store]))[:5]}")
    assert embedded_stores.duplicate_exposures(data_dir) == {}, "a simulated hour was written twice"


def test_worker_memory_stays_bounded_and_the_server_healthy(fleet: dict[str, Any]) -> None:
    peak_mib = fleet["windows"][0]["worker_peak_rss_kib"] / 1024
    assert peak_mib < RSS_LIMIT_MIB, f"worker peak RSS {peak_mib:.0f} MiB"
    assert fleet["server_healthy"], fleet["server_health"]
