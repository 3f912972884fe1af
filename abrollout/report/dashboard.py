"""Render a `DashboardData` snapshot as one self-contained HTML page: inline CSS, inline SVG charts, no network.

People open these pages offline, long after the run, and the page's bytes are hashed into its id. So rendering
is a pure function of the data (no clock, no random ids, same data -> same bytes), nothing is fetched from
anywhere, and every string that comes from the data is escaped: names, rationales and messages can hold anything.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from html import escape
from itertools import groupby
from typing import TypeVar

from abrollout.contracts.records import (
    ArmEffect,
    Checkpoint,
    DashboardData,
    DecisionState,
    GuardrailLine,
    ReceiptRecord,
)
from abrollout.contracts.tools import ToolName

T = TypeVar("T")
Point = tuple[float, float]
Look = tuple[float, ArmEffect]
PerArm = Callable[[Checkpoint], Mapping[str, float]]

MAX_POINTS = 500
"""Most points drawn per series: a 90-day run has 2,000+ hourly checks, and a screen is ~500 pixels wide."""
CHECKPOINT_ROWS = 50
RECEIPT_ROWS = 100
SRM_ALPHA = 0.001
SMALLEST_P = 1e-16

WIDTH, HEIGHT = 560, 220
TOP, RIGHT, BOTTOM, LEFT = 12, 84, 26, 58
"""Chart margins; the right one holds the labels of reference lines (threshold, zero, MDE)."""

STATE_COLORS = {
    DecisionState.running: "#2563eb",
    DecisionState.promote: "#16a34a",
    DecisionState.guardrail_stop: "#dc2626",
    DecisionState.rollback: "#ea580c",
    DecisionState.inconclusive: "#6b7280",
}
BREACH_RED = "#dc2626"
ARM_PALETTE = ("#475569", "#2563eb", "#d97706", "#7c3aed", "#0d9488", "#db2777", "#65a30d", "#0891b2")
"""Control first (slate), then treatments; cycles when there are more arms than colours."""


# ---- numbers and scales ----------------------------------------------------------------------------------


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def _num(value: float) -> str:
    return f"{value:.4g}"


def _signed(value: float) -> str:
    return f"{value:+.4g}"


def _clean(value: float) -> float:
    """Drop float noise from tick arithmetic (0.30000000000000004) and negative zero."""
    return float(f"{value:.12g}") + 0.0


def _spread(lo: float, hi: float) -> tuple[float, float]:
    """A non-empty interval around [lo, hi]: one point, or all-equal values, still needs a scale."""
    if hi - lo > 1e-9 * max(abs(lo), abs(hi)):
        return lo, hi
    pad = abs(lo) * 0.1 or 1.0
    return lo - pad, hi + pad


def nice_step(span: float, count: int) -> float:
    """The 1-2-5 step that cuts `span` into about `count` intervals: numbers people read at a glance."""
    raw = span / count
    magnitude = 10.0 ** math.floor(math.log10(raw))
    return next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw * (1 - 1e-9))


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """Evenly spaced round numbers from at or below `lo` to at or above `hi`."""
    lo, hi = _spread(lo, hi)
    step = nice_step(hi - lo, count)
    first, last = math.floor(lo / step + 1e-9), math.ceil(hi / step - 1e-9)
    return [_clean(i * step) for i in range(first, last + 1)]


@dataclass(frozen=True)
class Tick:
    value: float
    label: str


@dataclass(frozen=True)
class Axis:
    """The data interval an axis spans (never empty) and the labelled ticks inside it."""

    lo: float
    hi: float
    ticks: list[Tick]


def _tick_label(value: float, step: float) -> str:
    """As many decimals as the step needs; thousands and millions abbreviated (assignment counts)."""
    if value == 0:
        return "0"
    if step >= 1e3:
        return f"{value / 1e6:g}M" if abs(value) >= 1e6 else f"{value / 1e3:g}k"
    decimals = max(0, -math.floor(math.log10(step) + 1e-9))
    return f"{value:.{decimals}f}"


def value_axis(values: Iterable[float], count: int = 5) -> Axis:
    """An axis that ends on round numbers at or beyond the smallest and largest value."""
    values = list(values)
    ticks = nice_ticks(min(values), max(values), count)
    step = ticks[1] - ticks[0]
    return Axis(ticks[0], ticks[-1], [Tick(v, _tick_label(v, step)) for v in ticks])


def time_axis(lo_hours: float, hi_hours: float) -> Axis:
    """Exactly the run's span (no empty tail after the last check); ticks in hours, or days past three days."""
    days = hi_hours - lo_hours > 72
    unit = 24.0 if days else 1.0
    ticks = [Tick(v * unit, f"day {v:g}" if days else f"{v:g}h")
             for v in nice_ticks(lo_hours / unit, hi_hours / unit, 7 if days else 6)]
    inside = [t for t in ticks if lo_hours - 1e-9 <= t.value <= hi_hours + 1e-9]
    return Axis(lo_hours, hi_hours, inside)


