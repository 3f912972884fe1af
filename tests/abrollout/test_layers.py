"""The core's rooms import downwards only, and nothing outside the core: a newcomer can read them bottom up."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parents[2] / "abrollout"
LAYERS = ["policy", "ids", "durations", "contracts", "flags", "stats", "plan", "spec", "warehouse", "run", "report"]
"""Lowest first: a module may import its own room and the rooms before it, never one after it."""


def _room(module: str) -> str:
    return module.split(".")[1]


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


MODULES = sorted(p for p in CORE.rglob("*.py") if p.name != "__init__.py" or p.parent != CORE)


def test_every_room_has_a_layer() -> None:
    rooms = {p.relative_to(CORE).parts[0].removesuffix(".py") for p in MODULES}
    assert rooms == set(LAYERS)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(CORE)))
def test_imports_run_down_the_layers(path: Path) -> None:
    room = path.relative_to(CORE).parts[0].removesuffix(".py")
    imported = _imports(path)
    outside = {m for m in imported if m.split(".")[0] in {"workflows", "activities", "adapters", "cli", "client",
                                                          "workers", "temporalio", "tests", "bench"}}
    assert not outside, f"the core is pure: {path.name} imports {outside}"
    upward = {m for m in imported if m.startswith("abrollout.") and LAYERS.index(_room(m)) > LAYERS.index(room)}
    assert not upward, f"{room} sits below {sorted(_room(m) for m in upward)}: {path.name} imports {upward}"
