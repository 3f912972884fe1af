"""The check and receipt trails as tables: the latest rows plus the few earlier ones that explain the run."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from html import escape
from typing import TypeVar

from abrollout.contracts.records import Checkpoint, DashboardData, ReceiptRecord
from abrollout.contracts.tools import ToolName
from abrollout.report.blocks import badge, placeholder, section, table

T = TypeVar("T")

CHECKPOINT_ROWS = 50
RECEIPT_ROWS = 100


def first_positions(items: Sequence[T], keys: Callable[[T], Iterable[str]]) -> dict[str, int]:
    """Where each key first occurs, e.g. the first check that breached each guardrail."""
    first: dict[str, int] = {}
    for i, item in enumerate(items):
        for key in keys(item):
            first.setdefault(key, i)
    return first


def keep_rows(items: Sequence[T], limit: int, marked: Iterable[int]) -> list[T]:
    """The latest `limit` items plus the earlier ones at the `marked` positions, in their original order.

    Callers mark few rows (analysis looks, first breaches), so a 2,000-check run still makes a short table."""
    cut = max(0, len(items) - limit)
    return [items[i] for i in sorted({i for i in marked if i < cut} | set(range(cut, len(items))))]


def _elided(shown: int, total: int, what: str) -> str:
    return f"Showing {shown} of {total}: {what}." if shown < total else ""


def _checkpoint_row(c: Checkpoint) -> str:
    css = "bad-row" if c.breaches else "muted-row" if c.no_data else ""
    tags = "".join(f'<span class="tag">{escape(name)}</span>' for name in c.breaches)
    return (f'<tr class="{css}"><td>{escape(c.kind)}</td><td class="n">{c.index}</td>'
            f'<td class="n">{c.at_hours:g}</td><td>{badge(c.state, "pill")}</td><td>{tags}{escape(c.summary)}</td>'
            f"<td><code>{escape(c.ref)}</code></td></tr>")


def checkpoint_section(data: DashboardData) -> str:
    if not data.checkpoints:
        return section("Checks", placeholder("No checks yet"))
    looks = [i for i, c in enumerate(data.checkpoints) if c.kind == "analysis"]
    breaches = first_positions(data.checkpoints, lambda c: c.breaches).values()
    rows = keep_rows(data.checkpoints, CHECKPOINT_ROWS, [*looks, *breaches])
    kept = f"every analysis look, the first breach of each guardrail, and the latest {CHECKPOINT_ROWS}"
    note = _elided(len(rows), len(data.checkpoints), kept)
    body = table(("kind", "#", "at (h)", "state", "summary", "receipt"), map(_checkpoint_row, rows))
    return section("Checks", body, note)


def _receipt_row(r: ReceiptRecord) -> str:
    ok = '<span class="ok">✓</span>' if r.ok else '<span class="fail">✗</span>'
    return (f'<tr class="{"" if r.ok else "bad-row"}"><td>{escape(r.step)}</td><td>{escape(r.tool)}</td>'
            f"<td>{ok}</td><td><code>{escape(r.ref)}</code></td><td><code>{escape(r.idempotency_key)}</code></td>"
            f"<td>{escape(r.message)}</td></tr>")


def receipt_section(data: DashboardData) -> str:
    if not data.receipts:
        return section("Receipts", placeholder("No tool calls yet"))
    calls = [i for i, r in enumerate(data.receipts) if r.tool != ToolName.CheckMetrics.value]
    failures = first_positions(data.receipts, lambda r: [] if r.ok else [r.tool]).values()
    rows = keep_rows(data.receipts, RECEIPT_ROWS, [*calls, *failures])
    kept = f"every call other than CheckMetrics, the first failure of each tool, and the latest {RECEIPT_ROWS}"
    note = _elided(len(rows), len(data.receipts), kept)
    body = table(("step", "tool", "ok", "ref", "idempotency key", "message"), map(_receipt_row, rows))
    return section("Receipts", body, note)
