"""The dashboard's colours: one per decision state, and one per arm that stays the same in every chart."""

from __future__ import annotations

from abrollout.contracts.records import DashboardData, DecisionState

STATE_COLORS = {
    DecisionState.running: "#2563eb",
    DecisionState.promote: "#16a34a",
    DecisionState.guardrail_stop: "#dc2626",
    DecisionState.rollback: "#ea580c",
    DecisionState.inconclusive: "#6b7280",
}
NEUTRAL = "#6b7280"
BREACH_RED = "#dc2626"
ARM_PALETTE = ("#475569", "#2563eb", "#d97706", "#7c3aed", "#0d9488", "#db2777", "#65a30d", "#0891b2")
"""Control first (slate), then treatments; cycles when there are more arms than colours."""


def state_color(state: DecisionState) -> str:
    return STATE_COLORS.get(state, NEUTRAL)


def arm_colors(data: DashboardData) -> dict[str, str]:
    """A stable colour per arm: the registered arms in order, then any other key the checks report (`overall`)."""
    names = [*data.arms]
    for c in data.checkpoints:
        names += [*c.assignments, *c.effects, *(arm for values in c.guardrails.values() for arm in values)]
    ordered = list(dict.fromkeys(names))
    return {arm: ARM_PALETTE[i % len(ARM_PALETTE)] for i, arm in enumerate(ordered)}
