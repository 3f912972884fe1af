"""The primary metric's effect per treatment arm at each analysis look, against zero and the MDE."""

from __future__ import annotations

from collections.abc import Sequence

from abrollout.contracts.records import ArmEffect, Checkpoint, DashboardData
from abrollout.contracts.spec import Effect, EffectKind
from abrollout.report.blocks import grid, panel, placeholder, section
from abrollout.report.charts.scales import Axis, Plot, downsample, value_axis
from abrollout.report.charts.svg import band, hline, marker, polyline, svg, whisker
from abrollout.report.formats import at, effect_text, finite, num

Look = tuple[float, ArmEffect]
TITLE = "Primary metric: cumulative effect"


def absolute_mde(mde: Effect | None) -> float | None:
    """The MDE in metric units, the scale the effects are drawn on; None when it is relative (or, in a snapshot
    recorded before the typed MDE was carried, unknown)."""
    return mde.value if mde is not None and mde.kind is EffectKind.absolute else None


def _note(data: DashboardData, mde: float | None) -> str:
    lead = (f"Treatment minus control on {data.primary_metric}, in metric units, at each analysis look: the dot is "
            "the estimate, the bar and band its interval. ")
    if mde is not None:
        return lead + f"Dashed lines: ±MDE ({data.mde})."
    if data.mde_effect is None:
        return lead + f"The MDE ({data.mde}) is not drawn."
    return lead + f"The MDE ({data.mde}) is relative, so it is not drawn on this absolute scale."


def _looks(checkpoints: Sequence[Checkpoint], arm: str) -> list[Look]:
    points = [(c.at_hours, c.effects[arm]) for c in checkpoints if c.kind == "analysis" and arm in c.effects]
    usable = [(h, e) for h, e in points if all(finite(v) for v in (h, e.estimate, e.ci_low, e.ci_high))]
    return downsample(usable, lambda look: look[1].estimate)


def _effect_chart(plot: Plot, arm: str, looks: list[Look], mde: float | None, color: str) -> str:
    body = [hline(plot, 0.0, "ref-zero", "0")]
    if mde is not None:
        body += [hline(plot, mde, "ref-mde", f"+MDE {num(mde)}"), hline(plot, -mde, "ref-mde", f"-MDE {num(mde)}")]
    if len(looks) > 1:
        body.append(band(plot, [(h, e.ci_low) for h, e in looks], [(h, e.ci_high) for h, e in looks], color))
        body.append(polyline(plot, [(h, e.estimate) for h, e in looks], color))
    body += [whisker(plot, h, e.ci_low, e.ci_high, color) for h, e in looks]
    body += [marker(plot, (h, e.estimate), color, f"{at(h)}: {effect_text(e)}") for h, e in looks]
    return svg(plot, body, f"effect of {arm} over time")


def effect_section(data: DashboardData, x_axis: Axis, colors: dict[str, str]) -> str:
    """One panel per treatment arm, all on one value axis so that arms compare at a glance."""
    arms = list(dict.fromkeys(arm for c in data.checkpoints if c.kind == "analysis" for arm in c.effects))
    looks = {arm: _looks(data.checkpoints, arm) for arm in arms}
    drawn = {arm: points for arm, points in looks.items() if points}
    mde = absolute_mde(data.mde_effect)
    note = _note(data, mde)
    if not drawn:
        return section(TITLE, placeholder("No analysis looks yet"), note)
    values = [v for points in drawn.values() for _, e in points for v in (e.ci_low, e.ci_high)]
    plot = Plot(x_axis, value_axis([*values, 0.0, *([mde, -mde] if mde is not None else [])]))
    panels = [panel(f"{arm} vs control", effect_text(points[-1][1]),
                    _effect_chart(plot, arm, points, mde, colors[arm])) for arm, points in drawn.items()]
    return section(TITLE, grid(panels), note)
