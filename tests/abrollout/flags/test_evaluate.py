"""Unleash-compatible flag evaluation: weights, variant order, constraints, stickiness, vectorised assignment."""

from __future__ import annotations

import random
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta, timezone
from itertools import pairwise

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from abrollout.contracts.constraints import Constraint, Operator
from abrollout.flags.evaluate import (
    DISABLED_VARIANT,
    NOT_EXPOSED,
    EvalContext,
    FlagState,
    FlexibleRollout,
    Variant,
    assign_many,
    constraint_holds,
    effective_variants,
    get_variant,
    is_enabled,
    resolve_weights,
    variant_names,
)

NOW = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)


def var(name: str, weight: int = 0, fix: bool = False) -> Variant:
    return Variant(name=name, weight=weight, weight_type="fix" if fix else "variable")


def flag(*strategies: FlexibleRollout, enabled: bool = True) -> FlagState:
    return FlagState(name="exp-checkout", enabled=enabled, strategies=strategies)


def rollout(percent: int = 100, **kwargs: object) -> FlexibleRollout:
    return FlexibleRollout.model_validate({"rollout": percent, "group_id": "exp-checkout", **kwargs})


def props(**values: str) -> EvalContext:
    return EvalContext(properties=values)


# --- weights and variant order ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("variants", "expected"),
    [
        ([var("a", 900, fix=True), var("b")], (900, 100)),
        ([var("a"), var("b")], (500, 500)),
        ([var("a"), var("b"), var("c")], (334, 333, 333)),  # remainder to the first variable variant
        ([var("a", 1, fix=True), var("b"), var("c")], (1, 500, 499)),
        ([var("a", 100, fix=True), var("b"), var("c", 50, fix=True), var("d")], (100, 425, 50, 425)),
        ([var("a"), var("b", 1000, fix=True)], (0, 1000)),  # Unleash accepts a fixed sum of exactly 1000
        ([var("a", 123)], (1000,)),  # a variable variant's own weight is ignored
        ([], ()),
    ],
)
def test_resolve_weights(variants: list[Variant], expected: tuple[int, ...]) -> None:
    assert resolve_weights(variants) == expected
    assert sum(expected) in (0, 1000)


@pytest.mark.parametrize(
    "variants",
    [
        [var("a", 500, fix=True), var("b", 500, fix=True)],  # no variable variant
        [var("a", 600, fix=True), var("b", 401, fix=True), var("c")],  # fixed sum over 1000
    ],
)
def test_resolve_weights_refuses_what_unleash_refuses(variants: list[Variant]) -> None:
    with pytest.raises(ValueError):
        resolve_weights(variants)
    with pytest.raises(ValidationError):
        rollout(variants=variants)


def test_effective_variants_resolve_in_request_order_then_sort_by_name() -> None:
    # fixVariantWeights gives the remainder to "treatment" (first variable variant sent), then sorts by name.
    strategy = rollout(variants=[var("treatment"), var("control"), var("holdout")])
    assert effective_variants(strategy) == (("control", 333), ("holdout", 333), ("treatment", 334))


def test_variant_order_matches_node_locale_compare() -> None:
    # Golden order printed by node 20 (ICU, en-US): names.sort((a, b) => a.localeCompare(b)).
    expected = ["_x", "-x", ".x", "0x", "a", "A", "a_b", "a-b", "a.b", "aB", "Ab", "b", "B", "control",
                "Control", "treatment", "v1", "v10", "v2"]  # fmt: skip
    shuffled = expected[::-1]
    strategy = rollout(variants=[var(name) for name in shuffled])
    assert [name for name, _ in effective_variants(strategy)] == expected


