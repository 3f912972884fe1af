"""Benchmark of the embedded flag evaluator: assignments per second, and agreement with Unleash's own evaluation.
Vectorised against a plain per-user loop (a benchmark, not a timed test); what it measures: bench/README.md.

    .venv/bin/python -m bench.bucketing_bench [--users N] [--quick] [--playground-users N] [--no-unleash]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import secrets
import statistics
import subprocess
import time
import uuid
from collections.abc import Callable, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import httpx
import mmh3
import numpy as np
import pytest

from abrollout.contracts.tools import AllocateTrafficArgs
from abrollout.flags.bucketing import VARIANT_SEED, normalized_hash, normalized_hash_many, variant_index
from abrollout.flags.evaluate import (
    DISABLED_VARIANT,
    NOT_EXPOSED,
    EvalContext,
    FlagState,
    Variant,
    assign_many,
    effective_variants,
    get_variant,
    is_enabled,
    variant_names,
)
from abrollout.flags.rules import parse_rules
from abrollout.flags.states import allocation_state
from abrollout.ids import idempotency_key
from abrollout.plan.planner import flag_key

if TYPE_CHECKING:
    from tests.support.servers.unleash import Unleash

RULES = ['country in ["US","CA"]', 'app_version >= "5.2.0"']
SPLIT = {"control": 50.0, "treatment": 30.0, "treatment_b": 20.0}
ROLLOUT = 60
COUNTRIES = ["US", "CA", "GB", None]
VERSIONS = ["5.1.9", "5.2.0", "5.10.0", "6.0.0-beta.1", None]
NOW = datetime(2026, 1, 1, tzinfo=UTC)
VECTOR_RUNS = 5
HASH_LOOP_RUNS = 3


def experiment_flag(exp_key: str, rules: list[str]) -> FlagState:
    return allocation_state(AllocateTrafficArgs(
        flag_key=flag_key(exp_key), group_id=exp_key, exp_id="EXP-BENCH", split=SPLIT, exposure_rules=rules,
        constraints=list(parse_rules(rules)), rollout_percent=ROLLOUT, ramp_step=0))


@dataclass(frozen=True)
class Users:
    ids: list[str]
    country: list[str | None]
    app_version: list[str | None]

    def columns(self, flag: FlagState) -> dict[str, Sequence[str | None]]:
        """The property columns the flag's constraints read (none for a flag without rules)."""
        read = {c.context_name for s in flag.strategies for c in s.constraints}
        return {name: column for name, column in (("country", self.country), ("app_version", self.app_version))
                if name in read}


def users(n: int, seed: int) -> Users:
    rng = random.Random(seed)
    return Users(ids=[f"u{rng.randrange(10**9)}" for _ in range(n)],
                 country=[rng.choice(COUNTRIES) for _ in range(n)],
                 app_version=[rng.choice(VERSIONS) for _ in range(n)])


