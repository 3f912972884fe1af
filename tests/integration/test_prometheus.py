"""Operational guardrails against a real Prometheus: remote write, per-arm PromQL guardrails, TSDB snapshots, and
the simulator's mirror of guardrail metrics."""

from __future__ import annotations

import math
import time
from collections.abc import AsyncIterator

import httpx
import pytest

from abrollout.contracts.spec import Guardrail, Simulation
from abrollout.flags.evaluate import FlagState, FlexibleRollout, Variant
from adapters.prometheus import PrometheusGuardrails, PrometheusQueryError
from adapters.prometheus_remote_write import PrometheusMirror, RemoteWriteError, Sample, remote_write
from adapters.protocols import AdapterConfigError
from adapters.simulator import Rows, simulate_hour
from devserver import free_port
from tests.support.servers.prometheus import Prometheus

LATENCY_QUERY = 'last_over_time(abrollout_latency_p95{experiment="$experiment"}[$window])'


@pytest.fixture
async def guardrails(prometheus: Prometheus) -> AsyncIterator[PrometheusGuardrails]:
    adapter = PrometheusGuardrails(prometheus.url)
    yield adapter
    await adapter.aclose()


def now_ms() -> int:
    return time.time_ns() // 1_000_000


async def write(prometheus: Prometheus, samples: list[Sample]) -> None:
    async with httpx.AsyncClient(timeout=10) as client:
        await remote_write(client, prometheus.write_url, samples)


async def range_values(prometheus: Prometheus, selector: str, minutes: int) -> list[tuple[int, float]]:
    """Every stored sample of one series in the last `minutes`: (timestamp ms, value)."""
    async with httpx.AsyncClient(base_url=prometheus.url, timeout=10) as client:
        body = (await client.get("/api/v1/query", params={"query": f"{selector}[{minutes}m]"})).json()
    assert body["status"] == "success" and body["data"]["resultType"] == "matrix", body
    (series,) = body["data"]["result"]
    return [(round(float(t) * 1000), float(v)) for t, v in series["values"]]


async def test_remote_write_round_trips_values_labels_and_past_timestamps(prometheus: Prometheus) -> None:
    t = now_ms()
    labels = {"experiment": "rw-test", "arm": "treatment", "zone": "eu-west ü"}
    # The newer sample first: the older one is then out of order, which the configured window accepts.
    await write(prometheus, [Sample("abrollout_rw_test", labels, 2.5, t - 60_000),
                             Sample("abrollout_rw_test", {**labels, "arm": "control"}, 7.0, t - 60_000)])
    await write(prometheus, [Sample("abrollout_rw_test", labels, -0.125, t - 600_000)])

    values = await range_values(prometheus, 'abrollout_rw_test{arm="treatment",zone="eu-west ü"}', 15)
    assert values == [(t - 600_000, -0.125), (t - 60_000, 2.5)]
    assert await range_values(prometheus, 'abrollout_rw_test{arm="control"}', 15) == [(t - 60_000, 7.0)]


async def test_refused_write_raises_with_prometheus_reason(prometheus: Prometheus) -> None:
    too_old = now_ms() - 60 * 86_400_000  # beyond the 30-day out-of-order window
    with pytest.raises(RemoteWriteError, match=r"refused: HTTP 5\d\d too old sample"):  # 2.42 answers 500
        await write(prometheus, [Sample("abrollout_rw_old", {"arm": "control"}, 1.0, too_old)])


async def test_observe_returns_per_arm_values_and_breach_follows_must_hold(
        prometheus: Prometheus, guardrails: PrometheusGuardrails) -> None:
    t = now_ms()
    await write(prometheus, [
        Sample("abrollout_latency_p95", {"experiment": "obs-a", "arm": "control"}, 1.9, t - 5_000),
        Sample("abrollout_latency_p95", {"experiment": "obs-a", "arm": "treatment"}, 2.5, t - 5_000),
        Sample("abrollout_latency_p95", {"experiment": "obs-other", "arm": "treatment"}, 9.0, t - 5_000),
    ])
    latency = Guardrail(name="latency_p95", threshold=2.5, direction="<", query=LATENCY_QUERY)
    warehouse_only = Guardrail(name="defect_rate", threshold=0.02, direction="<")

    observed, queries = await guardrails.observe([latency, warehouse_only], "obs-a", window_seconds=15)

    assert observed == {"latency_p95": {"control": 1.9, "treatment": 2.5}}
    assert latency.holds(observed["latency_p95"]["control"])
    assert not latency.holds(observed["latency_p95"]["treatment"])  # equal to the threshold is a breach
    (query,) = queries
    assert query.startswith('last_over_time(abrollout_latency_p95{experiment="obs-a"}[60s]) # evaluated at ')
    async with httpx.AsyncClient(base_url=prometheus.url, timeout=10) as client:  # the receipt's text reruns as is
        rerun = (await client.get("/api/v1/query", params={"query": query})).json()
    assert {s["metric"]["arm"]: float(s["value"][1]) for s in rerun["data"]["result"]} == observed["latency_p95"]


