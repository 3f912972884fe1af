"""The dashboard snapshot page (self-contained, deterministic, escaped) and the embedded store that keeps it."""

from __future__ import annotations

import base64
import json
import math
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from abrollout.contracts.records import (
    ArmEffect,
    Checkpoint,
    DashboardData,
    DecisionState,
    GuardrailLine,
    ReceiptRecord,
)
from abrollout.contracts.spec import Effect, EffectKind
from abrollout.policy import PARAMS
from abrollout.report.charts.scales import downsample, nice_ticks
from abrollout.report.charts.svg import episodes
from abrollout.report.dashboard import render_dashboard
from abrollout.report.tables import keep_rows
from adapters.local_dashboards import LocalDashboards

HOSTILE = "<script>alert(1)</script>"
ARMS = ["control", "treatment_with_a_rather_long_descriptive_name", "treatment_b"]
DAYS = 14
HISTORIES = Path(__file__).parents[2] / "replay" / "histories"


def _hourly(hour: int) -> Checkpoint:
    """A guardrail check: latency creeps up in treatment_b until it breaches in the last hours."""
    users = 400 * hour
    latency_b = 2.0 + 0.3 * hour / (24 * DAYS) + (0.4 if hour > 24 * DAYS - 3 else 0.0)
    breaches = ["latency_p95"] if latency_b >= 2.5 else []
    return Checkpoint(
        kind="guardrail", index=hour, at_hours=float(hour), ref=f"chk-g-{hour:04d}", state=DecisionState.running,
        summary=f"latency_p95 {'BREACH' if breaches else 'ok'}", breaches=breaches,
        srm_p=0.2 + 0.7 * math.sin(hour) ** 2,
        assignments={"control": users, ARMS[1]: users + hour % 7, "treatment_b": users - hour % 5},
        guardrails={"latency_p95": {"control": 2.0 + 0.01 * math.sin(hour), ARMS[1]: 2.05, "treatment_b": latency_b},
                    "error_rate": {"control": 0.004, ARMS[1]: 0.0041, "treatment_b": float("nan")}},
    )


def _look(day: int) -> Checkpoint:
    """A daily analysis look: the estimate settles and the interval narrows as users accumulate."""
    width = 0.02 / math.sqrt(day)
    effects = {ARMS[1]: ArmEffect(estimate=0.006, ci_low=0.006 - width, ci_high=0.006 + width, relative=0.05,
                                  p_value=0.5 / day, boundary=2.8),
               "treatment_b": ArmEffect(estimate=0.001, ci_low=0.001 - width, ci_high=0.001 + width)}
    return Checkpoint(kind="analysis", index=day, at_hours=24.0 * day, ref=f"chk-a-{day:02d}",
                      state=DecisionState.running, summary=f"look {day}/{DAYS}", effects=effects,
                      srm_p=0.4, assignments={"control": 9600 * day, ARMS[1]: 9600 * day, "treatment_b": 9600 * day})


def fourteen_days(rationale: str = "latency_p95 breached for treatment_b; stopped") -> DashboardData:
    """A realistic 14-day run: 336 hourly checks, 14 narrowing looks, two treatments, a breach at the end."""
    checkpoints = sorted([*map(_hourly, range(1, 24 * DAYS + 1)), *map(_look, range(1, DAYS + 1))],
                         key=lambda c: c.at_hours)
    receipts = [ReceiptRecord(step="register", tool="RegisterExperiment", ok=True, ref="exp-17",
                              idempotency_key="ui-checkout:register:ab12")]
    receipts += [ReceiptRecord(step=f"check-{c.index}", tool="CheckMetrics", ok=True, ref=c.ref,
                               idempotency_key=f"ui-checkout:check-{c.index}:cd34") for c in checkpoints]
    receipts.append(ReceiptRecord(step="promote", tool="PromoteVariant", ok=False, ref="blocked", message=HOSTILE))
    return DashboardData(
        exp_key="ui-checkout-button", label="guardrail_stop", state=DecisionState.guardrail_stop, rationale=rationale,
        primary_metric="checkout_conv", mde="0.004 absolute", mde_effect=Effect(kind=EffectKind.absolute, value=0.004),
        arms=ARMS,
        split={"control": 34.0, ARMS[1]: 33.0, "treatment_b": 33.0}, exposure_percent=25,
        guardrails=[GuardrailLine(name="latency_p95", direction="<", threshold=2.5),
                    GuardrailLine(name="error_rate", direction="<", threshold=0.01)],
        checkpoints=checkpoints, receipts=receipts)


