"""The official Unleash client specification, replayed against the embedded evaluator (abrollout.flags.evaluate).

Every Unleash SDK passes `@unleash/client-specification`; the embedded flag provider must too, for everything
`FlagState` can express: flexibleRollout and default strategies, rollout and stickiness, strategy constraints,
strategy variants. Every case runs unless it needs something outside that model; those are counted under one of
the explicit reasons in `NOT_APPLICABLE`, and every case that runs must pass.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from abrollout.contracts.constraints import Constraint, Operator
from abrollout.flags.evaluate import (
    DISABLED_VARIANT,
    TOTAL_WEIGHT,
    EvalContext,
    FlagState,
    FlexibleRollout,
    Payload,
    Variant,
    effective_variants,
    get_variant,
    is_enabled,
)
from tests.support.servers.unleash import npm_install

SPEC_VERSION = "6.1.0"
SPEC_CASES = 279
"""is-enabled and variant cases in 6.1.0, all files together: reading fewer means a file was missed."""
CACHE = Path(__file__).resolve().parents[3] / ".cache" / "unleash-spec"
SPECIFICATIONS = CACHE / "node_modules" / "@unleash" / "client-specification" / "specifications"
NOW = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)
"""currentTime for cases whose context has none (no such case reads it)."""

NOT_APPLICABLE = {
    "strategy type": "strategies other than flexibleRollout and default (userWithId, gradualRollout*, remoteAddress):"
                     " experiments use flexibleRollout only",
    "operator": "constraint operators outside Unleash's documented set (REGEX, IN_CIDR, SEMVER_GTE/LTE, invalid)",
    "segments": "segments: exposure rules become the strategy's own constraints",
    "dependencies": "dependent (parent/child) flags",
    "feature variants": "feature-level variants: FlagState has strategy variants only",
    "weights": "several strategy variants whose weights do not add up to 1000: Unleash's server always serves them"
               " out of 1000, and FlagState resolves them that way",
    "unknown flag": "a flag missing from the state: the provider's read returns None, nothing to evaluate",
    "delta API": "delta API event streams: an SDK transport, not evaluation",
}


class NotApplicable(Exception):
    def __init__(self, reason: str) -> None:
        assert reason in NOT_APPLICABLE, reason
        super().__init__(reason)
        self.reason = reason


def specification() -> list[tuple[str, dict[str, Any]]]:
    """(file name, content) in the specification's own order, npm-installing it into .cache/ on first use."""
    npm_install(CACHE, [f"@unleash/client-specification@{SPEC_VERSION}"], (SPECIFICATIONS / "index.json").is_file,
                "The Unleash client specification")
    names = json.loads((SPECIFICATIONS / "index.json").read_text())
    return [(name, json.loads((SPECIFICATIONS / name).read_text())) for name in names]


def constraint(raw: dict[str, Any]) -> Constraint:
    if raw["operator"] not in Operator.__members__:
        raise NotApplicable("operator")
    return Constraint(context_name=raw["contextName"], operator=Operator(raw["operator"]),
                      values=tuple(raw.get("values", ())), value=raw.get("value"),
                      inverted=raw.get("inverted", False), case_insensitive=raw.get("caseInsensitive", False))


def strategy_variants(raw: list[dict[str, Any]], strategy: FlexibleRollout) -> tuple[Variant, ...]:
    """The served weights as `FlagState` variants: all fixed but the last, which takes the rest of 1000 (its own
    weight), or one variable variant. Any other total hashes modulo a different number and cannot be expressed."""
    if len(raw) > 1 and sum(v["weight"] for v in raw) != TOTAL_WEIGHT:
        raise NotApplicable("weights")
    variants = tuple(
        Variant(name=v["name"], weight=v["weight"] if len(raw) > 1 else TOTAL_WEIGHT,
                weight_type="variable" if index == len(raw) - 1 else "fix", stickiness=v.get("stickiness"),
                payload=Payload.model_validate(v["payload"]) if "payload" in v else None)
        for index, v in enumerate(raw)
    )
    served = strategy.model_copy(update={"variants": variants})
    assert [name for name, _ in effective_variants(served)] == [v["name"] for v in raw], "not in Unleash's order"
    return variants