async def test_series_without_arm_and_non_finite_values_are_skipped(
        prometheus: Prometheus, guardrails: PrometheusGuardrails) -> None:
    t = now_ms() - 5_000
    await write(prometheus, [
        Sample("abrollout_error_ratio", {"experiment": "skip-a", "arm": "control"}, 0.01, t),
        Sample("abrollout_error_ratio", {"experiment": "skip-a", "arm": "treatment"}, math.nan, t),
        Sample("abrollout_error_ratio", {"experiment": "skip-a"}, 0.5, t),
    ])
    ratio = Guardrail(name="error_ratio", threshold=0.05, direction="<",
                      query='last_over_time(abrollout_error_ratio{experiment="$experiment"}[$window])')

    observed, _ = await guardrails.observe([ratio], "skip-a", 60)

    assert observed == {"error_ratio": {"control": 0.01}}


async def test_query_without_data_observes_nothing(guardrails: PrometheusGuardrails) -> None:
    latency = Guardrail(name="latency_p95", threshold=2.5, direction="<", query=LATENCY_QUERY)
    observed, _ = await guardrails.observe([latency], "never-written", 60)
    assert observed == {"latency_p95": {}}


@pytest.mark.parametrize(("query", "message"), [
    ("sum(rate(abrollout_latency_p95[$window]", "bad_data"),
    ("scalar(vector(1))", "returned a scalar; it must return an instant vector"),
    ('last_over_time(abrollout_per_host{experiment="$experiment"}[$window])', "several series for arm 'control'"),
])
async def test_bad_query_raises_a_clear_error(prometheus: Prometheus, guardrails: PrometheusGuardrails,
                                              query: str, message: str) -> None:
    t = now_ms() - 5_000
    await write(prometheus, [Sample("abrollout_per_host", {"experiment": "err-a", "arm": "control", "host": host},
                                    1.0, t) for host in ("a", "b")])
    broken = Guardrail(name="latency_p95", threshold=2.5, direction="<", query=query)
    with pytest.raises(PrometheusQueryError, match="guardrail latency_p95") as raised:
        await guardrails.observe([broken], "err-a", 60)
    assert message in str(raised.value) and "\n" not in str(raised.value)


async def test_check_passes_when_ready_and_names_the_fix_when_not(guardrails: PrometheusGuardrails) -> None:
    await guardrails.check()
    nowhere = PrometheusGuardrails(f"http://user:hunter2@127.0.0.1:{free_port()}", timeout=2)
    try:
        with pytest.raises(AdapterConfigError, match=r"does not answer \(ConnectError\): start it") as raised:
            await nowhere.check()
    finally:
        await nowhere.aclose()
    assert "hunter2" not in str(raised.value)


async def test_tsdb_snapshot_names_a_snapshot_on_disk(prometheus: Prometheus,
                                                     guardrails: PrometheusGuardrails) -> None:
    name = await guardrails.tsdb_snapshot()
    assert name and (prometheus.storage / "snapshots" / name).is_dir()


class MemoryHours:
    """An HourStore in memory: an hour is written once, in order, as the real stores do."""

    def __init__(self) -> None:
        self.done: dict[str, int] = {}

    def hours_done(self, exp_key: str) -> int:
        return self.done.get(exp_key, 0)

    def write_hour(self, exp_key: str, hour: int, rows: Rows) -> int:
        if self.hours_done(exp_key) == hour:
            self.done[exp_key] = hour + 1
        return self.hours_done(exp_key)


def expected_means(rows: Rows, metric: str) -> dict[str, float]:
    """The hour's per-arm mean over exposed users, computed plainly (users without an event count as 0)."""
    arm_of = dict(zip(rows.exposures.user_id.tolist(), rows.exposures.arm.tolist(), strict=True))
    users = {arm: sum(1 for a in arm_of.values() if a == arm) for arm in set(arm_of.values())}
    sums = dict.fromkeys(users, 0.0)
    events = rows.metric_events
    for user, name, value in zip(events.user_id.tolist(), events.metric.tolist(), events.value.tolist(), strict=True):
        if name == metric:
            sums[arm_of[user]] += value
    return {arm: sums[arm] / users[arm] for arm in users}


async def test_mirror_pushes_each_written_hour_once_with_per_arm_means(prometheus: Prometheus) -> None:
    exp = "mirror-a"
    simulation = Simulation.model_validate({"seed": 3, "users_per_hour": 300, "metrics": {
        "latency_p95": {"mean": 1.9, "sd": 0.3}, "defect_rate": {"mean": 0.05}}})
    variants = (Variant(name="control", weight=500), Variant(name="treatment", weight=500, weight_type="fix"))
    flag = FlagState(name=exp, enabled=True, strategies=(
        FlexibleRollout(rollout=100, stickiness="userId", group_id=exp, variants=variants),))
    mirror = PrometheusMirror(MemoryHours(), prometheus.write_url,
                              {"latency_p95": "abrollout_latency_p95", "defect_rate": "abrollout_defect_rate"})
    hours = [simulate_hour(simulation, flag, hour) for hour in range(3)]
    try:
        for hour, rows in enumerate(hours):
            assert mirror.write_hour(exp, hour, rows) == hour + 1
            assert mirror.write_hour(exp, hour, rows) == hour + 1  # a retry writes and pushes nothing
        assert mirror.write_hour(exp, 1, hours[1]) == 3  # nor does a stale writer
    finally:
        mirror.close()

    for metric in ("latency_p95", "defect_rate"):
        for arm in ("control", "treatment"):
            pushed = await range_values(prometheus, f'abrollout_{metric}{{experiment="{exp}",arm="{arm}"}}', 5)
            assert [v for _, v in pushed] == pytest.approx([expected_means(rows, metric)[arm] for rows in hours],
                                                           rel=1e-12)
