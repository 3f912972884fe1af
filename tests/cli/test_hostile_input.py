"""Hostile and malformed specs and control payloads: always a clear refusal, never a crash or a traceback, in
bounded time and memory. Specs go through the one check that `validate` prints and `start` obeys
(`validate_raw`, or `check_text` for text), and the corpus through both commands."""

from __future__ import annotations

import io
import json
import math
import time
import tracemalloc
from collections.abc import Callable
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from abrollout.run.control import AlertRequest, AllocationChange, PromoteRequest, StopRequest
from abrollout.spec.loader import Validation, check_text, validate_raw
from abrollout.spec.problems import dotted, errors_only, show
from cli.main import main
from tests.conftest import BASE_SPEC
from tests.support.spec_numbers import FULL_SPEC, NUMBER_PATHS, FieldPath, with_values

SECONDS = 3.0
PEAK_BYTES = 256 * 1024 * 1024

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True, allow_infinity=True) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=30)


EDGE_NUMBERS: list[Any] = [True, False, 0, -1, -5, 0.5, 1.0, 14.0, 30, 1e308, -1e308, 1e-300, -1e-300, 5e-324,
                            1e154, 10**400]
hostile_numbers = (st.booleans() | st.integers() | st.floats(allow_nan=True, allow_infinity=True)
                   | st.sampled_from(EDGE_NUMBERS))
primary_metrics = st.sampled_from([
    FULL_SPEC["primary_metric"],
    {"name": "checkout_conv", "kind": "proportion", "baseline": 0.3},
    {"name": "checkout_conv", "kind": "proportion", "goal": "decrease", "baseline": 0.3},
])
mdes = st.sampled_from([FULL_SPEC["mde"], {"kind": "absolute", "value": 0.01}])


def _refused_or_valid(check: Validation, *, mapping: bool = True) -> None:
    """Valid with a plan and finite power figures, or refused with errors; every problem has a fix and names its
    field (an empty path, meaning the whole document, only for text that is not a mapping)."""
    if check.ok:
        assert check.spec is not None and check.plan is not None
        if check.power is not None:
            assert min(check.power.users_per_arm) >= 1 and check.power.total_users >= 1
            figures = (check.power.inflation_factor, check.power.days_needed, check.power.detectable_mde_at_cap)
            assert all(math.isfinite(x) for x in figures if x is not None), check.power
    else:
        assert check.spec is None and errors_only(check.problems), "a refusal lists its errors"
    for problem in check.problems:
        assert problem.fix and (problem.path or not mapping), problem


def _run(*argv: str) -> tuple[int, str]:
    """A starter.py command run in this process: its exit code and what it wrote to stderr."""
    err = io.StringIO()
    with redirect_stdout(io.StringIO()), redirect_stderr(err):
        code = main(list(argv))
    return code, err.getvalue()


def _validate_then_start(path: Path, valid: bool) -> None:
    """`validate` exits 0 exactly when the one check passes, else 2 (never 1); `start` then refuses the same spec
    with the same words, before it connects to anything (nothing listens on the address it is given)."""
    code, err = _run("validate", str(path))
    assert code == (0 if valid else 2), err
    if not valid:
        assert _run("start", str(path), "--address", "127.0.0.1:1") == (2, err)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=400))
def test_any_text_is_a_spec_or_a_clear_refusal(text: str) -> None:
    _refused_or_valid(check_text(text), mapping=False)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from([*BASE_SPEC, "allocation", "ramp", "schedule", "simulation", "x"]),
                       json_values, max_size=8))
def test_any_mapping_is_a_spec_or_a_clear_refusal(overrides: dict[str, Any]) -> None:
    _refused_or_valid(validate_raw({**BASE_SPEC, **overrides}))


@settings(max_examples=500, deadline=None)
@given(st.dictionaries(st.sampled_from(NUMBER_PATHS), hostile_numbers, min_size=1, max_size=4), primary_metrics, mdes)
def test_any_number_anywhere_is_planned_or_refused(numbers: dict[FieldPath, Any],
                                                   metric: dict[str, Any], mde: dict[str, Any]) -> None:
    """Booleans, huge, tiny, negative and non-finite numbers in every numeric field of a spec that plans."""
    _refused_or_valid(validate_raw(with_values({("primary_metric",): metric, ("mde",): mde, **numbers})))


@pytest.mark.parametrize("number", EDGE_NUMBERS, ids=show)
@pytest.mark.parametrize("path", NUMBER_PATHS, ids=dotted)
def test_edge_numbers_in_every_field_validate_and_start_alike(path: FieldPath, number: Any,
                                                              tmp_path: Path) -> None:
    """Each edge value in each numeric field: the one check plans or refuses it (a boolean always, at its field),
    and the commands agree with it."""
    raw = with_values({path: number})
    check = validate_raw(raw)
    _refused_or_valid(check)
    if isinstance(number, bool):
        assert not check.ok and any(p.path == dotted(path) and "not true/false" in p.fix for p in check.problems)
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(raw))
    _validate_then_start(spec, check.ok)


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
    "five-thousand-digits": lambda: json.dumps(BASE_SPEC).replace('"max_concurrent": 5',
                                                                  '"max_concurrent": ' + "9" * 5000),
    "thirteenth-month": lambda: "domain: ui\nhypothesis: 2026-13-45",
    "list-as-key": lambda: "? [domain, ui]\n: x",
    "boolean-duration": lambda: json.dumps({**BASE_SPEC, "max_duration_days": True}),
    "boolean-concurrency": lambda: json.dumps({**BASE_SPEC, "max_concurrent": True}),
    "percent-as-proportion": lambda: json.dumps(with_values({("primary_metric",): {
        "name": "checkout_conv", "kind": "proportion", "baseline": 30}})),
    "mde-underflow": lambda: json.dumps(with_values({("mde",): {"kind": "absolute", "value": 1e-300}})),
    "variance-overflow": lambda: json.dumps(with_values({("primary_metric", "baseline_sd"): 1e308})),
}


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_malformed_specs_are_refused_in_bounded_time_and_memory(name: str) -> None:
    text = CORPUS[name]()
    tracemalloc.start()
    started = time.thread_time()  # this thread's CPU time: what the check costs, whatever else the machine runs
    try:
        check = check_text(text, name)
        elapsed = time.thread_time() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert not check.ok, f"{name} must be refused"
    assert check.problems and all(p.fix for p in check.problems)
    assert elapsed < SECONDS, f"{name} took {elapsed:.1f} CPU s"
    assert peak < PEAK_BYTES, f"{name} peaked at {peak // 2**20} MiB"


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_the_corpus_is_refused_alike_by_validate_and_start(name: str, tmp_path: Path) -> None:
    spec = tmp_path / f"{name}.yaml"
    spec.write_text(CORPUS[name](), encoding="utf-8")
    _validate_then_start(spec, valid=False)
