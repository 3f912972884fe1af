"""The Unleash flag provider against a real Unleash 8.2.0: round trips in canonical form, receipts from the event
log, idempotency across retries, crashes and adapter instances, read-back mismatches, assignments that agree with
the server's playground user by user, and start-up checks that never show the token."""

from __future__ import annotations

import json
import random
import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from abrollout.contracts.tools import AllocateTrafficArgs
from abrollout.flags.evaluate import DISABLED_VARIANT, EvalContext, FlagState, Variant, get_variant, is_enabled
from abrollout.flags.rules import parse_rules
from abrollout.flags.states import allocation_state, single_arm_state
from abrollout.ids import idempotency_key
from abrollout.plan.planner import flag_key
from activities.flag_changes import apply_verified
from adapters.protocols import AdapterConfigError
from adapters.unleash import FlagConflict, UnleashFlags, UnsupportedFlag
from devserver import free_port
from tests.support.servers.unleash import Unleash

RULES = ['country in ["US","CA"]', 'app_version >= "5.2.0"']
EVERY_KIND_OF_RULE = ['plan == "pro"', "logged_in == true", 'tier != "free"', "age >= 18", "score > 2.5",
                      'signup_date < "2026-01-01"', 'email ends_with "@example.com"', 'name not contains ["bot", "qa"]',
                      'app_version < semver("6.0.0")', 'region not in ["XX", "YY"]']
STRATEGY_EVENTS = {"feature-strategy-add", "feature-strategy-update"}


@pytest.fixture
async def flags(unleash: Unleash) -> AsyncIterator[UnleashFlags]:
    adapter = UnleashFlags(unleash.url, unleash.token)
    yield adapter
    await adapter.aclose()


@pytest.fixture
async def admin(unleash: Unleash) -> AsyncIterator[httpx.AsyncClient]:
    """The Admin API as a person editing flags by hand would use it."""
    async with httpx.AsyncClient(base_url=unleash.url, headers={"Authorization": unleash.token}, timeout=10) as client:
        yield client


def allocation(exp: str, split: dict[str, float], percent: float, step: int = 0,
               rules: list[str] | None = None) -> AllocateTrafficArgs:
    rules = rules or []
    return AllocateTrafficArgs(flag_key=flag_key(exp), group_id=exp, exp_id="EXP-TEST", split=split,
                               exposure_rules=rules, constraints=list(parse_rules(rules)), rollout_percent=percent,
                               ramp_step=step)


def key_of(exp: str, step: str, args: AllocateTrafficArgs | FlagState) -> str:
    return idempotency_key(exp, step, args.model_dump(mode="json"))


async def new_flag(flags: UnleashFlags) -> tuple[str, str]:
    """A fresh experiment key and its created flag."""
    exp = f"it-{secrets.token_hex(4)}"
    await flags.create_flag(flag_key(exp), f"integration test {exp}", f"{exp}:flag:{secrets.token_hex(8)}")
    return exp, flag_key(exp)


async def event(admin: httpx.AsyncClient, change_id: str) -> dict[str, Any]:
    number = change_id.removeprefix("unleash-event-")
    found = (await admin.get("/api/admin/search/events", params={"id": f"IS:{number}"})).json()["events"]
    assert len(found) == 1, change_id
    return found[0]  # type: ignore[no-any-return]


async def strategy_events(admin: httpx.AsyncClient, flag: str, key: str) -> list[int]:
    """Ids of the flag's strategy events whose own data mentions `key`."""
    page = (await admin.get("/api/admin/search/events",
                            params={"feature": f"IS:{flag}", "query": key, "limit": 1000})).json()
    return sorted(e["id"] for e in page["events"] if e["type"] in STRATEGY_EVENTS and key in json.dumps(e["data"]))


async def strategy_of(admin: httpx.AsyncClient, flag: str) -> dict[str, Any]:
    feature = (await admin.get(f"/api/admin/projects/default/features/{flag}")).json()
    environment = next(e for e in feature["environments"] if e["name"] == "development")
    return environment["strategies"][0]  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("split", "rules"),
    [
        ({"control": 50, "treatment": 50}, []),
        ({"control": 90, "treatment": 10}, RULES),
        ({"control": 40, "t1": 30, "t_1": 30}, []),  # "_" sorts before digits in localeCompare, after them in ASCII
        ({"control": 33.4, "treatment_a": 33.3, "treatment_b": 33.3}, RULES),
        ({"control": 80, "treatment": 20}, EVERY_KIND_OF_RULE),
    ],
    ids=["50-50", "90-10-rules", "locale-order", "three-arms-rules", "every-kind-of-rule"],
)
async def test_allocation_reads_back_as_desired(flags: UnleashFlags, admin: httpx.AsyncClient, unleash: Unleash,
                                                split: dict[str, float], rules: list[str]) -> None:
    exp, flag = await new_flag(flags)
    args = allocation(exp, split, 100, rules=rules)
    desired = allocation_state(args)
    receipt = await apply_verified(flags, flag, desired, key_of(exp, "allocate-0", args), "ramp step 0")
    assert receipt.ok, receipt.data
    assert await flags.read(flag) == desired
    logged = await event(admin, receipt.ref)
    assert (logged["type"], logged["featureName"], logged["environment"]) == ("feature-strategy-add", flag,
                                                                              "development")
    assert unleash.token not in receipt.model_dump_json()


