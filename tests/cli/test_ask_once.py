"""Ask once: on a TTY, all missing critical fields are asked for together, in one round."""

from __future__ import annotations

import io

from abrollout.spec.loader import check_raw, missing_critical
from cli.spec_input import ask_once


def test_asks_for_every_missing_field_once_and_completes_the_spec() -> None:
    raw = {"domain": "ui", "guardrails": [{"name": "error_rate", "threshold": 0.01, "direction": "<"}],
           "max_concurrent": 3}
    missing = missing_critical(raw)
    assert missing == ["treatment_spec", "primary_metric", "mde", "max_duration_days"]
    answers = iter(["{control: {c: 1}, treatment: {c: 2}}", "checkout_conv", "{kind: relative, value: 5}", "14"])
    prompts: list[str] = []

    def ask(prompt: str) -> str:
        prompts.append(prompt)
        return next(answers)

    completed = ask_once(raw, missing, ask, io.StringIO())
    assert len(prompts) == 4
    assert check_raw(completed).ok


def test_an_unanswered_field_stays_missing() -> None:
    raw = {"domain": "ui"}
    completed = ask_once(raw, ["mde"], lambda _: "", io.StringIO())
    assert "mde" not in completed
