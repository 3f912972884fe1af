"""Problems found in a spec, written for people: the field path, what was found, and how to fix it.

pydantic's errors are precise but read like a stack trace; `from_validation_error` rewrites each one so a
person can fix the spec without reading our source.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from enum import StrEnum
from typing import Any, get_args, get_origin

from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic_core import ErrorDetails

from abrollout.contracts import spec as spec_module

MAX_SHOWN_VALUE = 60


class Level(StrEnum):
    error = "error"
    warning = "warning"


class Problem(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    path: str
    found: str
    fix: str
    clause: str | None = None
    level: Level = Level.error

    def __str__(self) -> str:
        cited = f" [{self.clause}]" if self.clause else ""
        return f"{self.level.value}: {self.path or '(spec)'}: {self.found}; fix: {self.fix}{cited}"


def errors_only(problems: Iterable[Problem]) -> list[Problem]:
    return [p for p in problems if p.level is Level.error]


def show(value: object) -> str:
    """A short, safe rendering of a found value (specs may be hostile: cut long values)."""
    text = repr(value)
    return text if len(text) <= MAX_SHOWN_VALUE else text[: MAX_SHOWN_VALUE - 3] + "..."


def dotted(loc: Sequence[int | str]) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        else:
            parts.append(("." if parts else "") + item)
    return "".join(parts)


_PATTERN_HELP = {
    spec_module.EXPERIMENT_NAME_PATTERN: "a slug: 2-63 lowercase letters, digits or '-', starting with a letter",
    spec_module.ARM_PATTERN: "lowercase letters, digits or '_', starting with a letter, at most 32 characters",
    spec_module.METRIC_PATTERN: "letters, digits, '_' or '.', starting with a letter, at most 64 characters",
}

_MISSING_HELP = {
    "domain": "one of prompts, policies, ranking, pricing, ui",
    "treatment_spec": "arms by name with their config, e.g. {control: {prompt: v6}, treatment: {prompt: v7}}",
    "primary_metric": "the metric the decision rests on, e.g. signup_conv",
    "guardrails": "a list like [{name: latency_p95, threshold: 2.5, direction: '<'}]",
    "mde": "{kind: relative, value: 5} (percent of control) or {kind: absolute, value: 0.01} (metric units)",
    "max_duration_days": "the duration cap in days, e.g. 14",
    "max_concurrent": "how many experiments may run at once in this domain, e.g. 5",
    "threshold": "the number the guardrail metric is compared with",
    "direction": "'<' (must stay below the threshold) or '>' (must stay above)",
    "kind": "relative (percent) or absolute (metric units)",
    "value": "a positive number",
    "users_per_hour": "simulated users arriving per hour, e.g. 2000",
    "metrics": "simulated baselines, e.g. {signup_conv: {mean: 0.1}}",
}


def missing_help(name: str) -> str:
    """What to write for a missing field, with an example where one helps."""
    return _MISSING_HELP.get(name, "it is required")


def _model_at(loc: Sequence[int | str]) -> type[BaseModel] | None:
    """The spec model that owns the field at `loc`, found by walking type annotations."""
    model: type[BaseModel] = spec_module.ExperimentSpec
    for item in loc:
        if isinstance(item, int):
            continue
        field = model.model_fields.get(item)
        if field is None:
            return model
        nested = _find_model(field.annotation)
        if nested is None:
            return model
        model = nested
    return model


def _find_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if get_origin(annotation) is dict:
        return None
    for arg in get_args(annotation):
        found = _find_model(arg)
        if found is not None:
            return found
    return None


def _unknown_field(loc: Sequence[int | str]) -> str:
    owner = _model_at(loc[:-1])
    name = str(loc[-1])
    allowed = sorted(owner.model_fields) if owner else []
    close = difflib.get_close_matches(name, allowed, n=1)
    hint = f"did you mean '{close[0]}'? " if close else ""
    return f"{hint}remove it; allowed here: {', '.join(allowed)}"


def _fix_for(error: ErrorDetails) -> str:
    kind = error["type"]
    loc = error["loc"]
    ctx = error.get("ctx", {})
    last = str(loc[-1]) if loc else ""
    if kind == "missing":
        return f"add `{last}`: {missing_help(last)}"
    if kind == "extra_forbidden":
        return _unknown_field(loc)
    if kind == "string_pattern_mismatch":
        return _PATTERN_HELP.get(str(ctx.get("pattern")), f"match the pattern {ctx.get('pattern')}")
    if loc and loc[0] == "mde" and kind in {"model_type", "model_attributes_type"}:
        return "say what the MDE is: " + _MISSING_HELP["mde"]
    if loc and loc[0] == "primary_metric" and kind == "model_type":
        return "a metric name like signup_conv, or {name: signup_conv, goal: increase}"
    message = error["msg"]
    for prefix in ("Value error, ", "Assertion failed, "):
        message = message.removeprefix(prefix)
    return message[0].lower() + message[1:] if message else "see the spec reference in docs/spec.md"


def _found_for(error: ErrorDetails) -> str:
    if error["type"] == "missing":
        return "missing"
    if error["type"] == "extra_forbidden":
        return f"unknown field '{error['loc'][-1]}'"
    return f"found {show(error['input'])}"


def from_validation_error(exc: ValidationError, prefix: Sequence[int | str] = ()) -> list[Problem]:
    """One Problem per pydantic error, with the union noise (which member of a union failed) removed."""
    problems: list[Problem] = []
    seen: set[str] = set()
    for error in exc.errors(include_url=False):
        loc = [*prefix, *_clean_loc(error["loc"])]
        problem = Problem(path=dotted(loc), found=_found_for(error), fix=_fix_for({**error, "loc": tuple(loc)}),
                          clause="exp_policy.v5#spec.1" if error["type"] in {"missing", "extra_forbidden"} else None)
        if str(problem) not in seen:
            seen.add(str(problem))
            problems.append(problem)
    return problems


def _clean_loc(loc: Sequence[int | str]) -> list[int | str]:
    """Drop pydantic's union-member and validator tags (e.g. 'function-before[...]', 'str', 'float')."""
    noise = {"str", "int", "float", "bool", "constrained-str", "function-after[_finite(), float]"}
    return [item for item in loc if not (isinstance(item, str) and (item in noise or "[" in item))]
