"""Unleash-compatible evaluation of flexibleRollout flags: constraints, sticky rollout, strategy variants.

A flag held by the embedded provider must give every user the arm Unleash would give them. Each rule's docstring
names the Unleash source it follows; where yggdrasil and the node SDK disagree, it follows yggdrasil and says so.
The sources read, and how agreement is checked: docs/flags.md.
"""

from __future__ import annotations

import operator
import random
import re
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from itertools import repeat
from typing import TYPE_CHECKING, Any, Literal, Self

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from abrollout.contracts.constraints import Constraint, Operator
from abrollout.flags.bucketing import VARIANT_SEED, normalized_hash, normalized_hash_many, variant_index

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

TOTAL_WEIGHT = 1000
"""Unleash variant weights are out of 1000 (``fixVariantWeights``)."""

DISABLED_VARIANT = "disabled"
"""The variant name Unleash reports when a flag is off for the context or has no variant for it."""

NOT_EXPOSED = -1
"""`assign_many`'s value for a user who gets no variant."""

_NON_STICKY = frozenset({"random", "currentTime"})
_VARIANT_NAME = r"^[A-Za-z0-9_.-]+$"


class Payload(BaseModel):
    """A variant payload, passed through to the SDK unchanged."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    type: Literal["string", "json", "csv", "number"]
    value: str


class Variant(BaseModel):
    """One strategy variant as sent to Unleash's Admin API.

    A "variable" variant's `weight` is ignored: `resolve_weights` gives it its share of what the "fix"
    variants leave. `stickiness`, when given, must equal the strategy's: yggdrasil hashes strategy variants
    on the strategy's stickiness (``lib.rs::compile_variant_rule``) while the node SDK prefers the first
    variant's (``strategy.ts::getResult``), so only equal values evaluate the same everywhere. Names are
    limited to ``[A-Za-z0-9_.-]``, the characters whose ``localeCompare`` order `_name_order` reproduces.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=_VARIANT_NAME)
    weight: int = Field(default=0, ge=0, le=TOTAL_WEIGHT)
    weight_type: Literal["fix", "variable"] = "variable"
    stickiness: str | None = None
    payload: Payload | None = None


class FlexibleRollout(BaseModel):
    """A flexibleRollout strategy: constraints (all must hold), then ``bucket <= rollout``, then variants.

    `group_id` seeds both the rollout and the variant hash (yggdrasil ``build_variant_rules`` and node
    ``strategy.ts::getResult`` both pass the strategy's groupId, not the flag name, for strategy variants;
    the Unleash UI fills it with the flag name). Stickiness "random" and "currentTime" are refused: an
    experiment needs the same user in the same arm on every call.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    rollout: int = Field(ge=0, le=100)
    stickiness: str = Field(default="default", min_length=1)
    group_id: str
    constraints: tuple[Constraint, ...] = ()
    variants: tuple[Variant, ...] = ()

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.stickiness in _NON_STICKY:
            raise ValueError(f"stickiness {self.stickiness!r} is not sticky")
        names = [variant.name for variant in self.variants]
        if len(set(names)) != len(names):
            raise ValueError(f"variant names must be unique, got {names}")
        for variant in self.variants:
            if variant.stickiness not in (None, self.stickiness):
                raise ValueError(
                    f"variant {variant.name!r} has stickiness {variant.stickiness!r}, the strategy {self.stickiness!r}"
                )
        resolve_weights(self.variants)
        return self


class FlagState(BaseModel):
    """A flag in one environment. Feature-level (non-strategy) variants are not modelled."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1)
    enabled: bool
    strategies: tuple[FlexibleRollout, ...] = ()


