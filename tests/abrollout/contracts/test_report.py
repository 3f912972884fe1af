"""The output contract: the 100-word summary limit and clipping."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from abrollout.contracts.records import DecisionState
from abrollout.contracts.report import (
    AllocationReport,
    DecisionReport,
    Monitoring,
    Registration,
    Report,
    clip_words,
    word_count,
)


def _report(summary: str) -> Report:
    return Report(
        summary=summary,
        registration=Registration(exp_id=None, exp_key="k", primary_metric="m", metrics=["m"], hypothesis="h",
                                  guardrails=["m < 1"], mde="5% relative", policy="exp_policy.v5", spec_hash="x"),
        allocation=AllocationReport(arms=["control", "t"], traffic_split={"control": 50, "t": 50},
                                    exposure_rules=[], population="all_users", exposure_percent=0),
        monitoring=Monitoring(run_id=None, dashboards=[], checkpoints=[]),
        decision=DecisionReport(state=DecisionState.running, rationale="registered", receipts=[]),
        citations=[],
        tool_proposals=[],
    )


def test_summary_of_100_words_is_accepted() -> None:
    assert word_count(_report(" ".join(["word"] * 100)).summary) == 100


def test_summary_of_101_words_is_refused() -> None:
    with pytest.raises(ValidationError, match="101 words"):
        _report(" ".join(["word"] * 101))


def test_clip_words_keeps_the_limit_and_marks_the_cut() -> None:
    clipped = clip_words(" ".join(str(i) for i in range(300)))
    assert word_count(clipped) == 100
    assert clipped.endswith("…")
    assert clip_words("short text") == "short text"


def test_report_schema_names_every_contract_section() -> None:
    schema = Report.model_json_schema()
    assert set(schema["required"]) == {"summary", "registration", "allocation", "monitoring", "decision",
                                       "citations", "tool_proposals"}
