"""From data to pixels: round-number ticks, the time, value and log axes, the linear scale, and downsampling."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

from abrollout.contracts.records import Checkpoint
from abrollout.report.formats import finite

T = TypeVar("T")
Point = tuple[float, float]
PerArm = Callable[[Checkpoint], Mapping[str, float]]

MAX_POINTS = 500
"""Most points drawn per series: a 90-day run has 2,000+ hourly checks, and a screen is ~500 pixels wide."""
SMALLEST_P = 1e-16
"""p-values below this are drawn at it: the log axis needs a floor, and a p of 0 is printed, not plotted."""

WIDTH, HEIGHT = 560, 220
TOP, RIGHT, BOTTOM, LEFT = 12, 84, 26, 58
"""Chart margins; the right one holds the labels of reference lines (threshold, zero, MDE)."""


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


def log_axis(smallest_p: float, threshold: float) -> Axis:
    """log10 p in decades from below `smallest_p` (and at least a decade below `threshold`, so the threshold's
    line always shows) up to 1."""
    low = min(math.floor(math.log10(threshold)) - 1, math.floor(math.log10(max(smallest_p, SMALLEST_P))))
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
            if finite(value) and finite(c.at_hours):
                lines.setdefault(arm, []).append((c.at_hours, value))
    return lines
