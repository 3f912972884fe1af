"""Unleash bucketing: golden vectors from the client specification, and the vectorised murmur3 vs mmh3."""

from __future__ import annotations

import random

import mmh3
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from abrollout.flags.bucketing import (
    STRATEGY_SEED,
    VARIANT_SEED,
    murmur3_32_many,
    normalized_hash,
    normalized_hash_many,
    variant_index,
)

# Keys mmh3 can take: lone surrogates (category Cs) cannot be UTF-8 encoded.
TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=40)


def reference(keys: list[str], seed: int, prefix: str = "") -> np.ndarray:
    return np.array([mmh3.hash(prefix + key, seed, signed=False) for key in keys], dtype=np.uint32)


def test_variant_seed_is_unleash_constant() -> None:
    # unleash-client-node src/strategy/util.ts VARIANT_SEED; yggdrasil lib.rs VARIANT_NORMALIZATION_SEED.
    assert (STRATEGY_SEED, VARIANT_SEED) == (0, 86028157)


@pytest.mark.parametrize(
    ("key", "seed", "expected"),
    [
        # Published MurmurHash3_x86_32 vectors (SMHasher verification values), independent of mmh3.
        ("", 0, 0),
        ("", 1, 0x514E28B7),
        ("hello", 0, 0x248BFA47),
        ("Hello, world!", 1234, 0xFAF6CDB3),
        ("The quick brown fox jumps over the lazy dog", 0x9747B28C, 0x2FA826CD),
    ],
)
def test_murmur3_known_vectors(key: str, seed: int, expected: int) -> None:
    assert murmur3_32_many([key], seed=seed).tolist() == [expected]
    assert mmh3.hash(key, seed, signed=False) == expected


@pytest.mark.parametrize(
    ("identifier", "group_id", "bucket"),
    [
        # client-specification 10-flexible-rollout-strategy.json, buckets at the rollout boundary:
        # "Feature.flexibleRollout.10 should be enabled for userId=174" (rollout 10)
        ("174", "Feature.flexibleRollout.10", 10),
        # "Feature.flexibleRollout.10 should be disabled for userId=499"
        ("499", "Feature.flexibleRollout.10", 32),
        # "Feature.flexibleRollout.userId.55 should be enabled for userId=25" (rollout 55)
        ("25", "Feature.flexibleRollout.userId.55", 55),
        # "Feature.flexibleRollout.sessionId.42 should be enabled for sessionId=147" (rollout 42)
        ("147", "Feature.flexibleRollout.sessionId.42", 42),
        # 12-custom-stickiness.json, rollout 50: customField=388 and 39 enabled, 402 not.
        ("388", "Feature.flexible.rollout.custom.stickiness_50", 10),
        ("39", "Feature.flexible.rollout.custom.stickiness_50", 25),
        ("402", "Feature.flexible.rollout.custom.stickiness_50", 55),
    ],
)
def test_rollout_buckets_from_client_specification(identifier: str, group_id: str, bucket: int) -> None:
    assert normalized_hash(identifier, group_id) == bucket
    assert normalized_hash_many([identifier], group_id).tolist() == [bucket]


