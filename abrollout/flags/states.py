"""The flag state each flag tool asks for, computed purely from its args (and, for promote/rollback, from the flag
as it is): a change is then "apply this state", and its read-back is "is this the state now?". States come in the
canonical form Unleash stores and serves back, so both providers read back equal to what was asked (docs/flags.md).
"""

from __future__ import annotations

from abrollout.contracts.spec import CONTROL_ARM
from abrollout.contracts.tools import AllocateTrafficArgs
from abrollout.flags.evaluate import (
    TOTAL_WEIGHT,
    FlagState,
    FlexibleRollout,
    Variant,
    effective_variants,
    resolve_weights,
)

STICKINESS = "userId"


class FlagMissing(LookupError):
    """The flag a promote or rollback targets does not exist in the provider."""


def split_variants(split: dict[str, float]) -> tuple[Variant, ...]:
    """Arms as variants with the pre-registered weights out of 1000: every treatment `fix`, control `variable`
    (Unleash needs one variable variant; it takes exactly what the fixed ones leave)."""
    return tuple(
        Variant(name=arm, weight=round(share * TOTAL_WEIGHT / 100), stickiness=STICKINESS,
                weight_type="variable" if arm == CONTROL_ARM else "fix")
        for arm, share in split.items()
    )


def canonical(strategy: FlexibleRollout) -> FlexibleRollout:
    """`strategy` as Unleash stores it: variants in name order (``localeCompare``), each weight resolved.

    Weights are resolved in that order, the order they are then sent in, so the canonical form is a fixed
    point of Unleash's ``fixVariantWeights`` even with several variable variants.
    """
    by_name = {variant.name: variant for variant in strategy.variants}
    ordered = [by_name[name] for name, _ in effective_variants(strategy)]
    variants = tuple(variant.model_copy(update={"weight": weight})
                     for variant, weight in zip(ordered, resolve_weights(ordered), strict=True))
    return strategy.model_copy(update={"variants": variants})


def allocation_state(args: AllocateTrafficArgs) -> FlagState:
    strategy = FlexibleRollout(rollout=round(args.rollout_percent), stickiness=STICKINESS, group_id=args.group_id,
                               constraints=tuple(args.constraints), variants=split_variants(args.split))
    return FlagState(name=args.flag_key, enabled=True, strategies=(canonical(strategy),))


def single_arm_state(current: FlagState | None, flag_key: str, arm: str) -> FlagState:
    """Promote or roll back: everyone the experiment's rules admit gets `arm`; rules and group id stay as
    registered, so the read-back is comparable and the population is the one that was tested."""
    if current is None or not current.strategies:
        raise FlagMissing(f"flag {flag_key} has no experiment strategy to change")
    strategy = current.strategies[0]
    only = Variant(name=arm, weight=TOTAL_WEIGHT, weight_type="variable", stickiness=strategy.stickiness)
    return FlagState(name=flag_key, enabled=True,
                     strategies=(strategy.model_copy(update={"rollout": 100, "variants": (only,)}),))


def differences(expected: FlagState, observed: FlagState | None) -> list[str]:
    """What the flag serves that was not asked for, in words a person can check in the flag UI."""
    if observed is None:
        return ["the flag does not exist"]
    found = [f"{field}: expected {getattr(expected, field)}, observed {getattr(observed, field)}"
             for field in ("enabled",) if getattr(expected, field) != getattr(observed, field)]
    if len(expected.strategies) != len(observed.strategies):
        return [*found, f"strategies: expected {len(expected.strategies)}, observed {len(observed.strategies)}"]
    for number, (want, got) in enumerate(zip(expected.strategies, observed.strategies, strict=True), 1):
        for field in FlexibleRollout.model_fields:
            mine, theirs = getattr(want, field), getattr(got, field)
            if mine != theirs:
                found.append(f"strategy {number} {field}: expected {_shown(mine)}, observed {_shown(theirs)}")
    return found or ["the states differ"]


def _shown(value: object) -> str:
    if isinstance(value, tuple) and all(isinstance(v, Variant) for v in value):
        return ", ".join(f"{v.name} {v.weight / TOTAL_WEIGHT:.1%}" for v in value) or "none"
    return str(value)[:200]
