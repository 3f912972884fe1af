"""PostgreSQL as the registry, against a real server: registration is idempotent and race-free across processes,
and the worker role recipe (docs/configuration.md) runs it beside the metrics source."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier

import pytest

from adapters.postgres_metrics import PostgresMetrics
from adapters.postgres_registry import PostgresRegistry
from adapters.protocols import AdapterConfigError, ConcurrencyRefused
from tests.adapters.test_local_stores import _registration
from tests.integration.test_postgres import PASSWORD, opened, with_password
from tests.support.races import race
from tests.support.servers.postgres import Postgres

WORKER_ROLE = """
CREATE ROLE {role} LOGIN PASSWORD '{password}';
GRANT CONNECT ON DATABASE {database} TO {role};
GRANT USAGE ON SCHEMA public TO {role};
GRANT SELECT ON exposures, metric_events, pre_period TO {role};
GRANT SELECT, INSERT, UPDATE ON abrollout_experiments, abrollout_runs TO {role};
"""


@pytest.fixture
async def registry(postgres: Postgres, database: str) -> AsyncIterator[PostgresRegistry]:
    async with opened(PostgresRegistry(postgres.dsn(database))) as adapter:
        await adapter.ensure_schema()
        await adapter.check()
        yield adapter


async def test_registry_is_idempotent_and_counts_running_experiments(registry: PostgresRegistry) -> None:
    args = _registration("exp-one")
    exp_id = await registry.register(args, "k1")
    assert await registry.register(args, "k1") == exp_id
    assert (await registry.get(exp_id)).args == args
    with pytest.raises(LookupError):
        await registry.get("EXP-NONE")
    with pytest.raises(ConcurrencyRefused, match=r"exp_policy.v5#concurrency.1"):
        await registry.register(_registration("exp-two"), "k2")
    runs = await asyncio.gather(*(registry.start_run(exp_id, "run", "all_users", "k1-run") for _ in range(4)))
    assert len(set(runs)) == 1
    stops = await asyncio.gather(*(registry.stop_run(runs[0], "done", f"k1-stop-{i}") for i in range(4)))
    assert len(set(stops)) == 1, "a run stops once, even when four stops race"
    assert await registry.register(_registration("exp-two"), "k2")
    with pytest.raises(ConcurrencyRefused, match="already registered"):
        await registry.register(args, "k1")


def _register_in_process(dsn: str, name: str, barrier: Barrier, results: Queue[str]) -> None:
    async def register() -> str:
        async with opened(PostgresRegistry(dsn)) as registry:
            barrier.wait(timeout=60)
            try:
                return str(await registry.register(_registration(name), f"{name}:register"))
            except ConcurrencyRefused:
                return "refused"

    results.put(asyncio.run(register()))


def test_four_workers_registering_at_once_cannot_both_take_the_last_slot(registry: PostgresRegistry,
                                                                          postgres: Postgres, database: str) -> None:
    outcomes = race(_register_in_process, postgres.dsn(database))
    assert sorted(outcome == "refused" for outcome in outcomes) == [False, True, True, True]
    assert postgres.psql("SELECT count(*) FROM abrollout_experiments WHERE status = 'running'", database) == "1\n"


async def test_the_worker_role_recipe_runs_the_registry(registry: PostgresRegistry, postgres: Postgres,
                                                        database: str) -> None:
    async with opened(PostgresMetrics(postgres.dsn(database))) as owner:
        await owner.ensure_schema()
    role = "abrollout_worker"
    postgres.psql(WORKER_ROLE.format(role=role, password=PASSWORD, database=database), database)
    dsn = with_password(postgres, database, role)
    async with opened(PostgresRegistry(dsn)) as worker, opened(PostgresMetrics(dsn)) as metrics:
        await worker.check()
        await metrics.check()
        exp_id = await worker.register(_registration("exp-worker"), "kw")
        await worker.stop_run(await worker.start_run(exp_id, "run", "all", "kw-run"), "done", "kw-stop")


async def test_check_names_the_missing_tables_but_never_the_password(postgres: Postgres, database: str) -> None:
    with pytest.raises(AdapterConfigError) as error:
        await PostgresRegistry(with_password(postgres, database)).check()
    assert "table abrollout_experiments (created by ensure_schema" in str(error.value)
    assert PASSWORD not in str(error.value) and "as postgres" in str(error.value)
