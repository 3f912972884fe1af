"""Reading a spec file safely: YAML or JSON text -> validated, policy-checked, normalised ExperimentSpec, with
its plan and power plan.

Spec files come from people and scripts, sometimes hostile ones, so `parse_text` bounds what it reads and every
failure becomes a `Problem`; `validate_raw` is the one check that `validate` prints and `start` obeys.
"""

from __future__ import annotations

import json
import re
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml
from pydantic import ValidationError

from abrollout.contracts.spec import ExperimentSpec
from abrollout.contracts.verdicts import PowerPlan
from abrollout.plan.planner import ExperimentPlan, plan
from abrollout.policy import cite
from abrollout.spec.admission import check_policy, normalize
from abrollout.spec.power import power_plan, power_warnings, unplannable
from abrollout.spec.problems import Problem, errors_only, from_validation_error, missing_help
from abrollout.stats.power import PowerInputError

MAX_SPEC_BYTES = 1_000_000
MAX_DEPTH = 20
CRITICAL_FIELDS = ("treatment_spec", "primary_metric", "mde", "max_duration_days")


class SpecSyntaxError(ValueError):
    """The text is not a spec-shaped YAML/JSON document."""


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys (YAML keeps the last one silently) and aliases (a "billion laughs"
    expands exponentially)."""

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()  # type: ignore[no-untyped-call]
            raise yaml.MarkedYAMLError("while reading the spec", None, "YAML aliases (*name) are not allowed",
                                       event.start_mark)
        return super().compose_node(parent, index)

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Hashable, Any]:
        keys: set[object] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, Hashable):
                raise yaml.MarkedYAMLError("while reading a mapping", node.start_mark,
                                           "a key must be a name, not a list or mapping", key_node.start_mark)
            if key in keys:
                raise yaml.MarkedYAMLError("while reading a mapping", node.start_mark,
                                           f"duplicate key {key!r}", key_node.start_mark)
            keys.add(key)
        return super().construct_mapping(node, deep=deep)


def _json_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise SpecSyntaxError(f"duplicate key {key!r}")
        result[key] = value
    return result


def _refuse_constant(name: str) -> Any:
    raise SpecSyntaxError(f"{name} is not a number a spec may contain")


def _depth(value: Any, limit: int) -> int:
    """Nesting depth, stopping early past `limit` so hostile input costs little."""
    if limit < 0:
        return 1
    if isinstance(value, Mapping):
        return 1 + max((_depth(v, limit - 1) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(v, limit - 1) for v in value), default=0)
    return 0


_BRACKETS = re.compile(r"""[\[\]{}"']""")


def _flow_depth_exceeds(text: str, limit: int) -> bool:
    """True when `[`/`{` nest deeper than `limit` outside quotes. Parsers recurse per level, so a hostile
    `[[[[...` is refused before parsing instead of after seconds of recursion."""
    depth, quote = 0, ""
    for match in _BRACKETS.finditer(text):
        char = match.group()
        if quote:
            quote = "" if char == quote else quote
        elif char in "\"'":
            quote = char
        elif char in "[{":
            depth += 1
            if depth > limit:
                return True
        else:
            depth -= 1
    return False


