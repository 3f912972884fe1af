"""Spec -> plan: the deterministic list of tool proposals an experiment runs, each with its preconditions and
idempotency key. Same spec, same plan, byte for byte (no clock, no uuid4), so a key names the same effect on
every retry; the starter plans once and the plan travels in the workflow's input (abrollout/run/input.py).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from abrollout.contracts.constraints import Constraint
from abrollout.contracts.records import DashboardData, DecisionState
from abrollout.contracts.spec import CONTROL_ARM, ExperimentSpec, Guardrail, RampStep
from abrollout.contracts.tools import (
    PROPOSAL_OF,
    AllocateTrafficArgs,
    CheckMetricsArgs,
    CreateFlagArgs,
    OpenTicketArgs,
    PayloadDigest,
    PromoteVariantArgs,
    RegisterExperimentArgs,
    RollbackVariantArgs,
    SnapshotDashboardArgs,
    StartRunArgs,
    StopRunArgs,
    ToolArgs,
    ToolName,
    ToolProposal,
)
from abrollout.contracts.verdicts import AnalysisPlan
from abrollout.flags.rules import parse_rules
from abrollout.ids import digest, idempotency_key
from abrollout.policy import PARAMS, POLICY_ID, cite

# The registry's exp_id and the run id are only known at run time: placeholders, filled in from receipts
# (abrollout.plan.verify); keys are computed from the placeholder form, so they are stable before and after.
EXP_ID = "${register.ref}"
RUN_ID = "${run.ref}"
DAY = 86400
HOUR = 3600


class ExperimentPlan(BaseModel):
    """Everything the workflow needs to run an experiment, derived once from the normalised spec by the starter
    and carried in the workflow's input. Arms, split, primary metric and guardrails live once, in `analysis`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    exp_key: str
    flag_key: str
    spec_hash: str
    policy_id: str
    plan_hash: str = Field(default="", description="Digest of everything else in the plan: shown in the UI.")
    domain: str
    exposure_rules: list[str]
    constraints: list[Constraint]
    ramp: list[RampStep]
    guardrail_check_every: int
    analysis_every: int
    max_duration_seconds: int
    planned_looks: int
    hour_seconds: float
    owners: list[str]
    analysis: AnalysisPlan
    setup: list[ToolProposal]
    ramp_steps: list[ToolProposal]

    @model_validator(mode="before")
    @classmethod
    def _without_copies(cls, value: Any) -> Any:
        """Plans recorded before `analysis` was their one home for these carried copies of them."""
        if isinstance(value, dict):
            return {k: v for k, v in value.items() if k not in _COPIED_INTO_ANALYSIS}
        return value

    @property
    def arms(self) -> list[str]:
        return list(self.analysis.arms)

    @property
    def split(self) -> dict[str, float]:
        return dict(self.analysis.split)

    @property
    def primary_metric(self) -> str:
        return self.analysis.primary_metric

    @property
    def guardrails(self) -> list[Guardrail]:
        return list(self.analysis.guardrails)


_COPIED_INTO_ANALYSIS = frozenset({"arms", "split", "primary_metric", "guardrails"})


def propose(exp_key: str, step: str, args: ToolArgs, preconditions: list[str]) -> ToolProposal:
    """A proposal for the tool the args are for, its key a hash of the args as written (placeholders included)."""
    key = idempotency_key(exp_key, step, {"tool": args.tool.value, "args": args.model_dump(mode="json")})
    return PROPOSAL_OF[args.tool](step=step, args=args, preconditions=preconditions, idempotency_key=key)


def _decision_rule(spec: ExperimentSpec) -> str:
    return (f"group-sequential {PARAMS.spending_function}, two-sided alpha {PARAMS.alpha:g}, "
            f"power {PARAMS.power:g}, promote floor {PARAMS.promote_min_effect_fraction_of_mde:g} x MDE "
            f"({spec.mde.describe()}), guardrail alpha {PARAMS.guardrail_alpha:g}, SRM p < "
            f"{PARAMS.srm_p_threshold:g}; {', '.join(cite(c) for c in ('decision.1', 'decision.2', 'decision.3'))}")


def flag_key(exp_key: str) -> str:
    """The experiment's flag: one per experiment, its group id the experiment key (sticky per experiment)."""
    return f"abr.{exp_key}"


