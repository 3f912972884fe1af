"""The HTML building blocks every part of the page is made of: sections, chart panels, legends, badges, tables.

Every string from the data goes through `html.escape` here or at its call site: names, rationales and receipt
messages can hold anything, markup included.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from html import escape

from abrollout.contracts.records import DecisionState
from abrollout.report.colors import state_color


def placeholder(text: str) -> str:
    return f'<div class="empty">{escape(text)}</div>'


def panel(title: str, caption: str, body: str, legend: str = "") -> str:
    return (f'<figure class="panel"><figcaption><h3>{escape(title)}</h3><p>{escape(caption)}</p></figcaption>'
            f"{legend}{body}</figure>")


def legend(entries: Iterable[tuple[str, str, str]]) -> str:
    """Coloured swatch, arm name, detail; HTML rather than SVG text so that long arm names wrap."""
    items = "".join(f'<li><i style="background:{color}"></i><b>{escape(name)}</b> {escape(detail)}</li>'
                    for color, name, detail in entries)
    return f'<ul class="legend">{items}</ul>'


def section(title: str, body: str, note: str = "") -> str:
    hint = f'<p class="note">{escape(note)}</p>' if note else ""
    return f"<section><h2>{escape(title)}</h2>{hint}{body}</section>"


def grid(panels: Iterable[str]) -> str:
    return f'<div class="grid">{"".join(panels)}</div>'


def badge(state: DecisionState, css: str = "badge") -> str:
    return (f'<span class="{css}" style="background:{state_color(state)}">'
            f'{escape(state.value.replace("_", " "))}</span>')


def table(head: Sequence[str], rows: Iterable[str]) -> str:
    cells = "".join(f"<th>{escape(h)}</th>" for h in head)
    return f'<div class="scroll"><table><thead><tr>{cells}</tr></thead><tbody>{"".join(rows)}</tbody></table></div>'
