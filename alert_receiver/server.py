"""The receiver as a server on the caller's event loop (uvicorn over h11, no threads): it shares the loop, and so
the Temporal client, with whoever starts it, and it is an async context manager (port 0 picks a free port)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sys
from collections.abc import Iterator

import uvicorn
from temporalio.client import Client

from alert_receiver.app import PATH, SIGNAL_TIMEOUT_SECONDS, AlertApp, Log
from alert_receiver.auth import Bearer
from alert_receiver.coalesce import DEFAULT_WINDOW_SECONDS, Coalescer
from alert_receiver.payload import DEFAULT_LABEL
from alert_receiver.protocol import with_read_deadline

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 9095
MAX_CONCURRENT = 32
"""Connections and requests at once; beyond it a request is answered 503 at once (Alertmanager retries it). An
Alertmanager cluster keeps a few connections; the cap is what a flood can take."""
READ_SECONDS = 10.0


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


class _Server(uvicorn.Server):
    """uvicorn's server without its signal handling (the command, or the test, owns SIGINT and SIGTERM), and with
    an event once it accepts connections."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.serving = asyncio.Event()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        self.serving.set()


class AlertReceiver:
    """The Alertmanager webhook receiver. It binds when made (an OSError says the address is taken or unknown) and
    serves between `start()` and `aclose()`, or within `async with`. `token` None takes alerts without one."""

    def __init__(self, client: Client, *, token: str | None, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
                 label: str = DEFAULT_LABEL, coalesce_seconds: float = DEFAULT_WINDOW_SECONDS,
                 max_concurrent: int = MAX_CONCURRENT, read_seconds: float = READ_SECONDS,
                 log: Log = _stderr) -> None:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0][0]
        self._socket = socket.create_server((host, port), family=family)
        self.address: tuple[str, int] = self._socket.getsockname()[:2]
        self._app = AlertApp(client, Bearer(token) if token is not None else None, label,
                             Coalescer(coalesce_seconds), log)
        self._server = _Server(uvicorn.Config(
            self._app, http=with_read_deadline(read_seconds), ws="none", lifespan="off", interface="asgi3",
            limit_concurrency=max_concurrent, timeout_graceful_shutdown=int(SIGNAL_TIMEOUT_SECONDS) + 1,
            log_config=None, log_level="warning", access_log=False, proxy_headers=False, server_header=False))
        self._serving: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        host, port = self.address
        return f"http://{f'[{host}]' if ':' in host else host}:{port}{PATH}"

    async def start(self) -> None:
        self._serving = asyncio.create_task(self._server.serve(sockets=[self._socket]))
        ready = asyncio.create_task(self._server.serving.wait())
        await asyncio.wait({self._serving, ready}, return_when=asyncio.FIRST_COMPLETED)
        if self._serving.done():
            ready.cancel()
            self._serving.result()  # the reason it could not start

    async def aclose(self) -> None:
        """Stop accepting, let the requests in progress finish, close the connections."""
        if self._serving is None:
            self._socket.close()
            return
        self._server.should_exit = True
        await self._serving
        await self._app.trailing.aclose()

    async def __aenter__(self) -> AlertReceiver:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
