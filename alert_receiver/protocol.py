"""A deadline on receiving each request. uvicorn's keep-alive timer restarts on every byte and no timer covers a
request in progress (encode/uvicorn#157), so a client trickling its head or body would hold a place under the
concurrency cap for ever; with this, a request that is not complete within the deadline of its first byte (or of
the connection opening) has its connection closed."""

from __future__ import annotations

import asyncio

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol


def with_read_deadline(seconds: float) -> type[H11Protocol]:
    """uvicorn's h11 protocol, closing a connection whose request is not received within `seconds`."""

    class ReadDeadline(H11Protocol):
        _deadline: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def data_received(self, data: bytes) -> None:
            if self._deadline is None:  # the first byte of the next request on a kept-alive connection
                self._arm()
            super().data_received(data)

        def handle_events(self) -> None:
            super().handle_events()
            theirs = self.conn.their_state
            if theirs is h11.DONE or (theirs is h11.IDLE and not self.conn.trailing_data[0]):
                self._disarm()  # the request is in, or nothing of the next one has come yet

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _arm(self) -> None:
            self._deadline = self.loop.call_later(seconds, self._expire)

        def _disarm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None

        def _expire(self) -> None:
            self._deadline = None
            self.logger.warning("closed a connection whose request did not arrive within %g s", seconds)
            self.transport.close()

    return ReadDeadline
