"""The embedded flag store, registry and tickets: at most one effect per key, race-free concurrency limit."""

from __future__ import annotations

import asyncio
import copy
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier
from pathlib import Path

import pytest

from abrollout.contracts.tools import OpenTicketArgs, RegisterExperimentArgs
from abrollout.flags.evaluate import FlagState, FlexibleRollout, Variant
from abrollout.plan.planner import plan
from abrollout.spec.loader import check_raw
from adapters.local_flags import LocalFlags
from adapters.local_registry import LocalRegistry
from adapters.local_tickets import LocalTickets
from adapters.protocols import ConcurrencyRefused
from tests.conftest import BASE_SPEC
from tests.support.races import race


def _registration(name: str, max_concurrent: int = 1) -> RegisterExperimentArgs:
    raw = copy.deepcopy(BASE_SPEC) | {"name": name, "max_concurrent": max_concurrent}
    spec = check_raw(raw).spec
    assert spec is not None
    return RegisterExperimentArgs.model_validate(plan(spec).setup[0].args)


def _state(flag: str, rollout: int) -> FlagState:
    variants = (Variant(name="control", weight=500), Variant(name="treatment", weight=500, weight_type="fix"))
    return FlagState(name=flag, enabled=True,
                     strategies=(FlexibleRollout(rollout=rollout, stickiness="userId", group_id=flag,
                                                 variants=variants),))


async def test_flag_changes_apply_once_per_key_and_read_back(tmp_path: Path) -> None:
    flags = LocalFlags(tmp_path / "flags.sqlite")
    created = await flags.create_flag("abr.x", "test", "x:flag:1")
    assert created == await flags.create_flag("abr.x", "test", "x:flag:1")
    first = await flags.apply("abr.x", _state("abr.x", 10), "x:allocate-0:a", "ramp 10%")
    again = await flags.apply("abr.x", _state("abr.x", 50), "x:allocate-0:a", "ramp 10%")
    assert again == first
    assert await flags.read("abr.x") == _state("abr.x", 10)
    assert await flags.find_change("x:allocate-0:a") == first
    assert await flags.find_change("x:never") is None
    await flags.apply("abr.x", _state("abr.x", 100), "x:allocate-1:b", "ramp 100%")
    assert [change_id for change_id, _, _ in await flags.changes("abr.x")] == ["chg-abr.x-1", "chg-abr.x-2",
                                                                              "chg-abr.x-3"]


async def test_applying_to_a_missing_flag_is_refused(tmp_path: Path) -> None:
    with pytest.raises(LookupError):
        await LocalFlags(tmp_path / "flags.sqlite").apply("abr.none", _state("abr.none", 5), "k", "r")


async def test_registry_is_idempotent_and_counts_running_experiments(tmp_path: Path) -> None:
    registry = LocalRegistry(tmp_path / "registry.sqlite")
    args = _registration("exp-one")
    exp_id = await registry.register(args, "k1")
    assert await registry.register(args, "k1") == exp_id
    assert (await registry.get(exp_id)).args == args
    with pytest.raises(ConcurrencyRefused, match=r"exp_policy.v5#concurrency.1"):
        await registry.register(_registration("exp-two"), "k2")
    run_id = await registry.start_run(exp_id, "run", "all_users", "k1-run")
    assert await registry.start_run(exp_id, "run", "all_users", "k1-run") == run_id
    stop = await registry.stop_run(run_id, "done", "k1-stop")
    assert await registry.stop_run(run_id, "done again", "k1-stop-2") == stop, "a run stops once"
    assert await registry.register(_registration("exp-two"), "k2")
    with pytest.raises(ConcurrencyRefused, match="already registered"):
        await registry.register(args, "k1")


def _register_in_process(path: str, name: str, barrier: Barrier, results: Queue[str]) -> None:
    barrier.wait()
    try:
        results.put(asyncio.run(LocalRegistry(Path(path)).register(_registration(name), f"{name}:register")))
    except ConcurrencyRefused:
        results.put("refused")


def test_two_workers_registering_at_once_cannot_both_take_the_last_slot(tmp_path: Path) -> None:
    path = tmp_path / "registry.sqlite"
    LocalRegistry(path)
    outcomes = race(_register_in_process, str(path))
    assert sorted(o == "refused" for o in outcomes) == [False, True, True, True]


async def test_tickets_open_once_per_key(tmp_path: Path) -> None:
    tickets = LocalTickets(tmp_path / "tickets.sqlite")
    args = OpenTicketArgs(exp_key="x", title="Guardrail stop", description="d", severity="high", owners=["a"])
    first = await tickets.open(args, "x:ticket:1")
    assert await tickets.open(args, "x:ticket:1") == first
    second = await tickets.open(args, "x:ticket:2")
    assert (first, second) == ("TCK-00001", "TCK-00002")
    assert [t["ticket_id"] for t in await tickets.list("x")] == [first, second]