class EvalContext(BaseModel):
    """The Unleash context of one evaluation: standard fields at top level, everything else in properties.

    An empty string is a value, not a missing field (yggdrasil ``EnrichedContext``; the node SDK treats
    an empty userId as missing for default stickiness).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    user_id: str | None = None
    session_id: str | None = None
    remote_address: str | None = None
    environment: str | None = None
    app_name: str | None = None
    current_time: AwareDatetime | None = None
    properties: Mapping[str, str] = Field(default_factory=dict)

    @classmethod
    def from_values(cls, values: Mapping[str, str | None]) -> EvalContext:
        """Build from Unleash context names (``userId``, ``country``...); None values are left out."""
        present = {name: value for name, value in values.items() if value is not None}
        if "currentTime" in present:
            raise ValueError("pass currentTime as EvalContext(current_time=...) or as `now`")
        return cls(
            user_id=present.pop("userId", None),
            session_id=present.pop("sessionId", None),
            remote_address=present.pop("remoteAddress", None),
            environment=present.pop("environment", None),
            app_name=present.pop("appName", None),
            properties=present,
        )

    def value(self, context_name: str) -> str | None:
        """Unleash's lookup (yggdrasil ``strategy_parsing.rs::context_value``): a standard name reads only
        its field, any other name reads only `properties`. currentTime is handled by the caller."""
        match context_name:
            case "userId":
                return self.user_id
            case "sessionId":
                return self.session_id
            case "remoteAddress":
                return self.remote_address
            case "environment":
                return self.environment
            case "appName":
                return self.app_name
            case _:
                return self.properties.get(context_name)


def resolve_weights(variants: Sequence[Variant]) -> tuple[int, ...]:
    """Weights out of `TOTAL_WEIGHT`, in the given order, as Unleash's ``fixVariantWeights`` computes them.

    "fix" variants keep their weight; the rest, ``1000 - sum(fix)``, is split evenly among the "variable"
    ones with integer division, and the remainder goes one unit each to the first variable variants in the
    order they were sent. Unleash refuses a non-empty list without a variable variant and a fixed sum over
    1000 (a fixed sum of exactly 1000 is accepted and leaves the variable variants at 0).
    """
    if not variants:
        return ()
    variable = [index for index, variant in enumerate(variants) if variant.weight_type == "variable"]
    if not variable:
        raise ValueError('there must be at least one "variable" variant')
    fixed = sum(variant.weight for variant in variants if variant.weight_type == "fix")
    if fixed > TOTAL_WEIGHT:
        raise ValueError(f"fixed variant weights add up to {fixed}, more than {TOTAL_WEIGHT}")
    share, remainder = divmod(TOTAL_WEIGHT - fixed, len(variable))
    weights = [variant.weight for variant in variants]
    for rank, index in enumerate(variable):
        weights[index] = share + (rank < remainder)
    return tuple(weights)


def effective_variants(strategy: FlexibleRollout) -> tuple[tuple[str, int], ...]:
    """(name, weight) pairs in the order Unleash stores, and so evaluates, them.

    ``fixVariantWeights`` resolves the weights in request order, then returns the variants sorted with
    ``a.name.localeCompare(b.name)``, so the cumulative walk of every SDK goes in name order.
    """
    weights = resolve_weights(strategy.variants)
    pairs = zip((variant.name for variant in strategy.variants), weights, strict=True)
    return tuple(sorted(pairs, key=lambda pair: _name_order(pair[0])))


def variant_names(flag: FlagState) -> tuple[str, ...]:
    """Every variant name of the flag, once, in evaluation order; `assign_many` indexes into this."""
    names: dict[str, None] = {}
    for strategy in flag.strategies:
        names.update((name, None) for name, _ in effective_variants(strategy))
    return tuple(names)


def constraint_holds(constraint: Constraint, ctx: EvalContext, now: datetime) -> bool:
    """Whether one constraint holds for `ctx`; currentTime defaults to `now` (never the wall clock)."""
    _require_aware(now)
    if constraint.context_name == "currentTime":
        return _holds(constraint, ctx.current_time or now)
    return _holds(constraint, ctx.value(constraint.context_name))


def is_enabled(flag: FlagState, ctx: EvalContext, now: datetime, *, rng: random.Random | None = None) -> bool:
    """Unleash ``isEnabled``: an enabled flag without strategies is on for everyone (yggdrasil
    ``strategy_upgrade.rs::upgrade`` returns "true", node ``client.ts`` returns ``feature.enabled``).

    `rng` is used only when default stickiness finds neither userId nor sessionId, where Unleash draws a
    random bucket.
    """
    _require_aware(now)
    if not flag.enabled:
        return False
    return not flag.strategies or _matching_strategy(flag, ctx, now, rng) is not None


def get_variant(flag: FlagState, ctx: EvalContext, now: datetime, *, rng: random.Random | None = None) -> str | None:
    """The variant name Unleash's ``getVariant`` returns, or None where Unleash returns `DISABLED_VARIANT`.

    None covers: the flag is off, no strategy matches the context, or the matching strategy has no
    variants (Unleash would fall back to feature-level variants, which `FlagState` does not have). The first
    matching strategy in order decides (yggdrasil ``lib.rs::compute_variant_strategies``). The target is
    ``normalized_hash(stickiness value, group_id, total weight, VARIANT_SEED)``, or a random 1..total when
    default stickiness finds neither userId nor sessionId (yggdrasil ``lib.rs::resolve_variant``).
    """
    _require_aware(now)
    strategy = _matching_strategy(flag, ctx, now, rng) if flag.enabled else None
    if strategy is None or not strategy.variants:
        return None
    arms = effective_variants(strategy)
    weights = [weight for _, weight in arms]
    value = _stickiness_value(strategy.stickiness, ctx)
    total = sum(weights)
    if value is None:
        target = _randint(rng)(1, total)
    else:
        target = normalized_hash(value, strategy.group_id, total, VARIANT_SEED)
    return arms[variant_index(weights, target)][0]


def assign_many(
    flag: FlagState,
    user_ids: Sequence[str],
    properties: Mapping[str, Sequence[str | None]],
    now: datetime,
) -> NDArray[np.int64]:
    """`get_variant` for many users at once: indices into `variant_names(flag)`, `NOT_EXPOSED` for None.

    `properties` holds one column per Unleash context name (sessionId, environment, country...), aligned
    with `user_ids`; None means the field is absent for that user. currentTime is `now` for everyone.
    Constraints are evaluated once per distinct combination of the columns they read (per user if they
    read userId), rollout and variant buckets with `normalized_hash_many`.
    """
    import numpy as np

    _require_aware(now)
    n = len(user_ids)
    for name, column in properties.items():
        if name in ("userId", "currentTime"):
            raise ValueError(f"{name} is not a property column: it comes from user_ids / now")
        if len(column) != n:
            raise ValueError(f"column {name!r} has {len(column)} values for {n} users")
    out = np.full(n, NOT_EXPOSED, dtype=np.int64)
    if not flag.enabled or n == 0:
        return out
    columns: dict[str, Sequence[str | None]] = {"userId": user_ids, **properties}
    position = {name: index for index, name in enumerate(variant_names(flag))}
    undecided = np.ones(n, dtype=bool)
    for strategy in flag.strategies:
        # user_ids are never None, so default stickiness always reads userId here.
        sticky_name = "userId" if strategy.stickiness == "default" else strategy.stickiness
        if sticky_name not in columns:
            continue
        candidates = undecided & _constraints_mask(strategy.constraints, columns, n, now)
        values: Sequence[str] = user_ids
        if sticky_name != "userId":
            column = columns[sticky_name]
            candidates &= np.fromiter((value is not None for value in column), dtype=bool, count=n)
            values = [value or "" for value in column]  # placeholders where absent, never selected
        # Hashing everyone and selecting afterwards beats gathering the candidates' strings.
        rows = np.flatnonzero(candidates & (normalized_hash_many(values, strategy.group_id) <= strategy.rollout))
        undecided[rows] = False
        if strategy.variants:
            arms = effective_variants(strategy)
            cumulative = np.cumsum([weight for _, weight in arms])
            targets = normalized_hash_many(values, strategy.group_id, int(cumulative[-1]), VARIANT_SEED)[rows]
            arm_positions = np.array([position[name] for name, _ in arms], dtype=np.int64)
            out[rows] = arm_positions[np.searchsorted(cumulative, targets, side="left")]
    return out


def _matching_strategy(
    flag: FlagState, ctx: EvalContext, now: datetime, rng: random.Random | None
) -> FlexibleRollout | None:
    """The first strategy whose constraints hold and whose rollout includes the context.

    A missing stickiness value disables the strategy (yggdrasil ``rollout_constraint``; node
    ``flexible-rollout-strategy.ts``: ``if (!stickinessId) return false``), except under default
    stickiness, which falls back to a random bucket. Rollout 0 never matches since buckets start at 1.
    """
    for strategy in flag.strategies:
        if not all(constraint_holds(constraint, ctx, now) for constraint in strategy.constraints):
            continue
        value = _stickiness_value(strategy.stickiness, ctx)
        if value is not None:
            bucket = normalized_hash(value, strategy.group_id)
        elif strategy.stickiness == "default":
            bucket = _randint(rng)(1, 100)
        else:
            continue
        if bucket <= strategy.rollout:
            return strategy
    return None


def _stickiness_value(stickiness: str, ctx: EvalContext) -> str | None:
    """Default stickiness is userId, then sessionId (yggdrasil ``DEFAULT_STICKINESS`` and ``get_seed``;
    node also tries remoteAddress for variants); anything else is looked up like a constraint field."""
    if stickiness == "default":
        return ctx.user_id if ctx.user_id is not None else ctx.session_id
    return ctx.value(stickiness)


def _randint(rng: random.Random | None) -> Callable[[int, int], int]:
    return rng.randint if rng is not None else random.randint


def _constraints_mask(
    constraints: Sequence[Constraint],
    columns: Mapping[str, Sequence[str | None]],
    n: int,
    now: datetime,
) -> NDArray[np.bool_]:
    """Evaluate the constraints once per distinct combination of the columns they read."""
    import numpy as np

    if not constraints:
        return np.ones(n, dtype=bool)
    names = sorted({constraint.context_name for constraint in constraints} - {"currentTime"})
    read = [columns.get(name, repeat(None, n)) for name in names]
    combos: dict[tuple[str | None, ...], int] = {}
    keys = zip(*read, strict=False) if read else repeat((), n)
    codes = np.fromiter((combos.setdefault(key, len(combos)) for key in keys), dtype=np.int64, count=n)
    verdicts = [
        all(_holds(c, now if c.context_name == "currentTime" else row[c.context_name]) for c in constraints)
        for row in (dict(zip(names, key, strict=True)) for key in combos)
    ]
    return np.array(verdicts, dtype=bool)[codes]


# --- constraint operators -------------------------------------------------------------------------------

_STRING_TESTS: dict[Operator, Callable[[str, str], bool]] = {
    Operator.STR_CONTAINS: lambda text, needle: needle in text,
    Operator.STR_STARTS_WITH: str.startswith,
    Operator.STR_ENDS_WITH: str.endswith,
}
_COMPARISONS: dict[Operator, Callable[[Any, Any], Any]] = {
    Operator.NUM_EQ: operator.eq,
    Operator.NUM_GT: operator.gt,
    Operator.NUM_GTE: operator.ge,
    Operator.NUM_LT: operator.lt,
    Operator.NUM_LTE: operator.le,
    Operator.DATE_AFTER: operator.gt,
    Operator.DATE_BEFORE: operator.lt,
    Operator.SEMVER_EQ: operator.eq,
    Operator.SEMVER_GT: operator.gt,
    Operator.SEMVER_LT: operator.lt,
}
_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_TIMESTAMP = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]+)?(?:Z|[+-][0-9]{2}:[0-9]{2})"
)
_IDENT = r"(?:0|[1-9][0-9]*|[0-9]*[A-Za-z-][0-9A-Za-z-]*)"
_SEMVER = re.compile(
    rf"(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(?:-({_IDENT}(?:\.{_IDENT})*))?(?:\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?"
)

_SemverKey = tuple[int, int, int, int, tuple[tuple[int, int, str], ...]]


def _holds(constraint: Constraint, value: str | datetime | None) -> bool:
    """Apply the operator, then `inverted`.

    Inversion flips every operator result, including the False of a missing or unparseable context value
    (node ``strategy.ts::checkConstraint``, yggdrasil ``strategy_parsing.rs::constraint``), so e.g. an
    inverted IN holds for a user without the field. A constraint whose own `value` does not parse never
    holds, inverted or not: yggdrasil compiles a "v"-prefixed semver to a bare ``false`` and refuses other
    malformed values (the whole flag then evaluates off); the node SDK would let inversion flip it.
    """
    result = _apply(constraint, value)
    return False if result is None else result != constraint.inverted


def _apply(constraint: Constraint, value: str | datetime | None) -> bool | None:
    """The operator's result before inversion; None when the constraint's own value is malformed."""
    op = constraint.operator
    text = value.isoformat() if isinstance(value, datetime) else value
    if op in (Operator.IN, Operator.NOT_IN):
        # Exact match, values untrimmed (yggdrasil; node trims the constraint's values). NOT_IN holds for a
        # missing field (client-specification 13 "F8.missing-field.NOT_IN").
        return (text is not None and text in constraint.values) == (op is Operator.IN)
    if op in _STRING_TESTS:
        if text is None:
            return False
        needles = constraint.values
        if constraint.case_insensitive:
            text, needles = text.lower(), tuple(needle.lower() for needle in needles)
        test = _STRING_TESTS[op]
        return any(test(text, needle) for needle in needles)
    parse = _parser(op)
    target = parse(constraint.value)
    if target is None:
        return None
    actual = value if isinstance(value, datetime) and parse is _parse_timestamp else parse(text)
    return actual is not None and bool(_COMPARISONS[op](actual, target))


def _parser(op: Operator) -> Callable[[str | None], object | None]:
    if op in (Operator.DATE_AFTER, Operator.DATE_BEFORE):
        return _parse_timestamp
    if op in (Operator.SEMVER_EQ, Operator.SEMVER_GT, Operator.SEMVER_LT):
        return _parse_semver
    return _parse_number


def _parse_number(text: str | None) -> float | None:
    """A finite decimal literal such as ``12``, ``-1.5``, ``.5`` or ``1e3``; Python-only spellings
    (``1_000``, ``inf``, surrounding spaces) are refused, as yggdrasil's f64 parse refuses the first."""
    return float(text) if text is not None and _NUMBER.fullmatch(text) else None


