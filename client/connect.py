"""Connecting to Temporal: one line that says which address and how to start a server when it fails."""

from __future__ import annotations

import asyncio
import re

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from client.exits import RUNTIME_FAILURE, UserFacingError
from client.settings import Settings

CONNECT_TIMEOUT_SECONDS = 5.0
TRANSIENT = ("Resource temporarily unavailable", "WouldBlock")
"""The kernel's EAGAIN on a TCP connect, met once right after a dev server restarted on the same port: worth
another try within the bound. A refused connection (no server) is not, and is said at once."""
RETRY_SECONDS = 0.1


async def connect(s: Settings) -> Client:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + CONNECT_TIMEOUT_SECONDS
    while True:
        try:
            return await asyncio.wait_for(
                Client.connect(s.address, namespace=s.namespace, data_converter=pydantic_data_converter),
                max(deadline - loop.time(), RETRY_SECONDS))
        except (TimeoutError, RuntimeError, OSError) as exc:
            detail = " ".join(str(exc).split())
            if any(t in detail for t in TRANSIENT) and loop.time() + RETRY_SECONDS < deadline:
                await asyncio.sleep(RETRY_SECONDS)
                continue
            raise UserFacingError(f"error: cannot reach Temporal at {s.address} ({_reason(detail, exc)}); start a "
                                  "local server with `make server` or set TEMPORAL_ADDRESS", RUNTIME_FAILURE) from None


def _reason(detail: str, exc: BaseException) -> str:
    """The operating system's words when the client's error carries them ("Connection refused"), not the transport
    layers wrapped around them."""
    said = re.search(r'message: "([^"]{1,160})"', detail)
    return said[1] if said else detail[:160] or type(exc).__name__
