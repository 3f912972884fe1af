"""The README and docs/ stay short enough to read and true enough to follow: the README fits on a few screens, every
relative link (and its #anchor) leads somewhere, every `make` target and `starter.py` command they name exists,
and docs/policy.md quotes the policy's clauses as the code has them."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from abrollout.policy import CLAUSES
from cli.main import build_parser

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
PAGES = [README, *DOCS]
README_MAX_LINES = 260
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)
INLINE_CODE = re.compile(r"`[^`\n]*`")
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*$", re.MULTILINE)
MAKE_COMMAND = re.compile(r"(?:`|^)make ([a-z][a-z-]*)", re.MULTILINE)  # in code: "make" is also a word
STARTER_COMMAND = re.compile(r"\bstarter\.py ([a-z][a-z-]*)")


def _prose(page: Path) -> str:
    """The page without its code: a link-like text inside a code span or block is not a link."""
    return INLINE_CODE.sub("", FENCE.sub("", page.read_text(encoding="utf-8")))


def _anchors(page: Path) -> set[str]:
    """GitHub's heading ids: lower case, punctuation other than `-` and `_` dropped, spaces as `-`."""
    return {re.sub(r"[^\w\- ]", "", heading.replace("`", "").lower()).replace(" ", "-")
            for heading in HEADING.findall(FENCE.sub("", page.read_text(encoding="utf-8")))}


def _relative_links(page: Path) -> list[str]:
    return [t for t in LINK.findall(_prose(page)) if not re.match(r"[a-z][a-z0-9+.-]*:", t)]


def test_the_readme_is_short() -> None:
    lines = README.read_text(encoding="utf-8").count("\n")
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines; move reference material into docs/"


def test_the_reference_pages_exist() -> None:
    linked = {(README.parent / target.split("#")[0]).resolve() for target in _relative_links(README)}
    assert set(DOCS) <= linked, f"docs/ pages the README does not link: {sorted(set(DOCS) - linked)}"


@pytest.mark.parametrize("page", PAGES, ids=[p.relative_to(ROOT).as_posix() for p in PAGES])
def test_every_relative_link_leads_somewhere(page: Path) -> None:
    broken = []
    for target in _relative_links(page):
        path, _, anchor = target.partition("#")
        destination = (page.parent / path).resolve() if path else page
        if not destination.exists():
            broken.append(f"{target}: no such file")
        elif anchor and destination.suffix == ".md" and anchor not in _anchors(destination):
            broken.append(f"{target}: no heading with that id")
    assert not broken, f"{page.relative_to(ROOT)}: {broken}"


def test_every_make_target_named_exists() -> None:
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    phony = re.search(r"^\.PHONY:((?:.*\\\n)*.*)$", makefile, re.MULTILINE)
    assert phony is not None
    targets = set(phony.group(1).replace("\\\n", " ").split())
    named = {(p.name, t) for p in PAGES for t in MAKE_COMMAND.findall(p.read_text(encoding="utf-8"))}
    unknown = {pair for pair in named if pair[1] not in targets}
    assert not unknown, f"make targets not in the Makefile: {unknown}"


def test_every_starter_command_named_exists() -> None:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    named = {(p.name, c) for p in PAGES for c in STARTER_COMMAND.findall(p.read_text(encoding="utf-8"))}
    unknown = {pair for pair in named if pair[1] not in sub.choices}
    assert not unknown, f"starter.py commands that do not exist: {unknown}"


def test_the_policy_page_quotes_every_clause_as_the_code_has_it() -> None:
    page = (ROOT / "docs" / "policy.md").read_text(encoding="utf-8")
    missing = [c.id for c in CLAUSES.values() if f"| `{c.id}` | {c.title} | {c.rule} |" not in page]
    assert not missing, f"docs/policy.md does not quote these clauses as abrollout/policy.py has them: {missing}"
