"""The gate every tool call passes: its preconditions hold and its args, placeholders filled in, are valid.

The workflow calls a tool only with the args `verify` returns; a `Blocked` proposal is recorded with the reason and
never runs (exp_policy.v5#verify.1).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Set
from typing import TypeVar

from pydantic import ValidationError

from abrollout.contracts.tools import ToolArgs, ToolName, ToolProposal
from abrollout.policy import cite

_PLACEHOLDER = re.compile(r"^\$\{([a-z0-9-]+)\.ref\}$")
ArgsT = TypeVar("ArgsT", bound=ToolArgs)


class Blocked(ValueError):
    """Why a proposal may not run."""


class Unresolved(ValueError):
    """A placeholder names a step that has no ok receipt yet."""


def resolve_args(args: ArgsT, refs: Mapping[str, str]) -> ArgsT:
    """The args with each `${step.ref}` string replaced by the ref of that step's ok receipt, validated again."""
    filled: dict[str, str] = {}
    for name in type(args).model_fields:
        value = getattr(args, name)
        match = _PLACEHOLDER.match(value) if isinstance(value, str) else None
        if match:
            if match.group(1) not in refs:
                raise Unresolved(f"{name} needs the receipt of step '{match.group(1)}', which has none")
            filled[name] = refs[match.group(1)]
    return type(args).model_validate({**args.model_dump(), **filled}) if filled else args


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


def verify(proposal: ToolProposal, refs: Mapping[str, str], state: str, breached: bool) -> ToolArgs:
    """The args to call the tool with; `Blocked`, citing the clause, when the proposal may not run.

    `refs` maps each step with an ok receipt to its ref; `state` is the current decision state.
    """
    for condition in proposal.preconditions:
        failure = _precondition_failure(condition, refs.keys(), state, breached)
        if failure:
            clause = "prereg.1" if proposal.name is ToolName.AllocateTraffic else "verify.1"
            raise Blocked(f"precondition {condition} not met: {failure} [{cite(clause)}]")
    try:
        return resolve_args(proposal.args, refs)
    except (Unresolved, ValidationError) as exc:
        detail = exc if isinstance(exc, Unresolved) else exc.errors(include_url=False)[0]["msg"]
        raise Blocked(f"args are not valid for {proposal.name.value}: {detail} [{cite('verify.1')}]") from None
