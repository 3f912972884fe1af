"""Each guardrail's observed value per arm at every check, against its threshold, with its breaches marked."""

from __future__ import annotations

from collections.abc import Sequence

from abrollout.contracts.records import Checkpoint, DashboardData, GuardrailLine
from abrollout.report.blocks import grid, legend, panel, placeholder, section
from abrollout.report.charts.scales import Axis, Plot, arm_lines, downsample, value_axis
from abrollout.report.charts.svg import episode_markers, hline, polyline, shade, svg
from abrollout.report.formats import at, finite, num


def _holds(line: GuardrailLine) -> str:
    return f"must stay {line.direction} {line.threshold:g}"


def _worst(line: GuardrailLine, values: dict[str, float]) -> tuple[str, float] | None:
    """The arm value furthest towards breaching: the highest for `<` guardrails, the lowest for `>`."""
    usable = [(arm, v) for arm, v in values.items() if finite(v)]
    if not usable:
        return None
    pick = min if line.direction == ">" else max
    return pick(usable, key=lambda item: item[1])


def _breach_markers(plot: Plot, line: GuardrailLine, checkpoints: Sequence[Checkpoint]) -> list[str]:
    worst = [(c, w) for c in checkpoints if (w := _worst(line, c.guardrails.get(line.name, {}))) is not None]

    def title(start: int, length: int) -> str:
        c, (arm, value) = worst[start]
        return f"BREACH from {at(c.at_hours)}, {length} checks in a row: {arm} {num(value)} ({_holds(line)})"

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
        return panel(line.name, caption, placeholder("No checks yet"))
    plot = Plot(x_axis, value_axis([line.threshold, *(v for points in lines.values() for _, v in points)]))
    threshold = hline(plot, line.threshold, "ref-threshold", f"{line.direction} {line.threshold:g}")
    body = [_breach_region(plot, line), threshold]
    body += [polyline(plot, downsample(points, lambda p: p[1]), colors[arm]) for arm, points in lines.items()]
    body += _breach_markers(plot, line, data.checkpoints)
    key = legend((colors[arm], arm, f"latest {num(points[-1][1])}") for arm, points in lines.items())
    return panel(line.name, caption, svg(plot, body, f"guardrail {line.name} over time"), key)


def guardrail_section(data: DashboardData, x_axis: Axis, colors: dict[str, str]) -> str:
    if not data.guardrails:
        return section("Guardrails", placeholder("No guardrails registered"))
    panels = [guardrail_panel(line, data, x_axis, colors) for line in data.guardrails]
    return section("Guardrails", grid(panels),
                   "Observed value per arm at every check, against the threshold; the shaded side is a breach, "
                   "a red dot marks where each run of breaching checks began.")