def _parse_timestamp(text: str | None) -> datetime | None:
    """RFC 3339 with an explicit offset (yggdrasil parses ``DateTime<Utc>``; the constraint grammar
    requires ``Z`` or ``+hh:mm``). A timestamp without offset is refused rather than guessed."""
    if text is None or not _TIMESTAMP.fullmatch(text):
        return None
    try:
        return datetime.fromisoformat(text)
    except ValueError:  # e.g. month 13
        return None


def _parse_semver(text: str | None) -> _SemverKey | None:
    """semver.org 2.0.0 precedence key; strict like yggdrasil's ``semver::Version::parse`` (no "v", no
    leading zeros), build metadata ignored (``cmp_precedence``). A release sorts after its pre-releases;
    numeric identifiers sort numerically and before alphanumeric ones; a longer identifier list wins a tie."""
    match = _SEMVER.fullmatch(text) if text is not None else None
    if match is None:
        return None
    major, minor, patch, pre = match.groups()
    identifiers = tuple(
        (0, int(part), "") if part.isdigit() else (1, 0, part) for part in (pre.split(".") if pre else ())
    )
    return int(major), int(minor), int(patch), 0 if pre else 1, identifiers


# --- variant order ---------------------------------------------------------------------------------------

_PRIMARY = {char: rank for rank, char in enumerate("_-.0123456789abcdefghijklmnopqrstuvwxyz")}


def _name_order(name: str) -> tuple[tuple[int, ...], tuple[bool, ...]]:
    """Sort key equal to ``localeCompare`` (ICU root / en collation) on ``[A-Za-z0-9_.-]``: letters
    case-blind first, "_" < "-" < "." < digits < letters, then lower case before upper case. Checked
    against node 20's ``localeCompare`` on 3,000 random names (golden list in the tests)."""
    return tuple(_PRIMARY[char.lower()] for char in name), tuple(char.isupper() for char in name)


def _require_aware(now: datetime) -> None:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be timezone-aware")
