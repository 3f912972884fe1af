"""Connecting to Temporal: one line that says which address and how to start a server when it fails."""

from __future__ import annotations

import asyncio

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from cli.exits import RUNTIME_FAILURE, UserFacingError
from cli.settings import Settings

CONNECT_TIMEOUT_SECONDS = 5.0


async def connect(s: Settings) -> Client:
    try:
        return await asyncio.wait_for(
            Client.connect(s.address, namespace=s.namespace, data_converter=pydantic_data_converter),
            CONNECT_TIMEOUT_SECONDS)
    except (TimeoutError, RuntimeError, OSError) as exc:
        detail = " ".join(str(exc).split())[:160] or type(exc).__name__
        raise UserFacingError(f"error: cannot reach Temporal at {s.address} ({detail}); start a local server with "
                              "`make server` or set TEMPORAL_ADDRESS", RUNTIME_FAILURE) from None