def empty() -> DashboardData:
    return fourteen_days().model_copy(update={"checkpoints": [], "receipts": [], "state": DecisionState.running,
                                              "label": "start", "rationale": "started"})


@pytest.fixture(scope="module")
def page() -> str:
    return render_dashboard(fourteen_days(rationale=f"stopped {HOSTILE}"))


def test_page_shows_every_section(page: str) -> None:
    for heading in ("Primary metric: cumulative effect", "Guardrails", "Assignment health", "Checks", "Receipts"):
        assert f"<h2>{heading}</h2>" in page
    assert "guardrail stop</span>" in page and "must stay &lt; 2.5" in page


def test_one_svg_per_chart(page: str) -> None:
    # 2 treatment effect charts, 2 guardrails, SRM, traffic
    assert page.count("<svg") == 6
    assert page.count("</svg>") == 6


def test_breaches_are_marked(page: str) -> None:
    assert page.count('class="breach"') == 1  # one episode of three breaching checks
    assert "BREACH from 334 h (day 13.9), 3 checks in a row: treatment_b" in page
    assert "latency_p95</b> first breached" in page


def test_hostile_strings_are_escaped(page: str) -> None:
    assert HOSTILE not in page
    assert page.count("&lt;script&gt;alert(1)&lt;/script&gt;") == 2


def test_nothing_is_loaded_from_outside(page: str) -> None:
    assert "http://" not in page and "https://" not in page
    assert not re.search(r"<(script|link|img|iframe)\b", page)
    assert "default-src 'none'" in page


def test_rendering_is_deterministic() -> None:
    assert render_dashboard(fourteen_days()) == render_dashboard(fourteen_days())


def test_fourteen_days_stay_small(page: str) -> None:
    assert len(page.encode()) < 400_000


def test_long_runs_are_downsampled() -> None:
    base = fourteen_days()
    long_run = base.model_copy(update={"checkpoints": [_hourly(h) for h in range(1, 24 * 90 + 1)]})
    html = render_dashboard(long_run)
    longest = max(len(points.split()) for points in re.findall(r'<polyline[^>]*points="([^"]*)"', html))
    assert longest <= 500
    assert len(html.encode()) < 400_000


def test_no_checkpoints_shows_placeholders() -> None:
    html = render_dashboard(empty())
    assert "<svg" not in html
    assert "No analysis looks yet" in html and "No checks yet" in html and "No SRM checks yet" in html


def test_one_point_equal_values_and_nan_render() -> None:
    flat = Checkpoint(kind="guardrail", index=0, at_hours=0.0, ref="chk-0", state=DecisionState.running, summary="",
                      srm_p=1.0, assignments={"control": 0, "treatment_b": 0},
                      guardrails={"latency_p95": {"control": 2.5, "treatment_b": float("nan")}})
    nan_look = _look(2).model_copy(update={"effects": {"treatment_b": ArmEffect(
        estimate=float("nan"), ci_low=0.0, ci_high=1.0)}})
    html = render_dashboard(fourteen_days().model_copy(update={"checkpoints": [flat, _look(1), nan_look]}))
    assert html.count("<svg") == 5  # error_rate has no value yet: a placeholder, not an empty chart
    assert "No checks yet" in html
    assert not re.search(r'="[^"]*(nan|inf)', html, re.IGNORECASE)


def test_absolute_mde_is_drawn_either_side_of_zero(page: str) -> None:
    assert "Dashed lines: ±MDE (0.004 absolute)." in page
    assert page.count('<line class="ref-mde"') == 4  # +MDE and -MDE on each of the two effect charts
    assert ">+MDE 0.004</text>" in page and ">-MDE 0.004</text>" in page