def strategy(raw: dict[str, Any], flag: str) -> FlexibleRollout:
    if raw["name"] not in ("flexibleRollout", "default"):
        raise NotApplicable("strategy type")
    if raw.get("segments"):
        raise NotApplicable("segments")
    parameters = raw.get("parameters") or {}
    rollout = FlexibleRollout(
        rollout=int(parameters.get("rollout", 100)) if raw["name"] == "flexibleRollout" else 100,
        stickiness=parameters.get("stickiness", "default"), group_id=parameters.get("groupId", flag),
        constraints=tuple(constraint(c) for c in raw.get("constraints") or ()))
    return rollout.model_copy(update={"variants": strategy_variants(raw.get("variants") or [], rollout)})


def flag_state(features: list[dict[str, Any]], name: str, *, variant_case: bool) -> FlagState:
    feature = next((f for f in features if f["name"] == name), None)
    if feature is None:
        raise NotApplicable("unknown flag")
    if feature.get("dependencies"):
        raise NotApplicable("dependencies")
    if variant_case and feature.get("variants"):
        raise NotApplicable("feature variants")
    return FlagState(name=name, enabled=feature["enabled"],
                     strategies=tuple(strategy(s, name) for s in feature["strategies"]))


def context(raw: dict[str, Any]) -> EvalContext:
    """Standard fields at top level, the rest in `properties`; currentTime as a datetime."""
    values = {name: value for name, value in raw.items() if name not in ("properties", "currentTime")}
    ctx = EvalContext.from_values({**values, **raw.get("properties", {})})
    if "currentTime" in raw:
        return ctx.model_copy(update={"current_time": datetime.fromisoformat(raw["currentTime"])})
    return ctx


def variant_result(flag: FlagState, ctx: EvalContext) -> dict[str, Any]:
    """What an SDK's getVariant returns, in the specification's form."""
    name = get_variant(flag, ctx, NOW, rng=random.Random(0))
    result: dict[str, Any] = {"name": name or DISABLED_VARIANT, "enabled": name is not None,
                              "feature_enabled": is_enabled(flag, ctx, NOW, rng=random.Random(0))}
    payload = next((v.payload for s in flag.strategies for v in s.variants if v.name == name), None)
    if payload is not None:
        result["payload"] = payload.model_dump()
    return result


def run_case(features: list[dict[str, Any]], case: dict[str, Any], *, variant_case: bool) -> bool:
    flag = flag_state(features, case["toggleName"], variant_case=variant_case)
    ctx = context(case["context"])
    expected = case["expectedResult"]
    if variant_case:
        return bool(variant_result(flag, ctx) == expected)
    return is_enabled(flag, ctx, NOW, rng=random.Random(0)) is expected


def test_every_applicable_case_passes(capsys: pytest.CaptureFixture[str]) -> None:
    passed: list[str] = []
    failed: list[str] = []
    skipped = Counter[str]()
    for file, spec in specification():
        features = spec["state"].get("features")
        cases = [*((case, False) for case in spec.get("tests", [])),
                 *((case, True) for case in spec.get("variantTests", []))]
        if features is None:
            skipped["delta API"] += len(cases)
            continue
        for case, variant_case in cases:
            try:
                (passed if run_case(features, case, variant_case=variant_case) else failed).append(
                    f"{file}: {case['description']}")
            except NotApplicable as exc:
                skipped[exc.reason] += 1
    applicable = len(passed) + len(failed)
    reasons = ", ".join(f"{count} {reason}" for reason, count in skipped.most_common())
    with capsys.disabled():
        print(f"\nclient-specification: {len(passed)} of {applicable} applicable cases pass "
              f"({sum(skipped.values())} cases not applicable: {reasons})")
    assert failed == []
    assert applicable + sum(skipped.values()) == SPEC_CASES