def expected_users(spec: ExperimentSpec) -> int | None:
    """Users expected by the cap given the pre-registered ramp (each step's exposure for its duration)."""
    daily = spec.allocation.expected_daily_users
    if daily is None:
        return None
    cap = spec.max_duration_days * DAY
    ramp = spec.ramp or [RampStep(percent=100, at=0)]
    ends = [step.at for step in ramp[1:]] + [cap]
    exposed_seconds = sum(step.percent / 100 * (end - step.at) for step, end in zip(ramp, ends, strict=True))
    return max(1, round(daily * exposed_seconds / DAY))


def analysis_plan(spec: ExperimentSpec, split: dict[str, float], looks: int) -> AnalysisPlan:
    """What the statistics follow, fixed at registration."""
    metric = spec.primary_metric
    return AnalysisPlan(primary_metric=metric.name, goal=metric.goal, metric_kind=metric.kind, mde=spec.mde,
                        baseline_mean=metric.baseline, spending_parameter=PARAMS.spending_parameter,
                        planned_looks=looks, planned_max_users=expected_users(spec), arms=tuple(spec.arms),
                        split=split, guardrails=tuple(spec.guardrails))


def plan(spec: ExperimentSpec) -> ExperimentPlan:
    """The plan for a normalised spec (see abrollout.spec.admission.normalize)."""
    if spec.name is None or spec.allocation.split is None or spec.hypothesis is None or not spec.ramp:
        raise ValueError("plan() needs a normalised spec (name, hypothesis, split and ramp filled in)")
    key = spec.name
    key_of_flag = flag_key(key)
    spec_hash = digest(spec.model_dump(mode="json"))
    split = dict(spec.allocation.split)
    rules = list(spec.allocation.exposure_rules)
    constraints = list(parse_rules(rules))
    looks = spec.max_duration_days * DAY // spec.schedule.analysis_every
    analysis = analysis_plan(spec, split, looks)
    metrics = [spec.primary_metric.name, *(m.name for m in spec.secondary_metrics),
               *(g.name for g in spec.guardrails if g.name != spec.primary_metric.name)]

    register = RegisterExperimentArgs(
        exp_key=key, domain=spec.domain.value, primary_metric=spec.primary_metric.name,
        goal=spec.primary_metric.goal.value, metrics=list(dict.fromkeys(metrics)), guardrails=spec.guardrails,
        hypothesis=spec.hypothesis, mde=spec.mde, arms=list(spec.arms), max_duration_days=spec.max_duration_days,
        max_concurrent=spec.max_concurrent, guardrail_check_every_seconds=spec.schedule.guardrail_check_every,
        analysis_every_seconds=spec.schedule.analysis_every, hour_seconds=spec.schedule.hour_seconds,
        planned_looks=looks,
        decision_rule=_decision_rule(spec), analysis=analysis, policy_id=POLICY_ID, spec_hash=spec_hash,
        simulation=spec.simulation)
    flag = CreateFlagArgs(flag_key=key_of_flag, group_id=key, variants=list(spec.arms),
                          description=f"abrollout experiment {key}: {spec.hypothesis}"[:4000])
    run = StartRunArgs(exp_id=EXP_ID, run_name=f"{key}-run", population=spec.allocation.population)
    setup = [
        propose(key, "register", register, []),
        propose(key, "flag", flag, ["done:register"]),
        propose(key, "run", run, ["done:register"]),
    ]
    ramp_steps = []
    for i, step in enumerate(spec.ramp):
        args = AllocateTrafficArgs(flag_key=key_of_flag, group_id=key, exp_id=EXP_ID, split=split, exposure_rules=rules,
                                   constraints=constraints, rollout_percent=step.percent, ramp_step=i)
        needs = ["done:register", "done:flag", "done:run"] if i == 0 else [f"done:allocate-{i - 1}"]
        ramp_steps.append(propose(key, f"allocate-{i}", args, [*needs, "state:running"]))
    setup.append(ramp_steps[0])
    unhashed = ExperimentPlan(
        exp_key=key, flag_key=key_of_flag, spec_hash=spec_hash, policy_id=POLICY_ID, domain=spec.domain.value,
        exposure_rules=rules, constraints=constraints, ramp=list(spec.ramp),
        guardrail_check_every=spec.schedule.guardrail_check_every, analysis_every=spec.schedule.analysis_every,
        max_duration_seconds=spec.max_duration_days * DAY, planned_looks=looks,
        hour_seconds=spec.schedule.hour_seconds, owners=list(spec.owners), analysis=analysis, setup=setup,
        ramp_steps=ramp_steps[1:])
    return unhashed.model_copy(update={"plan_hash": digest(unhashed.model_dump(mode="json"))})


