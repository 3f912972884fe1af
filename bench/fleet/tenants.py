"""The registry of a fleet's worker when the fleet is larger than one registry may hold. exp_policy.v5
(concurrency.1) allows at most 50 running experiments per domain in one registry, so one embedded registry holds
250 at most; here each block of `size` experiments gets its own registry file (a tenant each), and each call does
the same work as on one registry. Flags, metrics, dashboards and tickets stay shared."""

from __future__ import annotations

from pathlib import Path

from abrollout.contracts.tools import RegisterExperimentArgs
from adapters.local_registry import LocalRegistry
from adapters.protocols import OpenExperiment, Registered


class TenantRegistry:
    """Embedded registries, one SQLite file per block of `size` experiments (fleet-<i> is in tenant i // size),
    so that more than 250 experiments can run at once under concurrency.1. Lookups by id are routed by what
    this process registered (a fresh process searches the files)."""

    name = "local-tenants"

    def __init__(self, data_dir: Path, size: int) -> None:
        self.data_dir, self.size = data_dir, size
        self.stores: dict[int, LocalRegistry] = {}
        self.by_exp: dict[str, LocalRegistry] = {}
        self.by_run: dict[str, LocalRegistry] = {}

    def _store(self, tenant: int) -> LocalRegistry:
        if tenant not in self.stores:
            self.stores[tenant] = LocalRegistry(self.data_dir / f"registry-t{tenant:03d}.sqlite")
        return self.stores[tenant]

    def _all(self) -> list[LocalRegistry]:
        for path in sorted(self.data_dir.glob("registry-t*.sqlite")):
            self._store(int(path.stem.removeprefix("registry-t")))
        return list(self.stores.values())

    async def _of_exp(self, exp_id: str) -> LocalRegistry:
        if exp_id not in self.by_exp:
            for store in self._all():
                try:
                    await store.get(exp_id)
                except LookupError:
                    continue
                self.by_exp[exp_id] = store
                break
            else:
                raise LookupError(f"experiment {exp_id} is not registered")
        return self.by_exp[exp_id]

    async def register(self, args: RegisterExperimentArgs, idempotency_key: str) -> str:
        number = args.exp_key.rsplit("-", 1)[-1]
        store = self._store(int(number) // self.size if number.isdigit() else 0)
        exp_id = await store.register(args, idempotency_key)
        self.by_exp[exp_id] = store
        return exp_id

    async def get(self, exp_id: str) -> Registered:
        return await (await self._of_exp(exp_id)).get(exp_id)

    async def start_run(self, exp_id: str, run_name: str, population: str, idempotency_key: str) -> str:
        store = await self._of_exp(exp_id)
        run_id = await store.start_run(exp_id, run_name, population, idempotency_key)
        self.by_run[run_id] = store
        return run_id

    async def stop_run(self, run_id: str, reason: str, idempotency_key: str) -> str:
        stores = [self.by_run[run_id]] if run_id in self.by_run else self._all()
        for store in stores:
            try:
                return await store.stop_run(run_id, reason, idempotency_key)
            except LookupError:
                continue
        raise LookupError(f"run {run_id} does not exist")

    async def running(self, domain: str) -> list[str]:
        return [key for store in self._all() for key in await store.running(domain)]

    async def open_experiments(self) -> list[OpenExperiment]:
        return [found for store in self._all() for found in await store.open_experiments()]

    async def release(self, exp_id: str, reason: str, idempotency_key: str) -> str:
        return await (await self._of_exp(exp_id)).release(exp_id, reason, idempotency_key)
