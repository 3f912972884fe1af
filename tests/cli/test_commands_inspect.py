"""`status`, `report`, `list`, `watch` and `history`: what they print of a running, a decided and a terminated
experiment, and the exit code that says which."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest
from temporalio.api.enums.v1 import EventType

from abrollout.contracts.report import Report
from abrollout.run.control import AlertRequest, StopRequest
from client.exits import OK, RUNTIME_FAILURE
from tests.cli.test_commands import GOLDEN, Lab, Shown, lab_fixture  # noqa: F401
from workflows.experiment import ExperimentWorkflow

SETUP = ["register", "flag", "run", "allocate-0", "snapshot-start"]
CLOSING = ["stop", "rollback", "snapshot-final"]
SAFETY_NET_HINT = ("the safety net returns such an experiment's flag to control at its next sweep (every worker keeps "
                   "its schedule); `python starter.py reconcile` runs one now")


def ended_by_hand(name: str) -> str:
    return f"error: exp-{name} ended without a decision: terminated (by hand); {SAFETY_NET_HINT}\n"


RECEIPT = re.compile(r"\s*(?:#\d+\s+)?(?:ok|NOT)\s+(\S+)\s")
"""A receipt line: `history` puts `#event id` first, a report indents it."""


def steps(shown: Shown) -> list[str]:
    """The steps of the receipt lines, in the order printed."""
    return [m[1] for m in map(RECEIPT.match, shown.out.splitlines()) if m]


async def stop(lab: Lab, name: str, reason: str) -> None:
    handle = lab.handle(name)
    await handle.execute_update(ExperimentWorkflow.request_stop, StopRequest(reason=reason))
    await handle.result()


@pytest.fixture(scope="module")
async def decided(lab: Lab) -> str:
    """An experiment that ran one guardrail check (on an alert) and was then stopped: rolled back."""
    handle = await lab.started("decided")
    await handle.signal(ExperimentWorkflow.alert, AlertRequest(reason="a page"))
    await lab.checked("decided")
    await stop(lab, "decided", "inspected")
    return "decided"


@pytest.fixture(scope="module")
async def terminated(lab: Lab) -> str:
    """An experiment whose workflow was terminated past its set-up: it ended without a decision."""
    handle = await lab.started("terminated")
    await handle.terminate(reason="by hand")
    return "terminated"


async def test_status_of_a_running_experiment(lab: Lab) -> None:
    await lab.started("status-running")
    shown = await lab.starter("status", "exp-status-running")
    assert (shown.code, shown.err) == (OK, "")
    assert shown.out == ("status-running: running\n"
                         "  registered; waiting for the first check\n"
                         "  exposure 100% of eligible users; split control 50%, treatment 50%\n"
                         "  receipts: 5 tool calls, 0 not ok\n")


@pytest.mark.parametrize("command", ["status", "report", "watch"])
async def test_a_terminated_experiment_exits_1_saying_how_it_ended(lab: Lab, terminated: str, command: str) -> None:
    shown = await lab.starter(command, terminated)
    assert (shown.code, shown.out, shown.err) == (RUNTIME_FAILURE, "", ended_by_hand(terminated))


async def test_a_decided_experiment_is_read_back_without_a_worker(lab: Lab, tmp_path: Path) -> None:
    """A closed experiment's report is its workflow's result, which the server keeps: no worker needs to answer."""
    async with lab.alone(tmp_path / "data") as alone:
        await alone.started("no-worker-needed")
        await stop(alone, "no-worker-needed", "done")
    status = await alone.starter("status", "no-worker-needed")
    assert (status.code, status.err) == (OK, "")
    assert status.out.splitlines()[:2] == ["no-worker-needed: rollback", "  manual stop: done"]
    report = await alone.starter("report", "no-worker-needed", "--json")
    assert (report.code, report.err) == (OK, "")
    assert Report.model_validate_json(report.out) == await alone.handle("no-worker-needed").result()


async def test_report_prints_the_registration_the_decision_and_the_receipts(lab: Lab, decided: str) -> None:
    result = await lab.handle(decided).result()
    shown = await lab.starter("report", decided)
    assert (shown.code, shown.err) == (OK, "")
    lines = shown.out.splitlines()
    assert lines[0] == result.summary and "decided (ui) is rollback: manual stop: inspected" in lines[0]
    assert f"registration: {result.registration.exp_id} (exp_policy.v5), primary engagement, MDE 2% relative" in lines
    assert steps(shown) == SETUP + CLOSING, "every receipt but the checks, in order"
    assert "  (+ 1 CheckMetrics receipts; `starter.py history ID` lists every one with its event id)" in lines
    assert lines[-1].startswith("citations: ") and "exp_policy.v5#manual.1" in lines[-1]


async def test_report_json_is_exactly_the_output_contract(lab: Lab) -> None:
    handle = await lab.started("report-json")
    shown = await lab.starter("report", "report-json", "--json")
    assert (shown.code, shown.err) == (OK, "")
    assert shown.out == (await handle.query(ExperimentWorkflow.report)).model_dump_json(indent=2) + "\n"


async def test_report_open_names_the_latest_dashboard_snapshot(lab: Lab, decided: str, tmp_path: Path) -> None:
    result = await lab.handle(decided).result()
    page = Path("dashboards") / decided / f"{result.monitoring.dashboards[-1]}.html"
    assert (lab.data_dir / page).is_file(), "the worker wrote the snapshot"
    shown = await lab.starter("report", decided, "--open", "--data-dir", str(lab.data_dir))
    assert (shown.code, shown.err) == (OK, f"dashboard: {(lab.data_dir / page).resolve()}\n")
    assert shown.out.startswith(result.summary)
    elsewhere = await lab.starter("report", decided, "--open", "--data-dir", str(tmp_path))
    assert elsewhere.code == RUNTIME_FAILURE and elsewhere.out.startswith(result.summary)
    assert elsewhere.err == (f"error: {tmp_path / page} is not here; fix: run report --open where the worker's "
                             "ABROLLOUT_DATA_DIR is\n")


def rows(shown: Shown) -> dict[str, list[str]]:
    """`list` rows by workflow id, cells split on runs of two spaces (`no decision` keeps its one)."""
    return {cells[0]: cells[1:5] for cells in (re.split(r" {2,}", line) for line in shown.out.splitlines()[1:])}


async def test_list_shows_each_experiment_with_its_state_and_filters(lab: Lab, decided: str, terminated: str) -> None:
    await lab.started("listed-ranking", GOLDEN / "abn.yaml")
    expected = {"exp-decided": ["rollback", "completed", "ui", "engagement"],
                "exp-terminated": ["no decision", "terminated", "ui", "engagement"],
                "exp-listed-ranking": ["running", "running", "ranking", "ctr"]}
    for _ in range(200):  # visibility (what `list` reads) follows the workflows a moment later
        shown = await lab.starter("list")
        if {key: rows(shown).get(key) for key in expected} == expected:
            break
        await asyncio.sleep(0.05)
    assert (shown.code, shown.err) == (OK, "")
    assert re.split(r" {2,}", shown.out.splitlines()[0]) == ["workflow id", "state", "status", "domain",
                                                            "primary metric", "started (UTC)"]
    assert {key: rows(shown).get(key) for key in expected} == expected
    filtered = {flags: set(rows(await lab.starter("list", *flags))) & set(expected)
                for flags in [("--state", "running"), ("--state", "rollback"), ("--domain", "ranking")]}
    assert filtered == {("--state", "running"): {"exp-listed-ranking"}, ("--state", "rollback"): {"exp-decided"},
                        ("--domain", "ranking"): {"exp-listed-ranking"}}


async def test_watch_follows_a_running_experiment_to_its_decision(lab: Lab) -> None:
    handle = await lab.started("watched")
    watching = asyncio.create_task(lab.starter("watch", "watched"))
    await handle.signal(ExperimentWorkflow.alert, AlertRequest(reason="a page"))
    await lab.checked("watched")
    await stop(lab, "watched", "seen enough")
    shown = await watching
    assert (shown.code, shown.err) == (OK, "")
    assert steps(shown) == [*SETUP, "check-alert-0", *CLOSING, *SETUP, *CLOSING], \
        "each receipt once, as it arrived, then the report's"
    assert any(re.match(r"\[(running|rollback)\] latest check: ", line) for line in shown.out.splitlines())
    assert "watched (ui) is rollback: manual stop: seen enough" in shown.out


@pytest.mark.parametrize("quiet", [False, True], ids=["every receipt", "quiet"])
async def test_watch_of_a_decided_experiment_prints_its_receipts_and_report(lab: Lab, decided: str,
                                                                           quiet: bool) -> None:
    shown = await lab.starter("watch", decided, *(["--quiet"] if quiet else []))
    assert (shown.code, shown.err) == (OK, "")
    checks = [] if quiet else ["check-alert-0"]
    assert steps(shown) == [*SETUP, *checks, *CLOSING, *SETUP, *CLOSING], "the receipts, then the report's"
    assert "\n\ndecided (ui) is rollback: manual stop: inspected" in shown.out


async def test_history_lists_every_receipt_with_its_event_id(lab: Lab, decided: str) -> None:
    shown = await lab.starter("history", decided)
    assert (shown.code, shown.err) == (OK, "")
    completed = [e.event_id for e in (await lab.handle(decided).fetch_history()).events
                 if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED]
    assert [int(line.split()[0].removeprefix("#")) for line in shown.out.splitlines()] == completed
    assert steps(shown) == [*SETUP, "check-alert-0", *CLOSING]


async def test_history_of_a_terminated_experiment_lists_its_receipts_then_exits_1(lab: Lab, terminated: str) -> None:
    shown = await lab.starter("history", terminated)
    assert (shown.code, shown.err) == (RUNTIME_FAILURE, ended_by_hand(terminated))
    assert steps(shown) == SETUP