def test_relative_mde_is_stated_not_drawn() -> None:
    relative = Effect(kind=EffectKind.relative, value=5)
    html = render_dashboard(fourteen_days().model_copy(update={"mde": "5% relative", "mde_effect": relative}))
    assert "MDE (5% relative) is relative, so it is not drawn" in html
    assert 'class="ref-mde"' not in html


def _saved_snapshots(history: Path) -> list[dict[str, Any]]:
    """The DashboardData of every SnapshotDashboard call in a saved workflow history, as it was recorded."""
    events = json.loads(history.read_text())["history"]["events"]
    scheduled = [e["activityTaskScheduledEventAttributes"] for e in events
                 if e.get("activityTaskScheduledEventAttributes", {}).get("activityType", {}).get("name")
                 == "SnapshotDashboard"]
    return [json.loads(base64.b64decode(a["input"]["payloads"][0]["data"]))["args"]["data"] for a in scheduled]


@pytest.mark.parametrize("history", sorted(HISTORIES.glob("*.json")), ids=lambda p: p.stem)
def test_snapshots_recorded_before_the_typed_mde_still_render(history: Path) -> None:
    saved = _saved_snapshots(history)
    assert saved and all("mde_effect" not in data for data in saved)
    for raw in saved:
        data = DashboardData.model_validate(raw)
        html = render_dashboard(data)
        assert data.mde_effect is None and f"The MDE ({data.mde}) is not drawn." in html
        assert 'class="ref-mde"' not in html and "<h2>Receipts</h2>" in html


def test_srm_line_is_the_policy_threshold(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("abrollout.report.charts.health.PARAMS", replace(PARAMS, srm_p_threshold=0.01))
    html = render_dashboard(fourteen_days())
    assert "below 0.01 the split is broken" in html and ">p 0.01</text>" in html


def test_nice_ticks_are_round_and_cover_the_values() -> None:
    assert nice_ticks(0.0013, 0.0087) == [0.0, 0.002, 0.004, 0.006, 0.008, 0.01]
    assert nice_ticks(5.0, 5.0)[0] <= 5.0 <= nice_ticks(5.0, 5.0)[-1]


def test_downsample_keeps_ends_and_spikes() -> None:
    values = [0.0] * 3000
    values[1234] = 9.0
    kept = downsample(values, float, limit=100)
    assert len(kept) <= 100 and 9.0 in kept


def test_episodes_are_runs_of_flagged_checks() -> None:
    assert episodes([True, True, False, True, False, False, True]) == [(0, 2), (3, 1), (6, 1)]
    assert episodes([]) == []


def test_keep_rows_keeps_the_tail_and_what_matters() -> None:
    assert keep_rows(list("abcdefghij"), 3, [2, 8]) == ["c", "h", "i", "j"]


async def test_publish_writes_one_file_per_content(tmp_path: Path) -> None:
    store = LocalDashboards(tmp_path)
    first = await store.publish("<p>a</p>", "ui-checkout-button", "start")
    again = await store.publish("<p>a</p>", "ui-checkout-button", "start")
    other = await store.publish("<p>b</p>", "ui-checkout-button", "promote")
    assert first == again != other
    assert re.fullmatch(r"dash-[0-9a-f]{16}", first)
    folder = tmp_path / "ui-checkout-button"
    assert sorted(p.name for p in folder.iterdir()) == sorted([f"{first}.html", f"{other}.html", "latest.html"])
    assert store.path_of(first, "ui-checkout-button").read_text() == "<p>a</p>"
    assert (folder / "latest.html").read_text() == "<p>b</p>"


async def test_publish_refuses_paths_outside_the_store(tmp_path: Path) -> None:
    store = LocalDashboards(tmp_path)
    with pytest.raises(ValueError):
        await store.publish("<p>a</p>", "../escape", "start")
    with pytest.raises(ValueError):
        store.path_of("../../etc/passwd", "ui-checkout-button")


async def test_a_failed_write_leaves_no_temp_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(src: str, dst: Path) -> None:
        raise OSError("disk full")

    monkeypatch.setattr("adapters.local_dashboards.os.replace", refuse)
    with pytest.raises(OSError):
        await LocalDashboards(tmp_path).publish("<p>a</p>", "ui-checkout-button", "start")
    assert list((tmp_path / "ui-checkout-button").iterdir()) == []