@pytest.mark.parametrize(
    ("identifier", "group_id", "weights", "expected"),
    [
        # 08-variants.json (feature variants hash on the feature name, default stickiness = userId):
        ("2", "Feature.Variants.B", (1, 1), 1),  # "should give variant2 for user 2"
        ("0", "Feature.Variants.B", (1, 1), 0),  # "should give variant 1 for user 0"
        ("232", "Feature.Variants.C", (33, 33, 33), 0),  # "should return variant1"
        ("607", "Feature.Variants.C", (33, 33, 33), 1),  # "should return variant2"
        ("656", "Feature.Variants.C", (33, 33, 33), 2),  # "should return variant3"
        ("712", "Feature.Variants.D", (1, 49, 50), 0),  # "should return variant1"
        ("525", "Feature.Variants.D", (1, 49, 50), 1),  # "should return variant2"
        ("537", "Feature.Variants.D", (1, 49, 50), 2),  # "should return variant3"
        # 12-custom-stickiness.json, variants blue/red/green/yellow at 25 each, stickiness customField:
        ("616", "Feature.flexible.rollout.custom.stickiness_100", (25, 25, 25, 25), 0),  # yields blue
        ("503", "Feature.flexible.rollout.custom.stickiness_100", (25, 25, 25, 25), 1),  # yields red
        ("438", "Feature.flexible.rollout.custom.stickiness_100", (25, 25, 25, 25), 2),  # yields green
        ("44", "Feature.flexible.rollout.custom.stickiness_100", (25, 25, 25, 25), 3),  # yields yellow
        # 16-strategy-variants.json: strategy variants hash on the strategy's groupId "a", not the flag name.
        ("5", "a", (1, 1), 0),  # "Feature.strategy.multiple.variants should choose first variant"
        ("0", "a", (1, 1), 1),  # "Feature.strategy.multiple.variants should choose second variant"
        ("1", "a", (1, 1), 0),  # "Feature.strategy.variants.stickiness ... first variant" (clientId=1)
        ("2", "a", (1, 1), 1),  # "Feature.strategy.variants.stickiness ... second variant" (clientId=2)
    ],
)
def test_variant_selection_from_client_specification(
    identifier: str, group_id: str, weights: tuple[int, ...], expected: int
) -> None:
    target = normalized_hash(identifier, group_id, sum(weights), VARIANT_SEED)
    assert variant_index(weights, target) == expected


def test_variant_index_walks_cumulative_weights_and_skips_zero_weights() -> None:
    assert [variant_index((300, 700), t) for t in (1, 300, 301, 1000)] == [0, 0, 1, 1]
    assert [variant_index((0, 500, 0, 500), t) for t in (1, 500, 501, 1000)] == [1, 1, 3, 3]
    with pytest.raises(ValueError):
        variant_index((500, 500), 1001)


def test_normalized_hash_range_and_modulus_validation() -> None:
    assert {normalized_hash(str(i), "g", modulus=3) for i in range(200)} == {1, 2, 3}
    assert normalized_hash("anyone", "g", modulus=1) == 1
    with pytest.raises(ValueError):
        normalized_hash("x", "g", modulus=0)
    with pytest.raises(ValueError):
        normalized_hash_many(["x"], "g", modulus=0)


def test_lone_surrogate_raises_instead_of_crashing() -> None:
    # mmh3 5.x segfaults on str("\udc80"); both paths encode first and raise.
    with pytest.raises(UnicodeEncodeError):
        normalized_hash("\udc80", "g")
    with pytest.raises(UnicodeEncodeError):
        normalized_hash_many(["ok", "\udc80"], "g")


def random_key(rng: random.Random) -> str:
    alphabet = "abcXYZ0189:-_ é€ßж中😀\x00"
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40)))


@pytest.mark.parametrize("prefix", ["", "g:", "exp-checkout:", "é:", "grüppe-😀:", "a\x00b:"])
def test_vectorised_matches_mmh3_on_100k_random_keys(prefix: str) -> None:
    rng = random.Random(prefix)
    keys = [random_key(rng) for _ in range(100_000 if prefix == "exp-checkout:" else 20_000)]
    for seed in (0, VARIANT_SEED):
        assert np.array_equal(murmur3_32_many(keys, seed=seed, prefix=prefix), reference(keys, seed, prefix))


def test_vectorised_uniform_length_path_matches_mmh3() -> None:
    # Same byte length everywhere: the strided-view path, across several chunks.
    keys = [f"user-{i:06d}" for i in range(70_000)]
    assert np.array_equal(murmur3_32_many(keys, prefix="g:"), reference(keys, 0, "g:"))
    same = ["é" * 5] * 10
    assert np.array_equal(murmur3_32_many(same, seed=7), reference(same, 7))


@settings(max_examples=200, deadline=None)
@given(keys=st.lists(TEXT, max_size=30), group_id=TEXT, modulus=st.integers(1, 2000))
def test_normalized_hash_many_equals_scalar(keys: list[str], group_id: str, modulus: int) -> None:
    expected = [normalized_hash(key, group_id, modulus, VARIANT_SEED) for key in keys]
    assert normalized_hash_many(keys, group_id, modulus, VARIANT_SEED).tolist() == expected


def test_empty_input() -> None:
    assert murmur3_32_many([]).shape == (0,)
    assert normalized_hash_many([], "g").dtype == np.int64