def check_proposal(p: ExperimentPlan, kind: str, index: int, at_seconds: int, step: str | None = None,
                   prior_look_sizes: list[dict[str, int]] | None = None) -> ToolProposal:
    """A CheckMetrics proposal: hourly guardrail check `index`, planned analysis look `index`, or (with its own
    `step` name) an unplanned check pushed by an alert."""
    lookback = max(1, (p.guardrail_check_every if kind == "guardrail" else p.analysis_every) // HOUR)
    args = CheckMetricsArgs(exp_id=EXP_ID, run_id=RUN_ID, kind=kind,
                            check_index=index, at_seconds=at_seconds, primary_metric=p.primary_metric,
                            guardrails=p.guardrails, lookback_hours=lookback,
                            prior_look_sizes=prior_look_sizes or [])
    return propose(p.exp_key, step or f"check-{kind}-{index}", args, ["done:allocate-0"])


def _stop(p: ExperimentPlan, reason: str) -> ToolProposal:
    return propose(p.exp_key, "stop", StopRunArgs(run_id=RUN_ID, reason=reason), ["done:run"])


def _rollback(p: ExperimentPlan, reason: str) -> ToolProposal:
    args = RollbackVariantArgs(flag_key=p.flag_key, to_variant=CONTROL_ARM, reason=reason)
    return propose(p.exp_key, "rollback", args, ["done:flag"])


def snapshot_proposal(p: ExperimentPlan, step: str, data: DashboardData) -> ToolProposal:
    """A dashboard snapshot of `data`, built when it is taken so it shows the receipts up to that moment."""
    args = SnapshotDashboardArgs(run_id=RUN_ID, exp_key=p.exp_key, label=data.label, data=data)
    return propose(p.exp_key, step, args, ["done:run"])


def without_payload(proposal: ToolProposal) -> ToolProposal:
    """The proposal as kept in the run state: a dashboard's data is replaced by its digest (the full data is
    in the activity's input in the history), so the state stays small across continue-as-new."""
    if proposal.name is not ToolName.SnapshotDashboard or isinstance(proposal.args.data, PayloadDigest):
        return proposal
    data = PayloadDigest(digest=digest(proposal.args.data.model_dump(mode="json")))
    return proposal.model_copy(update={"args": proposal.args.model_copy(update={"data": data})})


def ticket_proposal(p: ExperimentPlan, step: str, title: str, description: str, severity: str) -> ToolProposal:
    args = OpenTicketArgs(exp_key=p.exp_key, title=title[:200], description=description[:4000],
                          severity=severity, owners=p.owners)
    return propose(p.exp_key, step, args, ["done:register"])


def closing_proposals(p: ExperimentPlan, state: DecisionState, reason: str, *, arm: str | None = None,
                      severity: str | None = None) -> list[ToolProposal]:
    """The tools that carry out a terminal decision, in policy order (guardrail.4, decision.2-4, manual.1);
    the workflow follows them with a final `snapshot_proposal` so the dashboard shows their receipts."""
    if state is DecisionState.promote:
        if arm is None:
            raise ValueError("a promote decision names the arm")
        promote = propose(p.exp_key, "promote", PromoteVariantArgs(flag_key=p.flag_key, variant=arm, reason=reason),
                          ["done:allocate-0", "no_breach"])
        return [promote, _stop(p, reason)]
    if state is DecisionState.guardrail_stop:
        title = f"Guardrail stop: {p.exp_key}"
        ticket = ticket_proposal(p, "ticket", title, reason, severity or PARAMS.severity_guardrail_stop)
        return [_stop(p, reason), _rollback(p, reason), ticket]
    if state is DecisionState.rollback:
        return [_stop(p, reason), _rollback(p, reason)]
    if state is DecisionState.inconclusive:
        return [_rollback(p, reason), _stop(p, reason)]
    raise ValueError(f"{state.value} is not a terminal decision")
