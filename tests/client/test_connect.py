"""Connecting to Temporal from the CLI: a transient EAGAIN is tried again within the bound, a refusal is said at once
with the address and the fix."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client

from client import connect as connecting
from client.exits import RUNTIME_FAILURE, UserFacingError
from client.settings import Settings
from devserver import free_port

EAGAIN = ('Failed client connect: Server connection error: tonic::transport::Error(Transport, ConnectError('
          'ConnectError("tcp connect error", 127.0.0.1:7233, Os { code: 11, kind: WouldBlock, '
          'message: "Resource temporarily unavailable" })))')


def _settings(address: str) -> Settings:
    return Settings(address=address, namespace="default", task_queue="q", ui_url="http://ui", data_dir=Path("."))


class _Connects:
    """Client.connect standing in: raises each of `errors` in turn, then answers."""

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.calls = 0

    async def __call__(self, *_: Any, **__: Any) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "client"


async def test_a_transient_eagain_is_tried_again(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = _Connects(RuntimeError(EAGAIN), RuntimeError(EAGAIN))
    monkeypatch.setattr(Client, "connect", fake)
    connected: object = await connecting.connect(_settings("127.0.0.1:7233"))
    assert connected == "client"
    assert fake.calls == 3


async def test_eagain_that_lasts_ends_within_the_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = _Connects(*[RuntimeError(EAGAIN)] * 1000)
    monkeypatch.setattr(Client, "connect", fake)
    monkeypatch.setattr(connecting, "CONNECT_TIMEOUT_SECONDS", 0.5)
    with pytest.raises(UserFacingError) as caught:
        await connecting.connect(_settings("127.0.0.1:7233"))
    assert 1 < fake.calls <= 6 and caught.value.code == RUNTIME_FAILURE
    assert "(Resource temporarily unavailable);" in str(caught.value)


async def test_no_server_is_said_at_once_with_the_address_and_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    """A real connect to a port nobody listens on: refused, one attempt, one line."""
    real, attempts = Client.connect, []

    async def counted(*args: Any, **kwargs: Any) -> Client:
        attempts.append(args)
        return await real(*args, **kwargs)

    monkeypatch.setattr(Client, "connect", counted)
    address = f"127.0.0.1:{free_port()}"
    with pytest.raises(UserFacingError) as caught:
        await connecting.connect(_settings(address))
    assert len(attempts) == 1
    message = str(caught.value)
    assert message.startswith(f"error: cannot reach Temporal at {address} (Connection refused); "), message
    assert message.endswith("start a local server with `make server` or set TEMPORAL_ADDRESS")