# ---- throughput -------------------------------------------------------------------------------------------------
def timed(run: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    """Median wall seconds over `repeat` runs, and the last result."""
    times, result = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        result = run()
        times.append(time.perf_counter() - started)
    return statistics.median(times), result


def vectorised(flag: FlagState, people: Users) -> list[str | None]:
    names = variant_names(flag)
    indices = assign_many(flag, people.ids, people.columns(flag), NOW)
    return [None if i == NOT_EXPOSED else names[i] for i in indices.tolist()]


def per_user(flag: FlagState, people: Users) -> list[str | None]:
    columns = people.columns(flag)
    country, version = columns.get("country"), columns.get("app_version")
    out = []
    for i, user in enumerate(people.ids):
        values: dict[str, str | None] = {"userId": user}
        if country is not None:
            values["country"] = country[i]
        if version is not None:
            values["app_version"] = version[i]
        out.append(get_variant(flag, EvalContext.from_values(values), NOW))
    return out


def bare_hash_loop(flag: FlagState, people: Users) -> list[str | None]:
    strategy = flag.strategies[0]
    arms = effective_variants(strategy)
    weights = [weight for _, weight in arms]
    total, group, rollout = sum(weights), strategy.group_id, strategy.rollout
    return [arms[variant_index(weights, normalized_hash(user, group, total, VARIANT_SEED))][0]
            if normalized_hash(user, group) <= rollout else None for user in people.ids]


@dataclass(frozen=True)
class Throughput:
    label: str
    vector_s: float
    loop_s: float
    hash_loop_s: float
    agree: int
    n: int
    exposed: int


def throughput(label: str, flag: FlagState, people: Users) -> Throughput:
    vector_s, ours = timed(lambda: vectorised(flag, people), VECTOR_RUNS)
    loop_s, reference = timed(lambda: per_user(flag, people), 1)
    hash_loop_s, _ = timed(lambda: bare_hash_loop(flag, people), HASH_LOOP_RUNS)
    agree = sum(a == b for a, b in zip(ours, reference, strict=True))
    return Throughput(label, vector_s, loop_s, hash_loop_s, agree, len(people.ids),
                      sum(a is not None for a in reference))


def hash_paths(n: int, seed: int) -> tuple[int, int, float, float]:
    """normalized_hash_many against mmh3 key by key on `n` UUIDs: (agreeing, n, vector s, loop s)."""
    rng = random.Random(seed)
    keys = [str(uuid.UUID(int=rng.getrandbits(128))) for _ in range(n)]
    vector_s, hashed = timed(lambda: normalized_hash_many(keys, "bench-uuid", 1000, VARIANT_SEED), VECTOR_RUNS)
    loop_s, scalar = timed(lambda: [int(mmh3.hash(f"bench-uuid:{k}".encode(), VARIANT_SEED, signed=False)) % 1000 + 1
                                    for k in keys], 1)
    return int(np.count_nonzero(hashed == np.array(scalar))), n, vector_s, loop_s


# ---- the client specification --------------------------------------------------------------------------------------
@dataclass
class SpecAgreement:
    scalar_agree: int = 0
    scalar_applicable: int = 0
    not_applicable: int = 0
    vector_agree: int = 0
    vector_applicable: int = 0
    unavailable: str | None = None


def client_specification() -> SpecAgreement:
    from tests.abrollout.flags import test_client_specification as spec

    found = SpecAgreement()
    try:
        files = spec.specification()
    except pytest.skip.Exception as exc:
        found.unavailable = str(exc)
        return found
    for _, content in files:
        features = content["state"].get("features")
        cases = [*((c, False) for c in content.get("tests", [])), *((c, True) for c in content.get("variantTests", []))]
        if features is None:
            found.not_applicable += len(cases)
            continue
        for case, variant_case in cases:
            try:
                ok = spec.run_case(features, case, variant_case=variant_case)
            except spec.NotApplicable:
                found.not_applicable += 1
                continue
            found.scalar_applicable += 1
            found.scalar_agree += ok
            agrees = _vector_case(spec, features, case, variant_case)
            if agrees is not None:
                found.vector_applicable += 1
                found.vector_agree += agrees
    return found


PLACEHOLDER_ID = "bench-no-user-id"


def _vector_case(spec: Any, features: list[dict[str, Any]], case: dict[str, Any], variant_case: bool) -> bool | None:
    """The case through `assign_many`, or None where it cannot go.

    assign_many takes a user id for everyone (the simulator's users all have one). A case without a userId goes
    through with a placeholder id only where no outcome can read it: no strategy hashes on the user (every one with
    default or userId stickiness has rollout 100 and, for variant cases, no variants) and no constraint reads userId.
    An enabled flag without strategies is on for everyone with nothing to assign: not applicable. An is-enabled case
    asks whether any strategy matches: each strategy without variants gets one ("on"), which changes no match, so
    the user is assigned a variant exactly when the flag is enabled for them.
    """
    context = case["context"]
    flag: FlagState = spec.flag_state(features, case["toggleName"], variant_case=variant_case)
    if flag.enabled and not flag.strategies:
        return None
    user = context.get("userId")
    if user is None:
        hashes_user = any(s.stickiness in ("default", "userId") and (s.rollout < 100 or (variant_case and s.variants))
                          for s in flag.strategies)
        if hashes_user or any(c.context_name == "userId" for s in flag.strategies for c in s.constraints):
            return None
        user = PLACEHOLDER_ID
    if not variant_case:
        flag = flag.model_copy(update={"strategies": tuple(
            s if s.variants else s.model_copy(update={"variants": (Variant(name="on"),)}) for s in flag.strategies)})
    now = datetime.fromisoformat(context["currentTime"]) if "currentTime" in context else spec.NOW
    columns = {name: [value] for name, value in {**context, **context.get("properties", {})}.items()
               if name not in ("userId", "properties", "currentTime")}
    [index] = assign_many(flag, [user], columns, now).tolist()
    if not variant_case:
        return (index != NOT_EXPOSED) is bool(case["expectedResult"])
    name = DISABLED_VARIANT if index == NOT_EXPOSED else variant_names(flag)[index]
    return bool(name == case["expectedResult"]["name"])


# ---- a real Unleash ---------------------------------------------------------------------------------------------
@dataclass
class PlaygroundAgreement:
    users: int = 0
    scalar_agree: int = 0
    vector_agree: int = 0
    vector_users: int = 0
    served: dict[str, int] | None = None
    seconds: float = 0.0
    unavailable: str | None = None
    server: str = ""


def _why(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300] or type(exc).__name__


async def playground(count: int, seed: int) -> PlaygroundAgreement:
    from tests.support.servers import unleash as unleash_server

    found = PlaygroundAgreement()
    async with AsyncExitStack() as stack:
        try:
            server = await _start_unleash(stack)
        except (pytest.skip.Exception, RuntimeError, OSError, subprocess.SubprocessError) as exc:
            found.unavailable = _why(exc)
            return found
        found.server = f"Unleash {unleash_server.UNLEASH_VERSION} at {server.url}, pid {server.process.pid}"
        desired = await _serve_experiment_flag(stack, server)
        contexts = _contexts(count, seed)
        started = time.perf_counter()
        theirs = await _ask_playground(server, desired.name, contexts)
        found.seconds = time.perf_counter() - started
        _count_agreement(found, desired, contexts, theirs)
    return found


async def _start_unleash(stack: AsyncExitStack) -> Unleash:
    """An Unleash on its own PostgreSQL, both stopped when `stack` closes."""
    from tests.support.servers import postgres as pg_server
    from tests.support.servers import unleash as unleash_server

    pg = await asyncio.to_thread(pg_server.start)
    stack.callback(pg.stop)
    server = await asyncio.to_thread(unleash_server.start, pg)
    stack.callback(server.stop)
    return server


async def _serve_experiment_flag(stack: AsyncExitStack, server: Unleash) -> FlagState:
    """The experiment flag with rules, written to Unleash as the workflow writes it (verified read-back)."""
    from activities.flag_changes import apply_verified
    from adapters.unleash import UnleashFlags

    flags = UnleashFlags(server.url, server.token)
    stack.push_async_callback(flags.aclose)
    exp = f"bucketing-{secrets.token_hex(4)}"
    desired = experiment_flag(exp, RULES)
    await flags.create_flag(desired.name, "bucketing bench", f"{exp}:flag:1")
    receipt = await apply_verified(flags, desired.name, desired,
                                   idempotency_key(exp, "allocate-0", desired.model_dump(mode="json")),
                                   "bucketing bench")
    assert receipt.ok, receipt.message  # Unleash serves exactly the flag the evaluators are given
    return desired


def _contexts(count: int, seed: int) -> list[dict[str, str | None]]:
    """Users with properties; about one in twenty has no userId, which Unleash evaluates too."""
    rng = random.Random(seed)
    return [{"userId": None if rng.random() < 0.05 else f"u{rng.randrange(10**9)}",
             "country": rng.choice(COUNTRIES), "app_version": rng.choice(VERSIONS)} for _ in range(count)]


async def _ask_playground(server: Unleash, flag_name: str, contexts: list[dict[str, str | None]]
                          ) -> list[tuple[bool, str]]:
    """Unleash's own (enabled, variant) for each context, four requests at a time."""
    gate = asyncio.Semaphore(4)
    async with httpx.AsyncClient(base_url=server.url, headers={"Authorization": server.token}, timeout=30) as admin:

        async def evaluate(values: dict[str, str | None]) -> tuple[bool, str]:
            present = {k: v for k, v in values.items() if v is not None}
            context = {"appName": "bucketing-bench", **({"userId": present.pop("userId")} if "userId" in present
                                                         else {}), "properties": present}
            async with gate:
                response = await admin.post("/api/admin/playground", json={
                    "environment": "development", "projects": ["default"], "context": context})
            response.raise_for_status()
            result = next(f for f in response.json()["features"] if f["name"] == flag_name)
            return bool(result["isEnabled"]), str(result["variant"]["name"])

        return await asyncio.gather(*(evaluate(values) for values in contexts))


def _count_agreement(found: PlaygroundAgreement, desired: FlagState, contexts: list[dict[str, str | None]],
                     theirs: list[tuple[bool, str]]) -> None:
    """Our scalar evaluator on every context, and assign_many on those with a userId, against Unleash's answers."""
    with_id = [i for i, values in enumerate(contexts) if values["userId"] is not None]
    people = Users(ids=[str(contexts[i]["userId"]) for i in with_id],
                   country=[contexts[i]["country"] for i in with_id],
                   app_version=[contexts[i]["app_version"] for i in with_id])
    vector = dict(zip(with_id, vectorised(desired, people), strict=True))
    served: dict[str, int] = {}
    for i, (values, (enabled, variant)) in enumerate(zip(contexts, theirs, strict=True)):
        ctx = EvalContext.from_values(values)
        ours = (is_enabled(desired, ctx, NOW), get_variant(desired, ctx, NOW) or DISABLED_VARIANT)
        found.scalar_agree += ours == (enabled, variant)
        served[variant] = served.get(variant, 0) + 1
        if i in vector:
            found.vector_users += 1
            found.vector_agree += (vector[i] or DISABLED_VARIANT) == variant
    found.users, found.served = len(contexts), dict(sorted(served.items()))


# ---- output -------------------------------------------------------------------------------------------------------
def _mark(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def _pct(agree: int, total: int) -> str:
    return f"{agree:,}/{total:,} = {agree / total:.4%}" if total else "0/0"


def main(argv: list[str] | None = None) -> None:
    args = _arguments(argv)
    started = time.perf_counter()
    _print_throughput(users(args.users, args.seed), args.seed)
    print()
    _print_specification(client_specification())
    if args.no_unleash:
        print("(c) real Unleash playground: skipped (--no-unleash)")
    else:
        _print_playground(asyncio.run(playground(args.playground_users, args.seed + 2)))
    print(f"wall time {time.perf_counter() - started:.1f} s")


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--users", type=int, default=1_000_000, help="user ids for throughput and agreement (a)")
    parser.add_argument("--quick", action="store_true", help="100,000 users and 200 playground users")
    parser.add_argument("--playground-users", type=int, default=1000, help="users evaluated by Unleash itself (c)")
    parser.add_argument("--no-unleash", action="store_true", help="skip (c), the real Unleash")
    parser.add_argument("--seed", type=int, default=20261125)
    args = parser.parse_args(argv)
    if args.quick:
        args.users, args.playground_users = 100_000, 200
    return args


def _print_throughput(people: Users, seed: int) -> None:
    """(a): the table of throughput and agreement on `people`, then the hash alone on as many UUIDs."""
    count = len(people.ids)
    print(f"bucketing bench: {count:,} user ids (mixed lengths), the experiment flag "
          f"(flexibleRollout {ROLLOUT}%, stickiness userId, split {'/'.join(f'{v:g}' for v in SPLIT.values())}); "
          f"vectorised = assign_many (median of {VECTOR_RUNS}), per-user loop = get_variant with an EvalContext "
          f"(1 pass), bare-hash loop = 2 x normalized_hash per user (median of {HASH_LOOP_RUNS})")
    print("target: agreement 100% everywhere; throughput: vectorised vs the per-user loop, measured in this run")
    print()
    header = (f"{'flag':<16}{'vectorised/s':>14}{'per-user loop/s':>17}{'ratio':>8}{'bare-hash loop/s':>18}"
              f"{'ratio':>8}{'exposed':>10}   agreement (a) vectorised vs per-user")
    print(header)
    print("-" * len(header))
    for label, rules in (("no rules", []), ("2 exposure rules", RULES)):
        r = throughput(label, experiment_flag("bench-exp", rules), people)
        print(f"{r.label:<16}{r.n / r.vector_s:>14,.0f}{r.n / r.loop_s:>17,.0f}{r.loop_s / r.vector_s:>7.1f}x"
              f"{r.n / r.hash_loop_s:>18,.0f}{r.hash_loop_s / r.vector_s:>7.1f}x{r.exposed / r.n:>10.1%}   "
              f"{_pct(r.agree, r.n)} {_mark(r.agree == r.n)}", flush=True)
    agree, n, vector_s, loop_s = hash_paths(count, seed + 1)
    print(f"hash only, {n:,} UUIDs (uniform-length path): normalized_hash_many {n / vector_s:,.0f}/s, mmh3 loop "
          f"{n / loop_s:,.0f}/s ({loop_s / vector_s:.1f}x); agreement {_pct(agree, n)} {_mark(agree == n)}")


def _print_specification(spec: SpecAgreement) -> None:
    if spec.unavailable:
        print(f"(b) client specification: not available ({spec.unavailable})")
        return
    scalar = _pct(spec.scalar_agree, spec.scalar_applicable)
    print(f"(b) Unleash client specification 6.1.0: scalar evaluator {scalar} applicable cases agree "
          f"{_mark(spec.scalar_agree == spec.scalar_applicable)} "
          f"({spec.not_applicable} not applicable: see NOT_APPLICABLE in "
          f"tests/abrollout/flags/test_client_specification.py); "
          f"vectorised (assign_many) {_pct(spec.vector_agree, spec.vector_applicable)} of the applicable cases it "
          f"can take {_mark(spec.vector_agree == spec.vector_applicable)} (the other "
          f"{spec.scalar_applicable - spec.vector_applicable} hash a missing userId or are on for everyone)")


def _print_playground(real: PlaygroundAgreement) -> None:
    if real.unavailable:
        print(f"(c) real Unleash playground: not run, Unleash unavailable ({real.unavailable}); to run it: npm "
              "and Debian's postgresql on the machine (make test-integration installs them), then "
              "`.venv/bin/python -m bench.bucketing_bench`")
        return
    print(f"(c) {real.server}, POST /api/admin/playground user by user ({real.users / real.seconds:,.0f} "
          f"evaluations/s over HTTP), the flag with rules: scalar {_pct(real.scalar_agree, real.users)} "
          f"{_mark(real.scalar_agree == real.users)}; vectorised (the {real.vector_users} users with a "
          f"userId) {_pct(real.vector_agree, real.vector_users)} "
          f"{_mark(real.vector_agree == real.vector_users)}; Unleash served {real.served}")

if __name__ == "__main__":
    main()