def log_axis(smallest_p: float) -> Axis:
    """log10 p in decades from below `smallest_p` (and at least 1e-4, so the 0.001 line always shows) up to 1."""
    low = min(-4, math.floor(math.log10(max(smallest_p, SMALLEST_P))))
    step = math.ceil(-low / 6)
    exponents = range(-step * math.ceil(-low / step), 1, step)
    ticks = [Tick(e, f"{10.0**e:g}" if e >= -3 else f"1e{e}") for e in exponents]
    return Axis(ticks[0].value, 0.0, ticks)


@dataclass(frozen=True)
class Scale:
    """Maps the data interval [d0, d1] (never empty: see `_spread`) linearly onto the pixel interval [r0, r1]."""

    d0: float
    d1: float
    r0: float
    r1: float

    def __call__(self, value: float) -> float:
        return self.r0 + (value - self.d0) / (self.d1 - self.d0) * (self.r1 - self.r0)


@dataclass(frozen=True)
class Plot:
    """A chart's drawing area: two axes, and the scales from their data to pixels inside the margins."""

    x_axis: Axis
    y_axis: Axis

    @property
    def x(self) -> Scale:
        return Scale(self.x_axis.lo, self.x_axis.hi, LEFT, WIDTH - RIGHT)

    @property
    def y(self) -> Scale:
        return Scale(self.y_axis.lo, self.y_axis.hi, HEIGHT - BOTTOM, TOP)