def parse_text(text: str, source: str = "spec") -> dict[str, Any]:
    """YAML (JSON is YAML too, but is parsed strictly as JSON when it looks like JSON) -> a mapping.

    Bounded for hostile input: size and nesting are capped, and duplicate keys (both formats otherwise keep the
    last one silently), YAML aliases and NaN/Infinity are refused, each as a SpecSyntaxError.
    """
    if len(text.encode("utf-8", errors="replace")) > MAX_SPEC_BYTES:
        raise SpecSyntaxError(f"{source} is larger than {MAX_SPEC_BYTES // 1000} kB; a spec is a few kB")
    if _flow_depth_exceeds(text, MAX_DEPTH):
        raise SpecSyntaxError(f"{source} is nested more than {MAX_DEPTH} levels deep")
    try:
        if text.lstrip().startswith("{"):
            data = json.loads(text, object_pairs_hook=_json_object, parse_constant=_refuse_constant)
        else:
            data = yaml.load(text, Loader=_StrictLoader)
    except RecursionError:
        raise SpecSyntaxError(f"{source} is nested too deeply") from None
    except json.JSONDecodeError as exc:
        raise SpecSyntaxError(f"{source} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") \
            from None
    except yaml.YAMLError as exc:
        raise SpecSyntaxError(f"{source} is not valid YAML: {' '.join(str(exc).split())}") from None
    except SpecSyntaxError:
        raise
    except ValueError as exc:  # a value YAML or JSON cannot build: a 13th month, an int of 5000 digits, !!int "a"
        reason = str(exc).split(";")[0]
        raise SpecSyntaxError(f"{source} holds a value that cannot be read ({reason}): correct it, or quote it "
                              "if it is text") from None
    if not isinstance(data, dict):
        raise SpecSyntaxError(f"{source} must be a mapping of fields (domain:, treatment_spec:, ...), "
                              f"found {type(data).__name__}")
    if _depth(data, MAX_DEPTH) > MAX_DEPTH:
        raise SpecSyntaxError(f"{source} is nested more than {MAX_DEPTH} levels deep")
    return data


def missing_critical(raw: Mapping[str, Any]) -> list[str]:
    """The critical fields (asked for together, once) that the raw spec lacks."""
    return [name for name in CRITICAL_FIELDS if raw.get(name) in (None, "", {}, [])]


@dataclass
class SpecCheck:
    """The outcome of checking a raw spec: the normalised spec when there are no errors, and all problems."""

    spec: ExperimentSpec | None
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.spec is not None and not errors_only(self.problems)


def check_raw(raw: Mapping[str, Any]) -> SpecCheck:
    """Validate structure, then policy; every problem is reported, not just the first."""
    missing = [Problem(path=name, found="missing", fix=f"add `{name}` (a critical field): {missing_help(name)}",
                       clause=cite("spec.1")) for name in missing_critical(raw)]
    try:
        spec = ExperimentSpec.model_validate(dict(raw))
    except ValidationError as exc:
        structural = [p for p in from_validation_error(exc) if p.path not in {m.path for m in missing}]
        return SpecCheck(None, [*missing, *structural])
    problems = check_policy(spec)
    if errors_only(problems):
        return SpecCheck(None, problems)
    return SpecCheck(normalize(spec), problems)


@dataclass
class Validation(SpecCheck):
    """The whole check: when the spec is valid, everything `validate` prints (the normalised spec, its plan, its
    power plan, and the warnings among the problems); otherwise every problem, and nothing to start."""

    plan: ExperimentPlan | None = None
    power: PowerPlan | None = None

    @property
    def ok(self) -> bool:
        return super().ok and self.plan is not None


def validate_raw(raw: Mapping[str, Any]) -> Validation:
    """Structure, policy, the plan, the power plan and its warnings. A value only the power calculation finds
    unusable (an MDE whose sample size underflows or overflows, say) is an error naming its field, never an
    exception: `validate` and `start` both call this, so what one refuses the other refuses."""
    check = check_raw(raw)
    if not check.ok or check.spec is None:
        return Validation(None, check.problems)
    spec = check.spec
    experiment_plan = plan(spec)
    try:
        power = power_plan(spec, experiment_plan)
    except PowerInputError as exc:
        return Validation(None, [*check.problems, unplannable(exc)])
    warnings = [*check.problems, *power_warnings(spec, experiment_plan, power)]
    return Validation(spec, warnings, experiment_plan, power)


def check_text(text: str, source: str = "spec") -> Validation:
    """`validate_raw` of a spec's text."""
    try:
        raw = parse_text(text, source)
    except SpecSyntaxError as exc:
        return Validation(None, [Problem(path="", found=str(exc), fix="write the spec as a YAML or JSON mapping; "
                                         "see examples/ and docs/spec.md")])
    return validate_raw(raw)
