"""Numbers and times as the dashboard writes them: one wording for the header, the charts and the tables."""

from __future__ import annotations

import math

from abrollout.contracts.records import ArmEffect


def finite(value: float | None) -> bool:
    """Data can hold NaN (a metric with no events yet): such a value is left out, never drawn or printed."""
    return value is not None and math.isfinite(value)


def num(value: float) -> str:
    return f"{value:.4g}"


def signed(value: float) -> str:
    return f"{value:+.4g}"


def at(hours: float) -> str:
    return f"{hours:g} h (day {hours / 24:.1f})"


def effect_text(effect: ArmEffect) -> str:
    """Estimate [interval], then whichever of relative lift, p-value and boundary the look has."""
    extra = [f"relative {effect.relative:+.2%}" if finite(effect.relative) else "",
             f"p {effect.p_value:.3g}" if finite(effect.p_value) else "",
             f"boundary {effect.boundary:.3g}" if finite(effect.boundary) else ""]
    return (f"{signed(effect.estimate)} [{signed(effect.ci_low)}, {signed(effect.ci_high)}]"
            + "".join(f" · {part}" for part in extra if part))
