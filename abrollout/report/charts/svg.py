"""SVG primitives on a `Plot`: the chart frame with its gridlines, series, bands, reference lines and markers.

Coordinates are written with one decimal, so the same data gives the same bytes on every machine.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from html import escape
from itertools import groupby

from abrollout.report.charts.scales import BOTTOM, HEIGHT, LEFT, RIGHT, TOP, WIDTH, Plot, Point, downsample
from abrollout.report.colors import BREACH_RED
from abrollout.report.formats import num


def _xy(plot: Plot, point: Point) -> str:
    return f"{plot.x(point[0]):.1f},{plot.y(point[1]):.1f}"


def _axes(plot: Plot) -> str:
    x, y = plot.x, plot.y
    bottom = HEIGHT - BOTTOM
    rows = [f'<line class="gl" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y(t.value):.1f}" y2="{y(t.value):.1f}"/>'
            f'<text class="tick" x="{LEFT - 6}" y="{y(t.value):.1f}" dy="0.32em" text-anchor="end">'
            f"{escape(t.label)}</text>"
            for t in plot.y_axis.ticks]
    cols = [f'<line class="gl" x1="{x(t.value):.1f}" x2="{x(t.value):.1f}" y1="{TOP}" y2="{bottom}"/>'
            f'<text class="tick" x="{x(t.value):.1f}" y="{bottom + 16}" text-anchor="middle">{escape(t.label)}</text>'
            for t in plot.x_axis.ticks]
    frame = f'<line class="axis" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{bottom}" y2="{bottom}"/>'
    return "".join([*rows, *cols, frame])


def svg(plot: Plot, body: Iterable[str], label: str) -> str:
    return (f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{escape(label)}">'
            f'{_axes(plot)}{"".join(body)}</svg>')


def polyline(plot: Plot, points: Sequence[Point], color: str) -> str:
    """A series as a line; a lone point as a dot, since a one-point polyline draws nothing."""
    if len(points) == 1:
        return marker(plot, points[0], color, f"{num(points[0][1])} at {points[0][0]:g} h")
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
            f'<text class="ref-label {css}" x="{WIDTH - RIGHT + 4}" y="{y:.1f}" dy="0.32em">{escape(label)}</text>')


def marker(plot: Plot, point: Point, color: str, title: str, css: str = "dot") -> str:
    """A point with a hover tooltip (SVG <title>: no script needed); breaches are drawn a little larger."""
    radius = 4.5 if css == "breach" else 3.5
    return (f'<circle class="{css}" cx="{plot.x(point[0]):.1f}" cy="{plot.y(point[1]):.1f}" r="{radius}" '
            f'fill="{color}"><title>{escape(title)}</title></circle>')


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