def downsample(items: Sequence[T], value: Callable[[T], float], limit: int = MAX_POINTS) -> list[T]:
    """At most about `limit` items: the first, the last, and each bucket's lowest and highest, so spikes survive."""
    if len(items) <= limit:
        return list(items)
    buckets = (limit - 2) // 2
    keep = {0, len(items) - 1}
    for b in range(buckets):
        bucket = range(b * len(items) // buckets, (b + 1) * len(items) // buckets)
        keep.add(min(bucket, key=lambda i: value(items[i])))
        keep.add(max(bucket, key=lambda i: value(items[i])))
    return [items[i] for i in sorted(keep)]


def arm_lines(checkpoints: Iterable[Checkpoint], values: PerArm) -> dict[str, list[Point]]:
    """One (hours, value) series per arm, arms in first-seen order; missing and NaN values are skipped."""
    lines: dict[str, list[Point]] = {}
    for c in checkpoints:
        for arm, value in values(c).items():
            if _finite(value) and _finite(c.at_hours):
                lines.setdefault(arm, []).append((c.at_hours, value))
    return lines


# ---- SVG ----------------------------------------------------------------------------------------------


def _e(text: str) -> str:
    return escape(text, quote=True)


def _xy(plot: Plot, point: Point) -> str:
    return f"{plot.x(point[0]):.1f},{plot.y(point[1]):.1f}"


def _axes(plot: Plot) -> str:
    x, y = plot.x, plot.y
    bottom = HEIGHT - BOTTOM
    rows = [f'<line class="gl" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y(t.value):.1f}" y2="{y(t.value):.1f}"/>'
            f'<text class="tick" x="{LEFT - 6}" y="{y(t.value):.1f}" dy="0.32em" text-anchor="end">{_e(t.label)}</text>'
            for t in plot.y_axis.ticks]
    cols = [f'<line class="gl" x1="{x(t.value):.1f}" x2="{x(t.value):.1f}" y1="{TOP}" y2="{bottom}"/>'
            f'<text class="tick" x="{x(t.value):.1f}" y="{bottom + 16}" text-anchor="middle">{_e(t.label)}</text>'
            for t in plot.x_axis.ticks]
    frame = f'<line class="axis" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{bottom}" y2="{bottom}"/>'
    return "".join([*rows, *cols, frame])


def svg(plot: Plot, body: Iterable[str], label: str) -> str:
    return (f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{_e(label)}">'
            f'{_axes(plot)}{"".join(body)}</svg>')


def polyline(plot: Plot, points: Sequence[Point], color: str) -> str:
    """A series as a line; a lone point as a dot, since a one-point polyline draws nothing."""
    if len(points) == 1:
        return marker(plot, points[0], color, f"{_num(points[0][1])} at {points[0][0]:g} h")
    coords = " ".join(_xy(plot, p) for p in points)
    return f'<polyline class="series" stroke="{color}" points="{coords}"/>'


def band(plot: Plot, lows: Sequence[Point], highs: Sequence[Point], color: str) -> str:
    """The area between two series with the same x values: an interval drawn over time."""
    coords = " ".join(_xy(plot, p) for p in [*lows, *reversed(highs)])
    return f'<polygon class="band" fill="{color}" points="{coords}"/>'


def hline(plot: Plot, value: float, css: str, label: str) -> str:
    """A horizontal reference line across the chart, labelled in the right margin."""
    y = plot.y(value)
    return (f'<line class="{css}" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}"/>'
            f'<text class="ref-label {css}" x="{WIDTH - RIGHT + 4}" y="{y:.1f}" dy="0.32em">{_e(label)}</text>')


def marker(plot: Plot, point: Point, color: str, title: str, css: str = "dot") -> str:
    """A point with a hover tooltip (SVG <title>: no script needed); breaches are drawn a little larger."""
    radius = 4.5 if css == "breach" else 3.5
    return (f'<circle class="{css}" cx="{plot.x(point[0]):.1f}" cy="{plot.y(point[1]):.1f}" r="{radius}" '
            f'fill="{color}"><title>{_e(title)}</title></circle>')


def episodes(flags: Sequence[bool]) -> list[tuple[int, int]]:
    """(start, length) of each run of consecutive flagged checks."""
    runs: list[tuple[int, int]] = []
    start = 0
    for flag, group in groupby(flags):
        length = len(list(group))
        if flag:
            runs.append((start, length))
        start += length
    return runs


def episode_markers(plot: Plot, points: Sequence[Point], flags: Sequence[bool],
                    title: Callable[[int, int], str]) -> list[str]:
    """A red dot where each run of flagged checks begins: one per episode, not 1,800 dots on a 90-day breach."""
    runs = downsample(episodes(flags), lambda run: run[1])
    return [marker(plot, points[start], BREACH_RED, title(start, length), "breach") for start, length in runs]


def whisker(plot: Plot, hours: float, low: float, high: float, color: str) -> str:
    x = f"{plot.x(hours):.1f}"
    return f'<line class="whisker" stroke="{color}" x1="{x}" x2="{x}" y1="{plot.y(low):.1f}" y2="{plot.y(high):.1f}"/>'


def shade(plot: Plot, from_value: float, to_value: float, css: str) -> str:
    """A horizontal strip between two data values, e.g. the region where a guardrail is breached."""
    top, bottom = sorted((plot.y(from_value), plot.y(to_value)))
    return f'<rect class="{css}" x="{LEFT}" y="{top:.1f}" width="{WIDTH - LEFT - RIGHT}" height="{bottom - top:.1f}"/>'


# ---- page pieces --------------------------------------------------------------------------------------


def _at(hours: float) -> str:
    return f"{hours:g} h (day {hours / 24:.1f})"


def _placeholder(text: str) -> str:
    return f'<div class="empty">{_e(text)}</div>'


def _panel(title: str, caption: str, body: str, legend: str = "") -> str:
    return (f'<figure class="panel"><figcaption><h3>{_e(title)}</h3><p>{_e(caption)}</p></figcaption>'
            f"{legend}{body}</figure>")


def _legend(entries: Iterable[tuple[str, str, str]]) -> str:
    """Coloured swatch, arm name, detail; HTML rather than SVG text so that long arm names wrap."""
    items = "".join(f'<li><i style="background:{color}"></i><b>{_e(name)}</b> {_e(detail)}</li>'
                    for color, name, detail in entries)
    return f'<ul class="legend">{items}</ul>'


def _section(title: str, body: str, note: str = "") -> str:
    hint = f'<p class="note">{_e(note)}</p>' if note else ""
    return f"<section><h2>{_e(title)}</h2>{hint}{body}</section>"


def _badge(state: DecisionState, css: str = "badge") -> str:
    color = STATE_COLORS.get(state, "#6b7280")
    return f'<span class="{css}" style="background:{color}">{_e(state.value.replace("_", " "))}</span>'


def arm_colors(data: DashboardData) -> dict[str, str]:
    """A stable colour per arm: the registered arms in order, then any other key the checks report (`overall`)."""
    names = [*data.arms]
    for c in data.checkpoints:
        names += [*c.assignments, *c.effects, *(arm for values in c.guardrails.values() for arm in values)]
    ordered = list(dict.fromkeys(names))
    return {arm: ARM_PALETTE[i % len(ARM_PALETTE)] for i, arm in enumerate(ordered)}


def _time_axis(data: DashboardData) -> Axis:
    """One time axis for every chart, so that a breach lines up with the effect and the traffic at that hour."""
    hours = [c.at_hours for c in data.checkpoints if _finite(c.at_hours)]
    return time_axis(min([0.0, *hours]), max([1.0, *hours]))


# ---- header -------------------------------------------------------------------------------------------


def _kind_counts(checkpoints: Sequence[Checkpoint]) -> str:
    counts: dict[str, int] = {}
    for c in checkpoints:
        counts[c.kind] = counts.get(c.kind, 0) + 1
    return " · ".join(f"{n} {kind}" for kind, n in counts.items()) or "none yet"


def _fact(term: str, value: str) -> str:
    return f"<div><dt>{_e(term)}</dt><dd>{value}</dd></div>"


def _arm_chips(data: DashboardData, colors: dict[str, str]) -> str:
    chips = "".join(f'<span class="chip"><i style="background:{colors[arm]}"></i>{_e(arm)} '
                    f'<b>{data.split.get(arm, 0):g}%</b></span>' for arm in data.arms)
    return f'<span class="chips">{chips}</span>'


def _last_check(checkpoints: Sequence[Checkpoint]) -> str:
    if not checkpoints:
        return "none yet"
    last = checkpoints[-1]
    return f"{_e(last.kind)} #{last.index} at {_e(_at(last.at_hours))}"


def _effect_text(effect: ArmEffect) -> str:
    extra = [f"relative {effect.relative:+.2%}" if _finite(effect.relative) else "",
             f"p {effect.p_value:.3g}" if _finite(effect.p_value) else "",
             f"boundary {effect.boundary:.3g}" if _finite(effect.boundary) else ""]
    return (f"{_signed(effect.estimate)} [{_signed(effect.ci_low)}, {_signed(effect.ci_high)}]"
            + "".join(f" · {part}" for part in extra if part))


def _latest_effects(data: DashboardData) -> str:
    looks = [c for c in data.checkpoints if c.kind == "analysis" and c.effects]
    if not looks:
        return "no analysis look yet"
    return "<br>".join(_e(f"{arm}: {_effect_text(effect)}") for arm, effect in looks[-1].effects.items())


def first_positions(items: Sequence[T], keys: Callable[[T], Iterable[str]]) -> dict[str, int]:
    """Where each key first occurs, e.g. the first check that breached each guardrail."""
    first: dict[str, int] = {}
    for i, item in enumerate(items):
        for key in keys(item):
            first.setdefault(key, i)
    return first


def _breach_alert(checkpoints: Sequence[Checkpoint]) -> str:
    """The first breach of each guardrail (and SRM), so a stop explains itself at the top of the page."""
    first = {name: checkpoints[i] for name, i in first_positions(checkpoints, lambda c: c.breaches).items()}
    if not first:
        return ""
    items = "".join(f"<li><b>{_e(name)}</b> first breached at {_e(c.kind)} #{c.index}, {_e(_at(c.at_hours))}</li>"
                    for name, c in first.items())
    return f'<div class="alert"><ul>{items}</ul></div>'


def header(data: DashboardData, colors: dict[str, str]) -> str:
    facts = "".join([
        _fact("Primary metric", f"<code>{_e(data.primary_metric)}</code>"),
        _fact("MDE", _e(data.mde)),
        _fact("Exposure", f"{data.exposure_percent:g}%"),
        _fact("Arms (split)", _arm_chips(data, colors)),
        _fact("Checks", _e(_kind_counts(data.checkpoints))),
        _fact("Last check", _last_check(data.checkpoints)),
        _fact("Latest effect vs control", _latest_effects(data)),
    ])
    color = STATE_COLORS.get(data.state, "#6b7280")
    return (f'<header class="head" style="border-left-color:{color}">'
            f'<div class="title"><h1>{_e(data.exp_key)}</h1>{_badge(data.state)}'
            f'<span class="label">snapshot: {_e(data.label)}</span></div>'
            f'<p class="rationale">{_e(data.rationale)}</p>{_breach_alert(data.checkpoints)}'
            f'<dl class="facts">{facts}</dl></header>')


# ---- effect chart -------------------------------------------------------------------------------------

def _absolute_mde(text: str) -> float | None:
    """The MDE in metric units when it is stated in them ("0.004 absolute"); None for a relative MDE."""
    match = re.fullmatch(r"\s*([0-9.eE+-]+)\s*absolute\s*", text)
    try:
        value = abs(float(match.group(1))) if match else None
    except ValueError:
        return None
    return value if _finite(value) else None


def _looks(checkpoints: Sequence[Checkpoint], arm: str) -> list[Look]:
    points = [(c.at_hours, c.effects[arm]) for c in checkpoints if c.kind == "analysis" and arm in c.effects]
    usable = [(h, e) for h, e in points if all(_finite(v) for v in (h, e.estimate, e.ci_low, e.ci_high))]
    return downsample(usable, lambda look: look[1].estimate)


def _effect_chart(plot: Plot, arm: str, looks: list[Look], mde: float | None, color: str) -> str:
    body = [hline(plot, 0.0, "ref-zero", "0")]
    if mde is not None:
        body += [hline(plot, mde, "ref-mde", f"+MDE {_num(mde)}"), hline(plot, -mde, "ref-mde", f"-MDE {_num(mde)}")]
    if len(looks) > 1:
        body.append(band(plot, [(h, e.ci_low) for h, e in looks], [(h, e.ci_high) for h, e in looks], color))
        body.append(polyline(plot, [(h, e.estimate) for h, e in looks], color))
    body += [whisker(plot, h, e.ci_low, e.ci_high, color) for h, e in looks]
    body += [marker(plot, (h, e.estimate), color, f"{_at(h)}: {_effect_text(e)}") for h, e in looks]
    return svg(plot, body, f"effect of {arm} over time")


def effect_section(data: DashboardData, x_axis: Axis, colors: dict[str, str]) -> str:
    arms = list(dict.fromkeys(arm for c in data.checkpoints if c.kind == "analysis" for arm in c.effects))
    looks = {arm: _looks(data.checkpoints, arm) for arm in arms}
    drawn = {arm: points for arm, points in looks.items() if points}
    mde = _absolute_mde(data.mde)
    note = (f"Treatment minus control on {data.primary_metric}, in metric units, at each analysis look: the dot is "
            "the estimate, the bar and band its interval. "
            + (f"Dashed lines: ±MDE ({data.mde})." if mde is not None else
               f"The MDE ({data.mde}) is relative, so it is not drawn on this absolute scale."))
    if not drawn:
        return _section("Primary metric: cumulative effect", _placeholder("No analysis looks yet"), note)
    values = [v for points in drawn.values() for _, e in points for v in (e.ci_low, e.ci_high)]
    plot = Plot(x_axis, value_axis([*values, 0.0, *([mde, -mde] if mde is not None else [])]))
    panels = [_panel(f"{arm} vs control", _effect_text(points[-1][1]),
                     _effect_chart(plot, arm, points, mde, colors[arm])) for arm, points in drawn.items()]
    return _section("Primary metric: cumulative effect", f'<div class="grid">{"".join(panels)}</div>', note)


# ---- guardrails ---------------------------------------------------------------------------------------


def _holds(line: GuardrailLine) -> str:
    return f"must stay {line.direction} {line.threshold:g}"


def _worst(line: GuardrailLine, values: dict[str, float]) -> tuple[str, float] | None:
    """The arm value furthest towards breaching: the highest for `<` guardrails, the lowest for `>`."""
    finite = [(arm, v) for arm, v in values.items() if _finite(v)]
    if not finite:
        return None
    pick = min if line.direction == ">" else max
    return pick(finite, key=lambda item: item[1])


def _breach_markers(plot: Plot, line: GuardrailLine, checkpoints: Sequence[Checkpoint]) -> list[str]:
    worst = [(c, w) for c in checkpoints if (w := _worst(line, c.guardrails.get(line.name, {}))) is not None]

    def title(start: int, length: int) -> str:
        c, (arm, value) = worst[start]
        return f"BREACH from {_at(c.at_hours)}, {length} checks in a row: {arm} {_num(value)} ({_holds(line)})"

    points = [(c.at_hours, value) for c, (_, value) in worst]
    return episode_markers(plot, points, [line.name in c.breaches for c, _ in worst], title)


def _breach_region(plot: Plot, line: GuardrailLine) -> str:
    """Shade the side of the threshold where the guardrail no longer holds."""
    edge = {"<": plot.y_axis.hi, ">": plot.y_axis.lo}.get(line.direction)
    return shade(plot, line.threshold, edge, "bad") if edge is not None else ""


def guardrail_panel(line: GuardrailLine, data: DashboardData, x_axis: Axis, colors: dict[str, str]) -> str:
    lines = arm_lines(data.checkpoints, lambda c: c.guardrails.get(line.name, {}))
    breaches = sum(line.name in c.breaches for c in data.checkpoints)
    caption = _holds(line) + (f" · breached at {breaches} checks" if breaches else " · no breach")
    if not lines:
        return _panel(line.name, caption, _placeholder("No checks yet"))
    plot = Plot(x_axis, value_axis([line.threshold, *(v for points in lines.values() for _, v in points)]))
    threshold = hline(plot, line.threshold, "ref-threshold", f"{line.direction} {line.threshold:g}")
    body = [_breach_region(plot, line), threshold]
    body += [polyline(plot, downsample(points, lambda p: p[1]), colors[arm]) for arm, points in lines.items()]
    body += _breach_markers(plot, line, data.checkpoints)
    legend = _legend((colors[arm], arm, f"latest {_num(points[-1][1])}") for arm, points in lines.items())
    return _panel(line.name, caption, svg(plot, body, f"guardrail {line.name} over time"), legend)


def guardrail_section(data: DashboardData, x_axis: Axis, colors: dict[str, str]) -> str:
    if not data.guardrails:
        return _section("Guardrails", _placeholder("No guardrails registered"))
    panels = "".join(guardrail_panel(line, data, x_axis, colors) for line in data.guardrails)
    return _section("Guardrails", f'<div class="grid">{panels}</div>',
                    "Observed value per arm at every check, against the threshold; the shaded side is a breach, "
                    "a red dot marks where each run of breaching checks began.")


# ---- SRM and traffic ----------------------------------------------------------------------------------


def _srm_checks(checkpoints: Iterable[Checkpoint]) -> list[tuple[Checkpoint, float]]:
    return [(c, c.srm_p) for c in checkpoints if c.srm_p is not None and _finite(c.srm_p) and c.srm_p >= 0]


def _srm_flagged(checkpoint: Checkpoint, p: float) -> bool:
    return "srm" in checkpoint.breaches or p < SRM_ALPHA


def srm_panel(data: DashboardData, x_axis: Axis) -> str:
    checks = _srm_checks(data.checkpoints)
    title = "Sample ratio mismatch (p-value)"
    caption = f"Sample-ratio test of assignments against the planned split; below {SRM_ALPHA:g} the split is broken."
    if not checks:
        return _panel(title, caption, _placeholder("No SRM checks yet"))
    plot = Plot(x_axis, log_axis(min(p for _, p in checks)))
    points = [(c.at_hours, math.log10(max(p, SMALLEST_P))) for c, p in checks]
    flags = [_srm_flagged(c, p) for c, p in checks]

    def describe(start: int, length: int) -> str:
        return f"SRM from {_at(points[start][0])}, {length} checks in a row: p {checks[start][1]:.3g}"

    body = [shade(plot, math.log10(SRM_ALPHA), plot.y_axis.lo, "bad"),
            hline(plot, math.log10(SRM_ALPHA), "ref-threshold", f"p {SRM_ALPHA:g}"),
            polyline(plot, downsample(points, lambda p: p[1]), "#64748b"),
            *episode_markers(plot, points, flags, describe)]
    caption += f" Latest p {checks[-1][1]:.3g}" + (f"; flagged at {sum(flags)} checks." if any(flags) else ".")
    return _panel(title, caption, svg(plot, body, "SRM p-value over time, log scale"))


def _share(count: float, total: float) -> str:
    return f"{100 * count / total:.2f}%" if total else "-"


def traffic_panel(data: DashboardData, x_axis: Axis, colors: dict[str, str]) -> str:
    lines = arm_lines(data.checkpoints, lambda c: c.assignments)
    caption = "Cumulative users assigned to each arm; the legend compares the latest share with the planned split."
    if not lines:
        return _panel("Traffic per arm", caption, _placeholder("No assignments yet"))
    total = sum(points[-1][1] for points in lines.values())
    plot = Plot(x_axis, value_axis([0.0, *(v for points in lines.values() for _, v in points)]))
    body = [polyline(plot, downsample(points, lambda p: p[1]), colors[arm]) for arm, points in lines.items()]
    legend = _legend((colors[arm], arm, f"{points[-1][1]:,.0f} · {_share(points[-1][1], total)} "
                      f"(planned {data.split.get(arm, 0):g}%)") for arm, points in lines.items())
    return _panel("Traffic per arm", caption, svg(plot, body, "assignments per arm over time"), legend)


def health_section(data: DashboardData, x_axis: Axis, colors: dict[str, str]) -> str:
    panels = srm_panel(data, x_axis) + traffic_panel(data, x_axis, colors)
    return _section("Assignment health", f'<div class="grid">{panels}</div>')


# ---- tables -------------------------------------------------------------------------------------------


def keep_rows(items: Sequence[T], limit: int, marked: Iterable[int]) -> list[T]:
    """The latest `limit` items plus the earlier ones at the `marked` positions, in their original order.

    Callers mark few rows (analysis looks, first breaches), so a 2,000-check run still makes a short table."""
    cut = max(0, len(items) - limit)
    return [items[i] for i in sorted({i for i in marked if i < cut} | set(range(cut, len(items))))]


def _table(head: Sequence[str], rows: Iterable[str]) -> str:
    cells = "".join(f"<th>{_e(h)}</th>" for h in head)
    return f'<div class="scroll"><table><thead><tr>{cells}</tr></thead><tbody>{"".join(rows)}</tbody></table></div>'


def _elided(shown: int, total: int, what: str) -> str:
    return f"Showing {shown} of {total}: {what}." if shown < total else ""


def _checkpoint_row(c: Checkpoint) -> str:
    css = "bad-row" if c.breaches else "muted-row" if c.no_data else ""
    tags = "".join(f'<span class="tag">{_e(name)}</span>' for name in c.breaches)
    return (f'<tr class="{css}"><td>{_e(c.kind)}</td><td class="n">{c.index}</td><td class="n">{c.at_hours:g}</td>'
            f'<td>{_badge(c.state, "pill")}</td><td>{tags}{_e(c.summary)}</td><td><code>{_e(c.ref)}</code></td></tr>')


def checkpoint_section(data: DashboardData) -> str:
    if not data.checkpoints:
        return _section("Checks", _placeholder("No checks yet"))
    looks = [i for i, c in enumerate(data.checkpoints) if c.kind == "analysis"]
    breaches = first_positions(data.checkpoints, lambda c: c.breaches).values()
    rows = keep_rows(data.checkpoints, CHECKPOINT_ROWS, [*looks, *breaches])
    kept = f"every analysis look, the first breach of each guardrail, and the latest {CHECKPOINT_ROWS}"
    note = _elided(len(rows), len(data.checkpoints), kept)
    table = _table(("kind", "#", "at (h)", "state", "summary", "receipt"), map(_checkpoint_row, rows))
    return _section("Checks", table, note)


def _receipt_row(r: ReceiptRecord) -> str:
    ok = '<span class="ok">✓</span>' if r.ok else '<span class="fail">✗</span>'
    return (f'<tr class="{"" if r.ok else "bad-row"}"><td>{_e(r.step)}</td><td>{_e(r.tool)}</td><td>{ok}</td>'
            f"<td><code>{_e(r.ref)}</code></td><td><code>{_e(r.idempotency_key)}</code></td><td>{_e(r.message)}</td></tr>")


def receipt_section(data: DashboardData) -> str:
    if not data.receipts:
        return _section("Receipts", _placeholder("No tool calls yet"))
    calls = [i for i, r in enumerate(data.receipts) if r.tool != ToolName.CheckMetrics.value]
    failures = first_positions(data.receipts, lambda r: [] if r.ok else [r.tool]).values()
    rows = keep_rows(data.receipts, RECEIPT_ROWS, [*calls, *failures])
    kept = f"every call other than CheckMetrics, the first failure of each tool, and the latest {RECEIPT_ROWS}"
    note = _elided(len(rows), len(data.receipts), kept)
    table = _table(("step", "tool", "ok", "ref", "idempotency key", "message"), map(_receipt_row, rows))
    return _section("Receipts", table, note)


# ---- page ---------------------------------------------------------------------------------------------

CSS = """
*{box-sizing:border-box}
body{margin:0;background:#f3f4f6;color:#111827;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,
"Helvetica Neue",Arial,sans-serif;font-variant-numeric:tabular-nums}
main{max-width:1240px;margin:0 auto;padding:24px}
code{font:12px/1.3 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;word-break:break-all}
h1{font-size:24px;margin:0;word-break:break-word}
h2{font-size:16px;margin:0 0 4px;text-transform:uppercase;letter-spacing:.06em;color:#374151}
h3{font-size:14px;margin:0;word-break:break-word}
section{margin-top:22px}
.note,figcaption p{color:#6b7280;margin:0 0 10px;font-size:13px}
.head{background:#fff;border:1px solid #e5e7eb;border-left:8px solid;border-radius:10px;padding:18px 22px}
.title{display:flex;flex-wrap:wrap;align-items:center;gap:12px}
.badge{color:#fff;font-weight:700;text-transform:uppercase;letter-spacing:.08em;padding:5px 12px;border-radius:6px}
.label{color:#4b5563;background:#f3f4f6;border:1px solid #e5e7eb;border-radius:999px;padding:2px 10px;font-size:12px}
.rationale{font-size:15px;margin:12px 0;max-width:100ch}
.alert{background:#fef2f2;border:1px solid #fecaca;color:#991b1b;border-radius:8px;padding:8px 14px;margin:8px 0}
.alert ul{margin:0;padding-left:18px}
.facts{display:grid;grid-template-columns:repeat(auto-fit,minmax(220px,1fr));gap:10px 24px;margin:14px 0 0}
.facts div:last-child{grid-column:1/-1}
dt{color:#6b7280;font-size:12px;text-transform:uppercase;letter-spacing:.05em}
dd{margin:2px 0 0;font-weight:500}
.chips{display:flex;flex-direction:column;gap:2px}
.chip{display:flex;align-items:center;gap:6px;overflow-wrap:anywhere}
.chip b{white-space:nowrap}
.chip i,.legend i{display:inline-block;width:10px;height:10px;border-radius:2px;flex:none}
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(520px,1fr));gap:14px}
.panel{background:#fff;border:1px solid #e5e7eb;border-radius:10px;margin:0;padding:14px 16px}
.panel figcaption p{margin:2px 0 6px}
.legend{list-style:none;display:flex;flex-wrap:wrap;gap:4px 16px;margin:0 0 4px;padding:0;font-size:12px}
.legend li{display:flex;align-items:center;gap:5px;word-break:break-all}
.empty{border:1px dashed #d1d5db;border-radius:8px;color:#6b7280;text-align:center;padding:40px 12px;
background:#fafafa}
svg.chart{width:100%;height:auto;display:block;overflow:visible}
.gl{stroke:#eef0f3;stroke-width:1}
.axis{stroke:#9ca3af;stroke-width:1}
.tick{fill:#6b7280;font-size:11px}
.series{fill:none;stroke-width:1.8;stroke-linejoin:round}
.band{opacity:.14}
.whisker{stroke-width:1.5;opacity:.7}
.dot{stroke:#fff;stroke-width:1}
.breach{stroke:#fff;stroke-width:1.2}
.bad{fill:#fee2e2;opacity:.55}
.ref-zero{stroke:#374151;stroke-width:1}
.ref-mde{stroke:#7c3aed;stroke-width:1.2;stroke-dasharray:5 4}
.ref-threshold{stroke:#dc2626;stroke-width:1.4;stroke-dasharray:6 4}
.ref-label{stroke:none;font-size:11px;font-weight:600}
text.ref-zero{fill:#374151}
text.ref-mde{fill:#7c3aed}
text.ref-threshold{fill:#dc2626}
.scroll{overflow-x:auto;background:#fff;border:1px solid #e5e7eb;border-radius:10px}
table{border-collapse:collapse;width:100%;font-size:13px}
th{position:sticky;top:0;background:#f9fafb;text-align:left;color:#4b5563;font-weight:600;padding:8px 10px;
border-bottom:1px solid #e5e7eb}
td{padding:4px 10px;border-bottom:1px solid #f1f5f9;vertical-align:top}
td.n{text-align:right;white-space:nowrap}
.bad-row{background:#fef2f2}
.muted-row{color:#9ca3af}
.pill{color:#fff;font-size:11px;padding:1px 7px;border-radius:999px;white-space:nowrap}
.tag{background:#dc2626;color:#fff;font-size:11px;font-weight:600;padding:1px 6px;border-radius:4px;margin-right:6px}
.ok{color:#16a34a;font-weight:700}
.fail{color:#dc2626;font-weight:700}
footer{color:#9ca3af;font-size:12px;margin:28px 0 8px;text-align:center}
"""

CSP = "default-src 'none'; style-src 'unsafe-inline'"
"""The page may load nothing at all: a snapshot that worked offline once works offline forever."""


def render_dashboard(data: DashboardData) -> str:
    """The snapshot page: decision first, then the charts behind it, then the check and receipt trail."""
    colors = arm_colors(data)
    x_axis = _time_axis(data)
    title = f"{data.exp_key} · {data.label} · {data.state.value}"
    body = "".join([
        header(data, colors),
        effect_section(data, x_axis, colors),
        guardrail_section(data, x_axis, colors),
        health_section(data, x_axis, colors),
        checkpoint_section(data),
        receipt_section(data),
        "<footer>abrollout dashboard snapshot · self-contained, works offline</footer>",
    ])
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
            f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
            f'<meta name="viewport" content="width=device-width,initial-scale=1">'
            f"<title>{_e(title)}</title><style>{CSS}</style></head><body><main>{body}</main></body></html>\n")