@pytest.mark.parametrize("closing", ["promote", "rollback"])
async def test_ramp_then_close(flags: UnleashFlags, admin: httpx.AsyncClient, closing: str) -> None:
    exp, flag = await new_flag(flags)
    refs = []
    for step, percent in enumerate((10, 100)):
        args = allocation(exp, {"control": 50, "treatment": 50}, percent, step, RULES)
        desired = allocation_state(args)
        receipt = await apply_verified(flags, flag, desired, key_of(exp, f"allocate-{step}", args),
                                       f"ramp step {step}")
        assert receipt.ok, receipt.data
        assert await flags.read(flag) == desired
        refs.append(receipt.ref)
    arm = "treatment" if closing == "promote" else "control"
    desired = single_arm_state(await flags.read(flag), flag, arm)
    receipt = await apply_verified(flags, flag, desired, key_of(exp, closing, desired), f"{closing} {arm}")
    assert receipt.ok, receipt.data
    observed = await flags.read(flag)
    assert observed == desired
    assert observed.strategies[0].variants == (Variant(name=arm, weight=1000, stickiness="userId"),)
    assert observed.strategies[0].constraints == tuple(parse_rules(RULES))
    types = [(await event(admin, ref))["type"] for ref in [*refs, receipt.ref]]
    assert types == ["feature-strategy-add", "feature-strategy-update", "feature-strategy-update"]


async def test_a_key_is_applied_once_and_found_by_any_instance(flags: UnleashFlags, admin: httpx.AsyncClient,
                                                               unleash: Unleash) -> None:
    exp = f"it-{secrets.token_hex(4)}"
    flag = flag_key(exp)
    created = await flags.create_flag(flag, "twice", f"{exp}:flag:1")
    assert await flags.create_flag(flag, "twice", f"{exp}:flag:1") == created
    args = allocation(exp, {"control": 50, "treatment": 50}, 20)
    key = key_of(exp, "allocate-0", args)
    first = await flags.apply(flag, allocation_state(args), key, "ramp step 0")
    assert await flags.apply(flag, allocation_state(args), key, "ramp step 0") == first
    assert await strategy_events(admin, flag, key) == [int(first.change_id.removeprefix("unleash-event-"))]
    restarted = UnleashFlags(unleash.url, unleash.token)
    try:
        assert await restarted.find_change(key) == first
        assert await restarted.find_change(f"{exp}:flag:1") == created
        assert await restarted.find_change(f"{exp}:allocate-1:{secrets.token_hex(8)}") is None
    finally:
        await restarted.aclose()


class Crash(Exception):
    """The worker dying between the strategy write and enabling the flag."""


async def test_a_change_interrupted_before_enabling_is_finished_not_repeated(
        flags: UnleashFlags, admin: httpx.AsyncClient, unleash: Unleash, monkeypatch: pytest.MonkeyPatch) -> None:
    exp, flag = await new_flag(flags)
    args = allocation(exp, {"control": 50, "treatment": 50}, 10, rules=RULES)
    desired, key = allocation_state(args), key_of(exp, "allocate-0", args)
    request = flags._request

    async def dies_before_enabling(method: str, path: str, **kwargs: Any) -> httpx.Response:
        if path.endswith("/on"):
            raise Crash
        return await request(method, path, **kwargs)

    monkeypatch.setattr(flags, "_request", dies_before_enabling)
    with pytest.raises(Crash):
        await apply_verified(flags, flag, desired, key, "ramp step 0")
    written = await strategy_events(admin, flag, key)
    assert len(written) == 1
    restarted = UnleashFlags(unleash.url, unleash.token)
    try:
        assert await restarted.find_change(key) is None  # not done yet: the flag is still off
        receipt = await apply_verified(restarted, flag, desired, key, "ramp step 0")
    finally:
        await restarted.aclose()
    assert receipt.ok, receipt.data
    assert receipt.ref == f"unleash-event-{written[0]}"
    assert await strategy_events(admin, flag, key) == written


