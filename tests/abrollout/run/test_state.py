"""The state a continued run carries stays bounded however long the experiment runs."""

from __future__ import annotations

from abrollout.contracts.records import Checkpoint, DecisionState
from abrollout.plan.planner import check_proposal, plan
from abrollout.run.state import CARRIED_ROUTINE_CHECKS, RunState
from abrollout.spec.loader import check_raw
from tests.conftest import BASE_SPEC


def _ninety_days() -> RunState:
    spec = check_raw(dict(BASE_SPEC)).spec
    assert spec is not None
    state = RunState(spec=spec, plan=plan(spec))
    for hour in range(1, 90 * 24 + 1):
        kind = "analysis" if hour % 24 == 0 else "guardrail"
        index = hour // 24 if kind == "analysis" else hour
        state.proposals.append(check_proposal(state.plan, kind, index, hour * 3600,
                                              prior_look_sizes=[] if kind == "analysis" else None))
        state.checkpoints.append(Checkpoint(kind=kind, index=index, at_hours=hour, ref=f"snap-{hour}",
                                            state=DecisionState.running, summary="x" * 300,
                                            breaches=["latency_p95"] if hour == 100 else [],
                                            no_data=hour < 3))
    return state


def test_a_ninety_day_state_is_carried_in_bounded_size_keeping_what_the_report_shows() -> None:
    state = _ninety_days()
    carried = state.carried()
    assert len(state.model_dump_json()) > 2_000_000 > 4 * len(carried.model_dump_json())
    kinds = [(c.kind, c.index) for c in carried.checkpoints]
    assert [i for k, i in kinds if k == "analysis"] == list(range(1, 91))
    assert ("guardrail", 100) in kinds and ("guardrail", 1) in kinds, "breaches and no-data checks are kept"
    assert len(kinds) == 90 + 1 + 2 + CARRIED_ROUTINE_CHECKS - 2  # the last 48 include two daily looks
    assert carried.proposals == [] and carried.prior_look_sizes() == state.prior_look_sizes()
