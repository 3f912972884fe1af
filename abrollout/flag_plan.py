"""The flag state each flag tool asks for, computed purely from its args (and, for promote/rollback, from
the flag as it is): a change is then "apply this state", and its read-back is "is this the state now?"."""

from __future__ import annotations

from abrollout.contracts.spec import CONTROL_ARM
from abrollout.contracts.tools import AllocateTrafficArgs
from abrollout.flag_eval import TOTAL_WEIGHT, FlagState, FlexibleRollout, Variant

STICKINESS = "userId"


class FlagMissing(LookupError):
    """The flag a promote or rollback targets does not exist in the provider."""


def split_variants(split: dict[str, float]) -> tuple[Variant, ...]:
    """Arms as variants with the pre-registered weights out of 1000: every treatment `fix`, control `variable`
    (Unleash needs one variable variant; it takes exactly what the fixed ones leave)."""
    return tuple(
        Variant(name=arm, weight=round(share * TOTAL_WEIGHT / 100), stickiness=None,
                weight_type="variable" if arm == CONTROL_ARM else "fix")
        for arm, share in split.items()
    )


def allocation_state(args: AllocateTrafficArgs) -> FlagState:
    strategy = FlexibleRollout(rollout=round(args.rollout_percent), stickiness=STICKINESS, group_id=args.group_id,
                               constraints=tuple(args.constraints), variants=split_variants(args.split))
    return FlagState(name=args.flag_key, enabled=True, strategies=(strategy,))


def single_arm_state(current: FlagState | None, flag_key: str, arm: str) -> FlagState:
    """Promote or roll back: everyone the experiment's rules admit gets `arm`; rules and group id stay as
    registered, so the read-back is comparable and the population is the one that was tested."""
    if current is None or not current.strategies:
        raise FlagMissing(f"flag {flag_key} has no experiment strategy to change")
    strategy = current.strategies[0].model_copy(
        update={"rollout": 100, "variants": (Variant(name=arm, weight=TOTAL_WEIGHT, weight_type="variable"),)})
    return FlagState(name=flag_key, enabled=True, strategies=(strategy,))
