"""Assignment health: the sample-ratio test's p-value over time, and the users assigned to each arm."""

from __future__ import annotations

import math
from collections.abc import Iterable

from abrollout.contracts.records import Checkpoint, DashboardData
from abrollout.policy import PARAMS
from abrollout.report.blocks import grid, legend, panel, placeholder, section
from abrollout.report.charts.scales import SMALLEST_P, Axis, Plot, arm_lines, downsample, log_axis, value_axis
from abrollout.report.charts.svg import episode_markers, hline, polyline, shade, svg
from abrollout.report.formats import at, finite

SRM_LINE = "#64748b"


def _srm_checks(checkpoints: Iterable[Checkpoint]) -> list[tuple[Checkpoint, float]]:
    return [(c, c.srm_p) for c in checkpoints if c.srm_p is not None and finite(c.srm_p) and c.srm_p >= 0]


def _srm_flagged(checkpoint: Checkpoint, p: float) -> bool:
    return "srm" in checkpoint.breaches or p < PARAMS.srm_p_threshold


def srm_panel(data: DashboardData, x_axis: Axis) -> str:
    alpha = PARAMS.srm_p_threshold
    checks = _srm_checks(data.checkpoints)
    title = "Sample ratio mismatch (p-value)"
    caption = f"Sample-ratio test of assignments against the planned split; below {alpha:g} the split is broken."
    if not checks:
        return panel(title, caption, placeholder("No SRM checks yet"))
    plot = Plot(x_axis, log_axis(min(p for _, p in checks), alpha))
    points = [(c.at_hours, math.log10(max(p, SMALLEST_P))) for c, p in checks]
    flags = [_srm_flagged(c, p) for c, p in checks]

    def describe(start: int, length: int) -> str:
        return f"SRM from {at(points[start][0])}, {length} checks in a row: p {checks[start][1]:.3g}"

    body = [shade(plot, math.log10(alpha), plot.y_axis.lo, "bad"),
            hline(plot, math.log10(alpha), "ref-threshold", f"p {alpha:g}"),
            polyline(plot, downsample(points, lambda p: p[1]), SRM_LINE),
            *episode_markers(plot, points, flags, describe)]
    caption += f" Latest p {checks[-1][1]:.3g}" + (f"; flagged at {sum(flags)} checks." if any(flags) else ".")
    return panel(title, caption, svg(plot, body, "SRM p-value over time, log scale"))


def _share(count: float, total: float) -> str:
    return f"{100 * count / total:.2f}%" if total else "-"


def traffic_panel(data: DashboardData, x_axis: Axis, colors: dict[str, str]) -> str:
    lines = arm_lines(data.checkpoints, lambda c: c.assignments)
    caption = "Cumulative users assigned to each arm; the legend compares the latest share with the planned split."
    if not lines:
        return panel("Traffic per arm", caption, placeholder("No assignments yet"))
    total = sum(points[-1][1] for points in lines.values())
    plot = Plot(x_axis, value_axis([0.0, *(v for points in lines.values() for _, v in points)]))
    body = [polyline(plot, downsample(points, lambda p: p[1]), colors[arm]) for arm, points in lines.items()]
    key = legend((colors[arm], arm, f"{points[-1][1]:,.0f} · {_share(points[-1][1], total)} "
                  f"(planned {data.split.get(arm, 0):g}%)") for arm, points in lines.items())
    return panel("Traffic per arm", caption, svg(plot, body, "assignments per arm over time"), key)


def health_section(data: DashboardData, x_axis: Axis, colors: dict[str, str]) -> str:
    return section("Assignment health", grid([srm_panel(data, x_axis), traffic_panel(data, x_axis, colors)]))
