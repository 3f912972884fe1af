"""The top of the page: the decision and its rationale first, the first breaches that explain a stop, the facts."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from abrollout.contracts.records import Checkpoint, DashboardData
from abrollout.report.blocks import badge
from abrollout.report.colors import state_color
from abrollout.report.formats import at, effect_text
from abrollout.report.tables import first_positions


def _kind_counts(checkpoints: Sequence[Checkpoint]) -> str:
    counts: dict[str, int] = {}
    for c in checkpoints:
        counts[c.kind] = counts.get(c.kind, 0) + 1
    return " · ".join(f"{n} {kind}" for kind, n in counts.items()) or "none yet"


def _fact(term: str, value: str) -> str:
    return f"<div><dt>{escape(term)}</dt><dd>{value}</dd></div>"


def _arm_chips(data: DashboardData, colors: dict[str, str]) -> str:
    chips = "".join(f'<span class="chip"><i style="background:{colors[arm]}"></i>{escape(arm)} '
                    f'<b>{data.split.get(arm, 0):g}%</b></span>' for arm in data.arms)
    return f'<span class="chips">{chips}</span>'


def _last_check(checkpoints: Sequence[Checkpoint]) -> str:
    if not checkpoints:
        return "none yet"
    last = checkpoints[-1]
    return f"{escape(last.kind)} #{last.index} at {escape(at(last.at_hours))}"


def _latest_effects(data: DashboardData) -> str:
    looks = [c for c in data.checkpoints if c.kind == "analysis" and c.effects]
    if not looks:
        return "no analysis look yet"
    return "<br>".join(escape(f"{arm}: {effect_text(effect)}") for arm, effect in looks[-1].effects.items())


def _breach_alert(checkpoints: Sequence[Checkpoint]) -> str:
    """The first breach of each guardrail (and SRM), so a stop explains itself at the top of the page."""
    first = {name: checkpoints[i] for name, i in first_positions(checkpoints, lambda c: c.breaches).items()}
    if not first:
        return ""
    items = "".join(f"<li><b>{escape(name)}</b> first breached at {escape(c.kind)} #{c.index}, "
                    f"{escape(at(c.at_hours))}</li>" for name, c in first.items())
    return f'<div class="alert"><ul>{items}</ul></div>'


def header(data: DashboardData, colors: dict[str, str]) -> str:
    facts = "".join([
        _fact("Primary metric", f"<code>{escape(data.primary_metric)}</code>"),
        _fact("MDE", escape(data.mde)),
        _fact("Exposure", f"{data.exposure_percent:g}%"),
        _fact("Arms (split)", _arm_chips(data, colors)),
        _fact("Checks", escape(_kind_counts(data.checkpoints))),
        _fact("Last check", _last_check(data.checkpoints)),
        _fact("Latest effect vs control", _latest_effects(data)),
    ])
    return (f'<header class="head" style="border-left-color:{state_color(data.state)}">'
            f'<div class="title"><h1>{escape(data.exp_key)}</h1>{badge(data.state)}'
            f'<span class="label">snapshot: {escape(data.label)}</span></div>'
            f'<p class="rationale">{escape(data.rationale)}</p>{_breach_alert(data.checkpoints)}'
            f'<dl class="facts">{facts}</dl></header>')