async def test_a_hand_edit_fails_the_read_back(flags: UnleashFlags, admin: httpx.AsyncClient) -> None:
    exp, flag = await new_flag(flags)
    args = allocation(exp, {"control": 90, "treatment": 10}, 10, rules=RULES)
    desired, key = allocation_state(args), key_of(exp, "allocate-0", args)
    applied = await apply_verified(flags, flag, desired, key, "ramp step 0")
    assert applied.ok, applied.data
    strategy = await strategy_of(admin, flag)
    edit = {name: strategy[name] for name in ("name", "title", "constraints", "variants", "segments")}
    edit["parameters"] = {**strategy["parameters"], "rollout": "100"}
    edited = await admin.put(f"/api/admin/projects/default/features/{flag}/environments/development/strategies/"
                             f"{strategy['id']}", json=edit)
    assert edited.status_code == 200, edited.text
    retried = await apply_verified(flags, flag, desired, key, "ramp step 0")
    assert not retried.ok
    assert retried.ref == applied.ref and "read-back mismatch" in retried.message
    assert retried.data is not None and retried.data["observed"]["strategies"][0]["rollout"] == 100


async def test_assignments_agree_with_the_playground(flags: UnleashFlags, admin: httpx.AsyncClient) -> None:
    exp, flag = await new_flag(flags)
    args = allocation(exp, {"control": 50, "treatment": 30, "treatment_b": 20}, 60, rules=RULES)
    desired = allocation_state(args)
    assert (await apply_verified(flags, flag, desired, key_of(exp, "allocate-0", args), "ramp step 0")).ok
    rng = random.Random(20261125)
    now = datetime.now(UTC)
    served: list[str] = []
    disagreements = []
    for _ in range(300):
        values = {"userId": None if rng.random() < 0.05 else f"user-{rng.randrange(10**7)}",
                  "country": rng.choice(["US", "CA", "GB", None]),
                  "app_version": rng.choice(["5.1.9", "5.2.0", "5.10.0", "6.0.0-beta.1", "v5.3.0", None])}
        present = {name: value for name, value in values.items() if value is not None}
        context = {"appName": "abrollout-tests", **({"userId": present.pop("userId")} if "userId" in present else {}),
                   "properties": present}
        response = await admin.post("/api/admin/playground", json={"environment": "development",
                                                                   "projects": ["default"], "context": context})
        assert response.status_code == 200, response.text
        result = next(f for f in response.json()["features"] if f["name"] == flag)
        ctx = EvalContext.from_values(values)
        ours = (is_enabled(desired, ctx, now), get_variant(desired, ctx, now) or DISABLED_VARIANT)
        theirs = (result["isEnabled"], result["variant"]["name"])
        served.append(theirs[1])
        if ours != theirs:
            disagreements.append((values, ours, theirs))
    assert disagreements == []
    assert set(served) == {"control", "treatment", "treatment_b", DISABLED_VARIANT}  # every outcome was exercised


async def test_flags_abrollout_cannot_model_are_reported(flags: UnleashFlags, admin: httpx.AsyncClient) -> None:
    assert await flags.read("abr.never-created") is None
    _, flag = await new_flag(flags)
    added = await admin.post(f"/api/admin/projects/default/features/{flag}/environments/development/strategies",
                             json={"name": "remoteAddress", "parameters": {"IPs": "10.0.0.1"}})
    assert added.status_code == 200, added.text
    with pytest.raises(UnsupportedFlag, match="remoteAddress"):
        await flags.read(flag)


async def test_someone_elses_flag_is_not_taken_over(flags: UnleashFlags, admin: httpx.AsyncClient) -> None:
    exp = f"it-{secrets.token_hex(4)}"
    made = await admin.post("/api/admin/projects/default/features", json={"name": flag_key(exp), "type": "release"})
    assert made.status_code == 201, made.text
    with pytest.raises(FlagConflict, match="not created under"):
        await flags.create_flag(flag_key(exp), "mine?", f"{exp}:flag:1")


async def test_check_accepts_good_settings(flags: UnleashFlags) -> None:
    await flags.check()


@pytest.mark.parametrize(
    ("setting", "message"),
    [("token", "refused the token"), ("url", "unreachable"), ("project", "project 'nope' does not exist"),
     ("environment", "environment 'nope' is not enabled")],
)
async def test_check_names_the_bad_setting_without_the_token(unleash: Unleash, setting: str, message: str) -> None:
    settings = {"url": unleash.url, "token": unleash.token, "project": "default", "environment": "development"}
    settings[setting] = {"token": f"*:*.{secrets.token_hex(16)}", "url": f"http://127.0.0.1:{free_port()}"}.get(
        setting, "nope")
    adapter = UnleashFlags(settings["url"], settings["token"], settings["project"], settings["environment"])
    try:
        with pytest.raises(AdapterConfigError, match=message) as raised:
            await adapter.check()
    finally:
        await adapter.aclose()
    assert settings["token"] not in str(raised.value) and unleash.token not in str(raised.value)
