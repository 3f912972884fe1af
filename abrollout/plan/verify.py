"""Verification of a tool proposal before it runs: allowed tool, valid typed args, preconditions met.

The workflow runs a proposal only when `verify` returns None; otherwise it records a blocked receipt with
the reason and never calls the tool (exp_policy.v5#verify.1).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Set
from typing import Any

from pydantic import ValidationError

from abrollout.contracts.tools import ARGS_BY_TOOL, ToolName, ToolProposal
from abrollout.policy import cite

_PLACEHOLDER = re.compile(r"^\$\{([a-z0-9-]+)\.ref\}$")


class Unresolved(ValueError):
    """A placeholder names a step that has no ok receipt yet."""


def resolve_args(args: Mapping[str, Any], refs: Mapping[str, str]) -> dict[str, Any]:
    """Replace `${step.ref}` strings with the ref of that step's ok receipt."""
    resolved: dict[str, Any] = {}
    for key, value in args.items():
        match = _PLACEHOLDER.match(value) if isinstance(value, str) else None
        if match:
            step = match.group(1)
            if step not in refs:
                raise Unresolved(f"{key} needs the receipt of step '{step}', which has none")
            resolved[key] = refs[step]
        else:
            resolved[key] = value
    return resolved


def _precondition_failure(condition: str, done: Set[str], state: str, breached: bool) -> str | None:
    kind, _, target = condition.partition(":")
    if kind == "done":
        return None if target in done else f"step '{target}' has no ok receipt"
    if kind == "not_done":
        return None if target not in done else f"step '{target}' already ran"
    if kind == "state":
        return None if state == target else f"the experiment is {state}, not {target}"
    if condition == "no_breach":
        return "a guardrail is breached" if breached else None
    return f"unknown precondition '{condition}'"


def verify(proposal: ToolProposal, refs: Mapping[str, str], state: str, breached: bool) -> str | None:
    """None when the proposal may run; otherwise the reason it is blocked, citing verify.1.

    `refs` maps each step with an ok receipt to its ref; `state` is the current decision state.
    """
    try:
        tool = ToolName(proposal.name)
    except ValueError:
        return f"tool '{proposal.name}' is not on the allow-list [{cite('verify.1')}]"
    for condition in proposal.preconditions:
        failure = _precondition_failure(condition, refs.keys(), state, breached)
        if failure:
            clause = "prereg.1" if tool is ToolName.AllocateTraffic else "verify.1"
            return f"precondition {condition} not met: {failure} [{cite(clause)}]"
    try:
        ARGS_BY_TOOL[tool].model_validate(resolve_args(proposal.args, refs))
    except (Unresolved, ValidationError) as exc:
        detail = exc if isinstance(exc, Unresolved) else exc.errors(include_url=False)[0]["msg"]
        return f"args are not valid for {tool.value}: {detail} [{cite('verify.1')}]"
    return None
