"""Hostile and malformed specs and control payloads: always a clear refusal, never a crash or a traceback, in
bounded time and memory."""

from __future__ import annotations

import json
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from abrollout.control import AlertRequest, AllocationChange, PromoteRequest, StopRequest
from abrollout.spec_loader import SpecCheck, check_raw, check_text
from tests.conftest import BASE_SPEC

SECONDS = 3.0
PEAK_BYTES = 256 * 1024 * 1024

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True, allow_infinity=True) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=30)


def _refused_or_valid(check: SpecCheck) -> None:
    assert check.ok or check.problems, "a spec is either valid or refused with problems"
    for problem in check.problems:
        assert problem.path is not None and problem.fix


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=400))
def test_any_text_is_a_spec_or_a_clear_refusal(text: str) -> None:
    _refused_or_valid(check_text(text))


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from([*BASE_SPEC, "allocation", "ramp", "schedule", "simulation", "x"]),
                       json_values, max_size=8))
def test_any_mapping_is_a_spec_or_a_clear_refusal(overrides: dict[str, Any]) -> None:
    _refused_or_valid(check_raw({**BASE_SPEC, **overrides}))


@settings(max_examples=300, deadline=None)
@given(st.sampled_from([StopRequest, PromoteRequest, AllocationChange, AlertRequest]),
       st.dictionaries(st.sampled_from(["reason", "variant", "split", "exposure_rules", "ramp_step", "source", "x"]),
                       json_values, max_size=5))
def test_control_payloads_validate_or_refuse(model: Any, payload: dict[str, Any]) -> None:
    """A payload from the UI or CLI is either a valid request (that round-trips) or a refusal naming the field."""
    try:
        parsed = model.model_validate(payload)
    except ValidationError as exc:
        assert all(error["loc"] for error in exc.errors()), exc
        return
    assert model.model_validate(parsed.model_dump()) == parsed


CORPUS: dict[str, Callable[[], str]] = {
    "deep-yaml-nesting": lambda: "domain: ui\nx: " + "[" * 50_000 + "]" * 50_000,
    "deep-json-nesting": lambda: '{"domain": ' + "[" * 50_000 + "]" * 50_000 + "}",
    "huge-number": lambda: json.dumps({**BASE_SPEC, "max_duration_days": 10**400}),
    "huge-float": lambda: "\n".join(["domain: ui", "mde: {kind: relative, value: 1e400}"]),
    "nan-json": lambda: '{"domain": "ui", "mde": {"kind": "relative", "value": NaN}}',
    "infinity-yaml": lambda: "domain: ui\nmde: {kind: relative, value: .inf}",
    "duplicate-keys-json": lambda: '{"domain": "ui", "domain": "pricing"}',
    "unicode-names": lambda: "name: \u202eexp\u200b\ndomain: ui\ntreatment_spec: {contr\u00f6l: {}, \U0001f600: {}}",
    "ten-megabytes": lambda: "domain: ui\nhypothesis: " + "x" * 10_000_000,
    "billion-laughs": lambda: "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
                              "c: [*b, *b, *b, *b, *b, *b, *b, *b, *b]",
    "binary-garbage": lambda: bytes(range(256)).decode("latin-1") * 100,
    "long-rule": lambda: json.dumps({**BASE_SPEC, "allocation": {"exposure_rules": ["a == 1 and " * 5000]}}),
    "many-arms": lambda: json.dumps({**BASE_SPEC, "treatment_spec": {f"a{i}": {} for i in range(50_000)}}),
}


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_malformed_specs_are_refused_in_bounded_time_and_memory(name: str) -> None:
    text = CORPUS[name]()
    tracemalloc.start()
    started = time.perf_counter()
    try:
        check = check_text(text, name)
        elapsed = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert not check.ok, f"{name} must be refused"
    assert check.problems and all(p.fix for p in check.problems)
    assert elapsed < SECONDS, f"{name} took {elapsed:.1f} s"
    assert peak < PEAK_BYTES, f"{name} peaked at {peak // 2**20} MiB"
