"""Reading a spec from a file for the CLI, including "ask once" for missing critical fields on a TTY."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

import yaml

from abrollout.spec.loader import (
    MAX_SPEC_BYTES,
    SpecSyntaxError,
    Validation,
    missing_critical,
    parse_text,
    validate_raw,
)
from abrollout.spec.problems import Problem
from client.exits import BAD_INPUT, UserFacingError

_PROMPTS = {
    "treatment_spec": "treatment_spec (arms with config), e.g. {control: {prompt: v6}, treatment: {prompt: v7}}",
    "primary_metric": "primary_metric, e.g. signup_conv",
    "mde": "mde, e.g. {kind: relative, value: 5}  (relative = % of control; absolute = metric units)",
    "max_duration_days": "max_duration_days, e.g. 14",
}


def read_spec_file(path: str) -> dict[str, Any]:
    """The raw mapping in a spec file; a missing, huge or malformed file is a UserFacingError (exit 2)."""
    file = Path(path)
    if not file.is_file():
        raise UserFacingError(f"error: spec file '{path}' does not exist; fix: pass the path of a YAML spec "
                              "(see examples/)")
    if file.stat().st_size > MAX_SPEC_BYTES:
        raise UserFacingError(f"error: {path} is {file.stat().st_size} bytes; a spec is at most "
                              f"{MAX_SPEC_BYTES // 1000} kB")
    try:
        return parse_text(file.read_text(encoding="utf-8"), path)
    except UnicodeDecodeError:
        raise UserFacingError(f"error: {path} is not UTF-8 text; fix: save the spec as UTF-8") from None
    except OSError as exc:  # unreadable: permissions, a directory that vanished, an I/O error
        raise UserFacingError(f"error: cannot read {path} ({exc.strerror or type(exc).__name__}); fix: check the "
                              "file's permissions") from None
    except SpecSyntaxError as exc:
        raise UserFacingError(f"error: {exc}") from None


def ask_once(raw: dict[str, Any], missing: list[str], ask: Callable[[str], str], out: TextIO) -> dict[str, Any]:
    """Ask for all missing critical fields together, once; answers are YAML values."""
    out.write(f"The spec is missing {len(missing)} critical field(s); answer each (YAML), or leave empty to stop.\n")
    completed = dict(raw)
    for name in missing:
        answer = ask(f"  {_PROMPTS[name]}\n  {name}: ").strip()
        if not answer:
            continue
        try:
            completed[name] = yaml.safe_load(answer)
        except (yaml.YAMLError, ValueError):  # ValueError: a value YAML cannot build, such as 2026-13-45
            completed[name] = answer
    return completed


def load_checked_spec(path: str, *, interactive: bool | None = None) -> Validation:
    """Read a spec and run the whole check (`validate_raw`) that both `validate` and `start` obey; on a TTY,
    missing critical fields are asked for once (all together)."""
    raw = read_spec_file(path)
    missing = missing_critical(raw)
    if interactive is None:
        interactive = sys.stdin.isatty() and sys.stdout.isatty()
    if missing and interactive:
        raw = ask_once(raw, missing, input, sys.stdout)
    return validate_raw(raw)


def refuse(problems: list[Problem], source: str) -> UserFacingError:
    """The exit-2 error listing every problem, each with its field path and fix."""
    lines = [f"{source}: {len(problems)} problem(s); nothing was started."]
    lines += [f"  {p}" for p in problems]
    return UserFacingError("\n".join(lines), BAD_INPUT)
