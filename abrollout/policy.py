"""exp_policy.v5 as data: every rule the code enforces has a clause id, and every refusal or decision cites it.

The parameters (shares, caps, alphas) live next to the clauses that use them so that a policy bump is one
reviewed change to this file, and the version string travels with every experiment.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType

POLICY_ID = "exp_policy.v5"


@dataclass(frozen=True)
class Clause:
    id: str
    title: str
    rule: str

    @property
    def ref(self) -> str:
        """The citation form, e.g. `exp_policy.v5#prereg.1`."""
        return f"{POLICY_ID}#{self.id}"


@dataclass(frozen=True)
class PolicyParameters:
    """Numbers the clauses refer to. Changing one is a policy change (bump POLICY_ID)."""

    min_arms: int = 2
    max_arms: int = 8
    min_arm_share_percent: float = 5.0
    split_resolution_percent: float = 0.1  # Unleash variant weights are out of 1000
    min_duration_days: int = 1
    max_duration_days: int = 90
    min_guardrail_interval_seconds: int = 5 * 60
    max_guardrail_interval_seconds: int = 24 * 3600
    max_analysis_looks: int = 100
    max_concurrent_cap: int = 50
    max_relative_mde_percent: float = 100.0
    alpha: float = 0.05  # two-sided, split evenly between benefit and harm
    power: float = 0.80
    # Hwang-Shih-DeCani gamma=-4 (gsDesign's default): measured by bench.stats_bench against O'Brien-Fleming,
    # it keeps FPR at 5% and ~97% of fixed-horizon power while stopping a 2x-MDE effect in 16 h instead of 40 h.
    spending_function: str = "hwang_shih_decani"
    spending_parameter: float = -4.0
    guardrail_alpha: float = 0.05  # one-sided harm tests on per-arm guardrails
    srm_p_threshold: float = 0.001
    promote_min_effect_fraction_of_mde: float = 0.5
    no_data_grace_checks: int = 3
    stale_data_hours: float = 3.0  # newest event this much older than a check's window end: the data is stale
    severity_guardrail_stop: str = "high"
    severity_srm: str = "high"
    severity_harm: str = "medium"
    severity_unverified_change: str = "critical"


PARAMS = PolicyParameters()

_CLAUSES = (
    Clause("spec.1", "Critical fields", "treatment_spec, primary_metric, mde and max_duration_days are required; "
           "unknown fields are refused."),
    Clause("prereg.1", "Pre-registration before allocation", "Metrics, guardrails, hypothesis, MDE, analysis "
           "schedule and decision rule are registered (RegisterExperiment returned an exp_id) before any traffic "
           "is allocated."),
    Clause("prereg.2", "No mid-run changes", "The split, exposure rules, metrics and decision rule cannot change "
           "after registration."),
    Clause("prereg.3", "Only pre-registered ramps change exposure", "Exposure changes mid-run only by the next "
           "pre-registered ramp step."),
    Clause("arms.1", "Arms", f"An arm named `control` is required; {PARAMS.min_arms} to {PARAMS.max_arms} arms."),
    Clause("split.1", "Split covers the arms", "The split names exactly the arms of treatment_spec and sums to 100."),
    Clause("split.2", "Minimum share", f"Every arm gets at least {PARAMS.min_arm_share_percent:g}% of traffic."),
    Clause("split.3", "Split resolution", f"Shares are multiples of {PARAMS.split_resolution_percent:g}% "
           "(flag variant weights are out of 1000)."),
    Clause("duration.1", "Duration cap", f"max_duration_days is between {PARAMS.min_duration_days} and "
           f"{PARAMS.max_duration_days}."),
    Clause("schedule.1", "Analysis schedule", "The guardrail interval is between 5m and 24h and divides the "
           f"analysis interval, which divides the duration cap; at most {PARAMS.max_analysis_looks} analysis looks."),
    Clause("clock.1", "Demo clock", "schedule.hour_seconds below 3600 (an accelerated clock) is allowed only with "
           "the embedded adapters."),
    Clause("mde.1", "Minimum detectable effect", "mde states its kind (relative percent or absolute metric units) "
           f"and is > 0; a relative MDE is at most {PARAMS.max_relative_mde_percent:g}%."),
    Clause("guardrail.1", "At least one guardrail", "Every experiment registers at least one guardrail."),
    Clause("guardrail.2", "Threshold breach stops the run", "A guardrail whose must-hold condition fails on the "
           "observed value stops the run (guardrail_stop) before lift is considered."),
    Clause("guardrail.3", "Non-inferiority", "A guardrail with a margin stops the run when a one-sided "
           f"always-valid test (alpha {PARAMS.guardrail_alpha:g}) shows a treatment worse than control by more "
           "than the margin."),
    Clause("guardrail.4", "Stop order", "On a guardrail stop: StopRun, RollbackVariant to control, OpenTicket, "
           "SnapshotDashboard, in that order."),
    Clause("srm.1", "Sample ratio mismatch", f"A chi-square test of assignment counts against the split with "
           f"p < {PARAMS.srm_p_threshold:g} is a guardrail breach."),
    Clause("ramp.1", "Ramp", "Ramp steps strictly increase in exposure and time, start at 0h, end at 100%, and "
           "all start before the duration cap."),
    Clause("concurrency.1", "Concurrency", f"max_concurrent is between 1 and {PARAMS.max_concurrent_cap}; the "
           "N+1st experiment running at once in a domain is refused."),
    Clause("domain.pricing.1", "Pricing protects revenue", "A pricing experiment has a revenue guardrail "
           "(a guardrail whose name contains `revenue`)."),
    Clause("domain.prompts.1", "Prompts protect quality", "A prompts experiment has a quality guardrail "
           "(name contains defect, safety, toxicity or hallucination)."),
    Clause("domain.policies.1", "Policies protect quality", "A policies experiment has a quality guardrail "
           "(name contains defect, safety, toxicity or hallucination)."),
    Clause("domain.ranking.1", "Ranking protects latency", "A ranking experiment has a latency guardrail "
           "(name contains `latency`)."),
    Clause("decision.1", "Sequential primary analysis", f"The primary metric is analysed at the pre-registered "
           f"looks with a group-sequential test ({PARAMS.spending_function} alpha spending with parameter "
           f"{PARAMS.spending_parameter:g}, two-sided alpha "
           f"{PARAMS.alpha:g}); unplanned looks use an always-valid test."),
    Clause("decision.2", "Promote", "Promote when the primary metric crosses the efficacy boundary in the "
           f"hypothesised direction with an estimate of at least {PARAMS.promote_min_effect_fraction_of_mde:g} x "
           "MDE; with several treatments, Holm-corrected, the best arm that clears it."),
    Clause("decision.3", "Harm", "Roll back when the primary metric crosses the boundary against the hypothesised "
           "direction."),
    Clause("decision.4", "Cap", "At the duration cap without a decision the experiment is inconclusive: roll back "
           "to control and stop the run."),
    Clause("manual.1", "Manual stop", "A manual stop stops the run and rolls back to control, with the reason "
           "recorded."),
    Clause("manual.2", "Manual promote", "A manual promote names an arm of the spec and is refused while a "
           "guardrail is breached."),
    Clause("data.1", "No decision on missing data", f"A check with no or stale data (newest event more than "
           f"{PARAMS.stale_data_hours:g} h before the window's end) decides nothing; after "
           f"{PARAMS.no_data_grace_checks} such checks in a row a ticket is opened."),
    Clause("receipts.1", "Receipts", "A step is done only when the outside system returned an id and, for flag "
           "changes, the post-state was read back and matched."),
    Clause("receipts.2", "Idempotency", "Every side effect carries a deterministic idempotency key (experiment "
           "key, step, hash of args)."),
    Clause("verify.1", "Proposal verification", "A tool proposal runs only if its tool is allowed, its args are "
           "valid for that tool and its preconditions are met by the receipts so far."),
)

CLAUSES: MappingProxyType[str, Clause] = MappingProxyType({c.id: c for c in _CLAUSES})


def cite(clause_id: str) -> str:
    """The citation string for a clause id; raises KeyError on an unknown id so typos fail tests."""
    return CLAUSES[clause_id].ref
