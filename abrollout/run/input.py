"""What starts an experiment's workflow, and what a continued run starts from.

The starter plans once and the plan travels here, so a running experiment never depends on today's planner.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from abrollout.contracts.spec import ExperimentSpec
from abrollout.plan.planner import ExperimentPlan, plan
from abrollout.run.state import RunState


class ExperimentInput(BaseModel):
    """The normalised spec and its plan; `state` only when the workflow continues as new (it carries no third copy
    of spec and plan: they are filled in from here when it is read)."""

    model_config = ConfigDict(extra="forbid")

    spec: ExperimentSpec
    plan: ExperimentPlan
    state: RunState | None = None
    max_history_events: int | None = None  # test hook: continue as new earlier than the server suggests
    tool_timeout_seconds: int = Field(default=60, ge=1, le=3600,
                                      description="How long one tool call may run before Temporal retries it, "
                                      "possibly on another worker (a dead worker is noticed after this).")

    @model_validator(mode="before")
    @classmethod
    def _complete(cls, value: Any) -> Any:
        """Inputs recorded before the plan travelled in them (docs/upgrading.md) are planned once, here, as they are
        read; a carried state gets the input's spec and plan."""
        if not isinstance(value, dict) or "spec" not in value:
            return value
        value = dict(value)
        state = value.get("state")
        if value.get("plan") is None:
            carried = state.get("plan") if isinstance(state, dict) else getattr(state, "plan", None)
            value["plan"] = carried or plan(ExperimentSpec.model_validate(value["spec"]))
        if isinstance(state, dict):
            value["state"] = {"spec": value["spec"], "plan": value["plan"], **state}
        return value