def test_sorting_changes_who_gets_which_arm() -> None:
    # Sent as [b-arm fix 600, a-arm variable]; Unleash stores [a-arm 400, b-arm 600]. user-8's variant
    # target is 205: a-arm here, b-arm if the request order were walked.
    strategy = rollout(variants=[var("b-arm", 600, fix=True), var("a-arm")])
    assert effective_variants(strategy) == (("a-arm", 400), ("b-arm", 600))
    assert get_variant(flag(strategy), EvalContext(user_id="user-8"), NOW) == "a-arm"
    assert get_variant(flag(strategy), EvalContext(user_id="user-1"), NOW) == "b-arm"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"stickiness": "random"},
        {"stickiness": "currentTime"},
        {"variants": [var("a"), var("a")]},
        {"variants": [Variant(name="a", stickiness="sessionId")]},
    ],
)
def test_strategy_validation(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        FlexibleRollout.model_validate({"rollout": 100, "group_id": "g", **kwargs})


def test_variant_name_charset() -> None:
    with pytest.raises(ValidationError):
        Variant(name="with space")
    assert Variant(name="v2.control_A-1").name == "v2.control_A-1"


# --- constraints -----------------------------------------------------------------------------------------


def c(context: str, op: Operator, *values: str, value: str | None = None, **flags: bool) -> Constraint:
    return Constraint(context_name=context, operator=op, values=values, value=value, **flags)


# Inline cases from Unleash/client-specification 6.1.0 specifications/13-constraint-operators.json
# (feature and test names in the comments); contexts are {"properties": {...}} there.
SPEC_13 = [
    # F1.startsWith should be enabled / disabled
    (c("customField", Operator.STR_STARTS_WITH, "some-string"), {"customField": "some-string-is-cool"}, True),
    (c("customField", Operator.STR_STARTS_WITH, "some-string"), {"customField": "some2-is-cool-string"}, False),
    # F2.startsWith.multiple should be enabled / disabled
    (c("customField", Operator.STR_STARTS_WITH, "e1", "e2"), {"customField": "e2 cool"}, True),
    (c("customField", Operator.STR_STARTS_WITH, "e1", "e2"), {"customField": "cool e1"}, False),
    # F2.startsWith.caseInsensitve should handle various cases when enabled
    (
        c("customField", Operator.STR_STARTS_WITH, "TEST", case_insensitive=True),
        {"customField": "TEsT@example.com"},
        True,
    ),
    # F3.endsWith should be disabled when casing is incorrect; F3.endsWith.ignoringCase should be enabled
    (c("email", Operator.STR_ENDS_WITH, "some-email.com"), {"email": "test@some-EMAIL.com"}, False),
    (
        c("email", Operator.STR_ENDS_WITH, "some-email.com", case_insensitive=True),
        {"email": "test@SOME-EMAIL.com"},
        True,
    ),
    # F4.contains should be enabled / disabled; F4.contains.inverted should be enabled
    (c("email", Operator.STR_CONTAINS, "email"), {"email": "test@some-email.com"}, True),
    (c("email", Operator.STR_CONTAINS, "email"), {"email": "test@another.com"}, False),
    (c("email", Operator.STR_CONTAINS, "email", inverted=True), {"email": "test@another.com"}, True),
    # F5.numEq works for floats; F5.numEq.float works for integers; F5.numEq.inverted should be false
    (c("someValue", Operator.NUM_EQ, value="12"), {"someValue": "12.0"}, True),
    (c("someValue", Operator.NUM_EQ, value="12.0"), {"someValue": "12"}, True),
    (c("someValue", Operator.NUM_EQ, value="12", inverted=True), {"someValue": "12"}, False),
    # F5.numGT should be false; F5.numGTE should be true when equal; F5.numLT should be false when equal
    (c("someValue", Operator.NUM_GT, value="12"), {"someValue": "12"}, False),
    (c("someValue", Operator.NUM_GTE, value="12"), {"someValue": "12"}, True),
    (c("someValue", Operator.NUM_LT, value="12"), {"someValue": "12"}, False),
    # F5.numLTE should be true when lower; F5.numLT should be true when lower
    (c("someValue", Operator.NUM_LTE, value="12"), {"someValue": "0"}, True),
    (c("someValue", Operator.NUM_LT, value="12"), {"someValue": "0"}, True),
    # F8.missing-field.IN should return false / true when present; F8.missing-field.NOT_IN should return true
    (c("customFieldMissing", Operator.IN, "s1"), {}, False),
    (c("customFieldMissing", Operator.IN, "s1"), {"customFieldMissing": "s1"}, True),
    (c("customFieldMissing", Operator.NOT_IN, "s1"), {}, True),
    # F9.inverted.IN should return false when present but inverted
    (c("someValue", Operator.IN, "s1", "s2", inverted=True), {"someValue": "s1"}, False),
    # F10.inverted.NOT_IN should return true when present but inverted
    (c("someValue", Operator.NOT_IN, "s1", "s2", inverted=True), {"someValue": "s1"}, True),
]


@pytest.mark.parametrize(("constraint", "properties", "expected"), SPEC_13)
def test_constraint_operators_from_client_specification(
    constraint: Constraint, properties: dict[str, str], expected: bool
) -> None:
    assert constraint_holds(constraint, props(**properties), NOW) is expected


# 13-constraint-operators.json, F7.* (contexts carry currentTime).
SPEC_13_DATES = [
    # F7.dateAfter should be enabled / should be disabled / is exclusive of date parameter
    (Operator.DATE_AFTER, "2022-01-29T13:00:00.000Z", "2022-01-30T13:00:00.000Z", True),
    (Operator.DATE_AFTER, "2022-01-29T13:00:00.000Z", "2022-01-28T13:00:00.000Z", False),
    (Operator.DATE_AFTER, "2022-01-29T13:00:00.000Z", "2022-01-29T13:00:00.000Z", False),
    # F7.dateBefore should be enabled / should be disabled / is exclusive of date parameter
    (Operator.DATE_BEFORE, "2022-01-29T13:00:00.000Z", "2022-01-28T13:00:00.000Z", True),
    (Operator.DATE_BEFORE, "2022-01-29T13:00:00.000Z", "2022-01-30T13:00:00.000Z", False),
    (Operator.DATE_BEFORE, "2022-01-29T13:00:00.000Z", "2022-01-29T13:00:00.000Z", False),
    # F7.date-with-timezone should respect timezone (both bounds, 11:30Z is between 11:00Z and 12:00Z)
    (Operator.DATE_AFTER, "2022-01-22T13:00:00.000+02:00", "2022-01-22T11:30:00.000Z", True),
    (Operator.DATE_BEFORE, "2022-01-22T14:00:00.000+02:00", "2022-01-22T11:30:00.000Z", True),
]


@pytest.mark.parametrize(("op", "bound", "current", "expected"), SPEC_13_DATES)
def test_date_operators_from_client_specification(op: Operator, bound: str, current: str, expected: bool) -> None:
    constraint = c("currentTime", op, value=bound)
    ctx = EvalContext(current_time=datetime.fromisoformat(current))
    assert constraint_holds(constraint, ctx, NOW) is expected
    # The context's currentTime wins over `now`; without it `now` is used.
    assert constraint_holds(constraint, EvalContext(), datetime.fromisoformat(current)) is expected


def test_date_edge_cases() -> None:
    after = c("currentTime", Operator.DATE_AFTER, value="2024-06-01T12:00:00Z")
    assert not constraint_holds(after, EvalContext(), NOW)
    assert constraint_holds(after, EvalContext(), NOW + timedelta(microseconds=1))
    plus_two = timezone(timedelta(hours=2))
    assert not constraint_holds(after, EvalContext(), datetime(2024, 6, 1, 14, 0, tzinfo=plus_two))
    assert constraint_holds(after, EvalContext(), datetime(2024, 6, 1, 14, 0, 1, tzinfo=plus_two))
    fraction = c("currentTime", Operator.DATE_BEFORE, value="2024-06-01T12:00:00.1234567Z")
    assert constraint_holds(fraction, EvalContext(), NOW)
    # A date operator on a custom field parses it; no offset or garbage -> false, inverted -> true.
    signup = c("signupDate", Operator.DATE_BEFORE, value="2024-01-01T00:00:00Z")
    assert constraint_holds(signup, props(signupDate="2023-12-31T23:59:59+00:00"), NOW)
    for bad in ("2023-12-31T23:59:59", "2023-12-31", "yesterday", "2023-13-01T00:00:00Z"):
        assert not constraint_holds(signup, props(signupDate=bad), NOW)
        assert constraint_holds(signup.model_copy(update={"inverted": True}), props(signupDate=bad), NOW)
    assert not constraint_holds(signup, EvalContext(), NOW)
    # A malformed bound never holds, inverted or not.
    broken = c("currentTime", Operator.DATE_AFTER, value="2024-06-01", inverted=True)
    assert not constraint_holds(broken, EvalContext(), NOW)
    with pytest.raises(ValueError):
        constraint_holds(after, EvalContext(), datetime(2024, 6, 1))


# semver.org §11 example chain, plus build metadata and numeric ordering of identifiers.
SEMVER_ASCENDING = [
    "1.0.0-alpha",
    "1.0.0-alpha.1",
    "1.0.0-alpha.beta",
    "1.0.0-beta",
    "1.0.0-beta.2",
    "1.0.0-beta.11",
    "1.0.0-rc.1",
    "1.0.0",
    "1.0.1",
    "1.1.0",
    "1.10.0",
    "2.0.0",
]


@pytest.mark.parametrize(("lower", "higher"), list(pairwise(SEMVER_ASCENDING)))
def test_semver_precedence(lower: str, higher: str) -> None:
    ctx = props(version=lower)
    assert constraint_holds(c("version", Operator.SEMVER_LT, value=higher), ctx, NOW)
    assert not constraint_holds(c("version", Operator.SEMVER_GT, value=higher), ctx, NOW)
    assert not constraint_holds(c("version", Operator.SEMVER_EQ, value=higher), ctx, NOW)
    assert constraint_holds(c("version", Operator.SEMVER_GT, value=lower), props(version=higher), NOW)


@pytest.mark.parametrize(
    ("op", "target", "version", "expected"),
    [
        # 14-constraint-semver-operators.json
        (Operator.SEMVER_EQ, "1.2.2", "1.2.2", True),  # F8.semverEQ should be enabled
        (Operator.SEMVER_GT, "1.2.2", "1.2.3", True),  # F8.semverGT should be enabled
        (Operator.SEMVER_GT, "2.0.0-alpha.1", "2.0.0-beta.1", True),  # F8.semverAlphaGT is less than beta
        (Operator.SEMVER_LT, "2.0.0-alpha.1", "1.9.1-beta.1", True),  # F8.semverAlphaLT is greater than old beta
        (Operator.SEMVER_LT, "2.0.0-alpha.3", "2.0.0-alpha.4", False),  # alpha.4 is greater than alpha.3
        (Operator.SEMVER_GT, "2.0.0-alpha", "2.0.0-alpha.1", True),  # F8.alphaUnnumbered
        (Operator.SEMVER_GT, "2.0.0-rc", "2.0.0-beta.1", False),  # F8.releaseCandidate - beta not greater
        (Operator.SEMVER_EQ, "v2.0.0", "v2.0.0", False),  # F8.invalidSemverWithLeadingV
        (Operator.SEMVER_EQ, "v2.0.0", "not a semver", False),  # ... broken semver resolves to false
        # build metadata does not count for precedence
        (Operator.SEMVER_EQ, "1.0.0", "1.0.0+build.5", True),
    ],
)
def test_semver_cases(op: Operator, target: str, version: str, expected: bool) -> None:
    assert constraint_holds(c("version", op, value=target), props(version=version), NOW) is expected


@pytest.mark.parametrize("version", ["v1.0.0", "1.0", "01.0.0", "1.0.0-01", "1.0.0-", "1.0.0+", " 1.0.0", "١.0.0"])
def test_unparseable_semver_is_false_and_inversion_flips_it(version: str) -> None:
    constraint = c("version", Operator.SEMVER_LT, value="9.0.0")
    assert not constraint_holds(constraint, props(version=version), NOW)
    assert constraint_holds(constraint.model_copy(update={"inverted": True}), props(version=version), NOW)


def test_malformed_constraint_value_never_holds_even_inverted() -> None:
    for constraint in (
        c("version", Operator.SEMVER_EQ, value="v2.0.0", inverted=True),
        c("n", Operator.NUM_GT, value="ten", inverted=True),
        c("n", Operator.NUM_GT, inverted=True),  # no value at all
    ):
        assert not constraint_holds(constraint, props(version="2.0.0", n="11"), NOW)


def test_number_parsing() -> None:
    gt = c("n", Operator.NUM_GT, value="1e1")
    assert constraint_holds(gt, props(n="10.5"), NOW)
    assert constraint_holds(gt, props(n="+11"), NOW)
    for unparseable in ("abc", "1_000", " 12", "inf", "", "0x20"):
        assert not constraint_holds(gt, props(n=unparseable), NOW)
        assert constraint_holds(gt.model_copy(update={"inverted": True}), props(n=unparseable), NOW)
    assert constraint_holds(c("n", Operator.NUM_LT, value="-.5"), props(n="-1"), NOW)


def test_missing_fields_and_inversion() -> None:
    ctx = EvalContext()
    assert not constraint_holds(c("country", Operator.IN, "NO"), ctx, NOW)
    assert constraint_holds(c("country", Operator.NOT_IN, "NO"), ctx, NOW)
    assert constraint_holds(c("country", Operator.IN, "NO", inverted=True), ctx, NOW)
    assert not constraint_holds(c("country", Operator.NOT_IN, "NO", inverted=True), ctx, NOW)
    assert not constraint_holds(c("email", Operator.STR_CONTAINS, "@"), ctx, NOW)
    assert constraint_holds(c("email", Operator.STR_CONTAINS, "@", inverted=True), ctx, NOW)
    assert not constraint_holds(c("n", Operator.NUM_LT, value="5"), ctx, NOW)


def test_context_lookup_standard_fields_and_properties() -> None:
    ctx = EvalContext(user_id="u1", environment="prod", app_name="web", properties={"userId": "other"})
    assert constraint_holds(c("userId", Operator.IN, "u1"), ctx, NOW)  # top-level field, not properties
    assert constraint_holds(c("environment", Operator.IN, "prod"), ctx, NOW)
    assert constraint_holds(c("appName", Operator.STR_STARTS_WITH, "WE", case_insensitive=True), ctx, NOW)
    assert not constraint_holds(c("country", Operator.IN, " NO"), props(country="NO"), NOW)  # exact match
    assert EvalContext.from_values({"userId": "u", "sessionId": "s", "country": "NO", "plan": None}) == EvalContext(
        user_id="u", session_id="s", properties={"country": "NO"}
    )


# --- rollout, stickiness, variants -------------------------------------------------------------------------


def test_flexible_rollout_from_client_specification() -> None:
    # 10-flexible-rollout-strategy.json: groupId equals the feature name in every case.
    def spec_flag(name: str, percent: int, stickiness: str) -> FlagState:
        return FlagState(
            name=name,
            enabled=True,
            strategies=(FlexibleRollout(rollout=percent, stickiness=stickiness, group_id=name),),
        )

    ten = spec_flag("Feature.flexibleRollout.10", 10, "default")
    assert is_enabled(ten, EvalContext(user_id="174"), NOW)  # should be enabled for userId=174
    assert not is_enabled(ten, EvalContext(user_id="499"), NOW)  # should be disabled for userId=499
    assert is_enabled(ten, EvalContext(session_id="174"), NOW)  # should be enabled for sessionId=174
    assert not is_enabled(ten, EvalContext(session_id="499"), NOW)  # should be disabled for sessionId=499
    by_user = spec_flag("Feature.flexibleRollout.userId.55", 55, "userId")
    assert is_enabled(by_user, EvalContext(user_id="25"), NOW)  # should be enabled for userId=25
    assert not is_enabled(by_user, EvalContext(session_id="25"), NOW)  # should be disabled for sessionId=25
    assert not is_enabled(by_user, EvalContext(), NOW)  # should be disabled if no userId in context
    by_session = spec_flag("Feature.flexibleRollout.sessionId.42", 42, "sessionId")
    assert is_enabled(by_session, EvalContext(session_id="147"), NOW)  # enabled for sessionId=147
    hundred = spec_flag("Feature.flexibleRollout.100", 100, "default")
    assert is_enabled(hundred, EvalContext(), NOW)  # should always be enabled (random bucket <= 100)
    zero = spec_flag("Feature.flexibleRollout.0", 0, "default")
    assert not is_enabled(zero, EvalContext(user_id="12", session_id="147"), NOW)  # disabled for rollout=0
    # 12-custom-stickiness.json: Feature.flexible.rollout.custom.stickiness_50
    custom = spec_flag("Feature.flexible.rollout.custom.stickiness_50", 50, "customField")
    assert not is_enabled(custom, EvalContext(), NOW)  # should not be enabled without custom field
    assert not is_enabled(custom, props(customField="402"), NOW)
    assert is_enabled(custom, props(customField="388"), NOW)
    assert is_enabled(custom, props(customField="39"), NOW)


CHECKOUT = flag(rollout(50, variants=[var("treatment"), var("control")]))


@pytest.mark.parametrize(
    ("user_id", "expected"),
    [
        # Hand-computed: rollout bucket = mmh3("exp-checkout:<id>", 0) % 100 + 1, variant target =
        # mmh3("exp-checkout:<id>", 86028157) % 1000 + 1 over [control 500, treatment 500].
        ("user-1", "treatment"),  # bucket 48, target 549
        ("user-2", None),  # bucket 66 > 50
        ("user-6", "control"),  # bucket 16, target 471
        ("user-8", "control"),  # bucket 32, target 205
        ("alice", "treatment"),  # bucket 50 (boundary is inclusive), target 717
        ("user-9", None),  # bucket 56
    ],
)
def test_get_variant_golden(user_id: str, expected: str | None) -> None:
    assert get_variant(CHECKOUT, EvalContext(user_id=user_id), NOW) == expected
    assert is_enabled(CHECKOUT, EvalContext(user_id=user_id), NOW) is (expected is not None)


def test_variant_target_on_a_boundary_goes_to_the_lower_arm() -> None:
    # "first variant whose cumulative weight >= target": user-605's target is exactly 500, user-98's 100.
    even = flag(rollout(variants=[var("control"), var("treatment")]))
    ten_ninety = flag(rollout(variants=[var("control", 100, fix=True), var("treatment")]))
    for f, user in ((even, "user-605"), (ten_ninety, "user-98")):
        assert get_variant(f, EvalContext(user_id=user), NOW) == "control"
        assert assign_many(f, [user], {}, NOW).tolist() == [variant_names(f).index("control")]


def test_off_flag_and_strategies_without_variants() -> None:
    ctx = EvalContext(user_id="user-1")
    assert get_variant(flag(rollout(variants=[var("a")]), enabled=False), ctx, NOW) is None
    assert not is_enabled(flag(rollout(), enabled=False), ctx, NOW)
    assert get_variant(flag(rollout()), ctx, NOW) is None  # on, but no variant: Unleash says "disabled"
    assert (get_variant(flag(rollout()), ctx, NOW) or DISABLED_VARIANT) == "disabled"
    assert is_enabled(flag(), ctx, NOW)  # enabled without strategies: on for everyone
    assert get_variant(flag(), ctx, NOW) is None


def test_first_matching_strategy_decides() -> None:
    norway = rollout(constraints=[c("country", Operator.IN, "NO")], variants=[var("nordic")])
    everyone = rollout(variants=[var("rest")])
    both = flag(norway, everyone)
    assert get_variant(both, EvalContext(user_id="u", properties={"country": "NO"}), NOW) == "nordic"
    assert get_variant(both, EvalContext(user_id="u", properties={"country": "SE"}), NOW) == "rest"
    assert variant_names(both) == ("nordic", "rest")


def test_hash_uses_strategy_group_id_not_flag_name() -> None:
    strategy = rollout(30, variants=[var("a"), var("b")])
    users = [EvalContext(user_id=f"user-{i}") for i in range(300)]
    renamed = FlagState(name="another-name", enabled=True, strategies=(strategy,))
    regrouped = flag(strategy.model_copy(update={"group_id": "other-group"}))
    first = [get_variant(flag(strategy), ctx, NOW) for ctx in users]
    assert first == [get_variant(renamed, ctx, NOW) for ctx in users]
    assert first != [get_variant(regrouped, ctx, NOW) for ctx in users]


def test_default_stickiness_falls_back_to_session_then_random() -> None:
    strategy = rollout(variants=[var("a"), var("b")])
    assert get_variant(flag(strategy), EvalContext(session_id="user-1"), NOW) == get_variant(
        flag(strategy), EvalContext(user_id="user-1", session_id="ignored"), NOW
    )
    draws = {get_variant(flag(strategy), EvalContext(), NOW, rng=random.Random(seed)) for seed in range(40)}
    assert draws == {"a", "b"}
    again = [get_variant(flag(strategy), EvalContext(), NOW, rng=random.Random(seed)) for seed in range(5)]
    assert again == [get_variant(flag(strategy), EvalContext(), NOW, rng=random.Random(seed)) for seed in range(5)]


def test_custom_stickiness_reads_the_property() -> None:
    strategy = rollout(stickiness="accountId", variants=[Variant(name="a", stickiness="accountId"), var("b")])
    f = flag(strategy)
    same_account = [EvalContext(user_id=f"user-{i}", properties={"accountId": "acct-7"}) for i in range(20)]
    assert len({get_variant(f, ctx, NOW) for ctx in same_account}) == 1
    assert get_variant(f, EvalContext(user_id="user-1"), NOW) is None  # no accountId: strategy is off


def test_sticky_across_calls_and_independent_of_other_users() -> None:
    users = [f"user-{i}" for i in range(2_000)]
    alone = [get_variant(CHECKOUT, EvalContext(user_id=u), NOW) for u in users[:50]]
    assert alone == [get_variant(CHECKOUT, EvalContext(user_id=u), NOW) for u in users[:50]]
    names = variant_names(CHECKOUT)
    batch = assign_many(CHECKOUT, users, {}, NOW)[:50]
    shuffled = users[:50][::-1] + users[50:]
    reordered = assign_many(CHECKOUT, shuffled, {}, NOW)[:50][::-1]
    assert [names[i] if i != NOT_EXPOSED else None for i in batch] == alone
    assert np.array_equal(batch, reordered)


@pytest.mark.parametrize(
    ("variants", "expected_shares"),
    [
        ([var("control"), var("treatment")], (0.5, 0.5)),
        ([var("control", 100, fix=True), var("treatment")], (0.1, 0.9)),
    ],
)
def test_distribution_of_100k_users(variants: list[Variant], expected_shares: tuple[float, float]) -> None:
    n = 100_000
    assigned = assign_many(flag(rollout(variants=variants)), [f"user-{i}" for i in range(n)], {}, NOW)
    shares = np.bincount(assigned, minlength=2) / n
    tolerance = [4.5 * (p * (1 - p) / n) ** 0.5 for p in expected_shares]  # ~4.5 sigma
    assert all(abs(s - p) < t for s, p, t in zip(shares, expected_shares, tolerance, strict=True))


def test_rollout_share_of_100k_users() -> None:
    assigned = assign_many(flag(rollout(30, variants=[var("on")])), [f"u{i}" for i in range(100_000)], {}, NOW)
    assert abs(np.mean(assigned == 0) - 0.30) < 4.5 * (0.3 * 0.7 / 100_000) ** 0.5


# --- vectorised assignment ---------------------------------------------------------------------------------


def test_assign_many_validates_columns() -> None:
    with pytest.raises(ValueError):
        assign_many(CHECKOUT, ["a"], {"userId": ["a"]}, NOW)
    with pytest.raises(ValueError):
        assign_many(CHECKOUT, ["a", "b"], {"country": ["NO"]}, NOW)
    assert assign_many(flag(rollout(variants=[var("a")]), enabled=False), ["a"], {}, NOW).tolist() == [NOT_EXPOSED]
    assert assign_many(CHECKOUT, [], {}, NOW).shape == (0,)


COUNTRIES = st.sampled_from(["NO", "SE", "DK", None])
VERSIONS = st.sampled_from(["1.0.0", "1.2.0-beta.1", "2.0.0", "v2", None])
CONSTRAINTS = st.sampled_from(
    [
        c("country", Operator.IN, "NO", "SE"),
        c("country", Operator.NOT_IN, "DK"),
        c("country", Operator.IN, "SE", inverted=True),
        c("version", Operator.SEMVER_GT, value="1.1.0"),
        c("version", Operator.SEMVER_LT, value="2.0.0", inverted=True),
        c("currentTime", Operator.DATE_AFTER, value="2024-01-01T00:00:00Z"),
        c("userId", Operator.STR_ENDS_WITH, "7", "3"),
        c("environment", Operator.IN, "prod"),
    ]
)
VARIANT_SETS = st.sampled_from(
    [
        [],
        [var("control"), var("treatment")],
        [var("treatment", 900, fix=True), var("control")],
        [var("c"), var("a", 250, fix=True), var("b")],
    ]
)


@st.composite
def strategies(draw: st.DrawFn) -> FlexibleRollout:
    stickiness = draw(st.sampled_from(["default", "userId", "accountId", "environment"]))
    return FlexibleRollout(
        rollout=draw(st.integers(0, 100)),
        stickiness=stickiness,
        group_id=draw(st.sampled_from(["exp-a", "exp-b"])),
        constraints=tuple(draw(st.lists(CONSTRAINTS, max_size=2))),
        variants=tuple(draw(VARIANT_SETS)),
    )


def scalar_assign(f: FlagState, users: list[str], columns: Mapping[str, list[str | None]]) -> list[int]:
    names = variant_names(f)
    out = []
    for i, user in enumerate(users):
        ctx = EvalContext.from_values({"userId": user, **{name: column[i] for name, column in columns.items()}})
        arm = get_variant(f, ctx, NOW)
        out.append(NOT_EXPOSED if arm is None else names.index(arm))
    return out


@settings(max_examples=80, deadline=None)
@given(
    f=st.builds(
        FlagState,
        name=st.just("f"),
        enabled=st.booleans(),
        strategies=st.lists(strategies(), min_size=1, max_size=3).map(tuple),
    ),
    rows=st.lists(
        st.tuples(st.integers(0, 40), COUNTRIES, VERSIONS, st.sampled_from(["acct-1", "acct-2", None]), COUNTRIES),
        max_size=60,
    ),
)
def test_assign_many_equals_get_variant(
    f: FlagState, rows: list[tuple[int, str | None, str | None, str | None, str | None]]
) -> None:
    users = [f"user-{user}" for user, *_ in rows]
    columns: dict[str, list[str | None]] = {
        "country": [row[1] for row in rows],
        "version": [row[2] for row in rows],
        "accountId": [row[3] for row in rows],
        "environment": [None if row[4] is None else ("prod" if row[4] == "NO" else "dev") for row in rows],
    }
    assert assign_many(f, users, columns, NOW).tolist() == scalar_assign(f, users, columns)


def test_assign_many_equals_get_variant_on_many_users() -> None:
    f = flag(
        rollout(40, constraints=[c("country", Operator.IN, "NO")], variants=[var("nordic")]),
        rollout(60, stickiness="accountId", variants=[var("treatment", 200, fix=True), var("control")]),
    )
    rng = random.Random(5)
    users = [f"user-{i}" for i in range(3_000)]
    columns: dict[str, list[str | None]] = {
        "country": [rng.choice(["NO", "SE", None]) for _ in users],
        "accountId": [rng.choice([None, *[f"acct-{k}" for k in range(50)]]) for _ in users],
    }
    assert assign_many(f, users, columns, NOW).tolist() == scalar_assign(f, users, columns)
