"""Per-experiment coalescing: a burst of alerts for one experiment (Alertmanager's retries, several rules firing
together, a flood) becomes one `alert` signal now and at most one more when the window ends (`trailing`), so it
costs two checks and a handful of history events, and no alert waits longer than the window."""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Iterable

DEFAULT_WINDOW_SECONDS = 5.0
IN_FLIGHT_POLL_SECONDS = 0.05


class Coalescer:
    """At most one signal per experiment in flight, and none within `window` seconds after one was taken. The
    state lives on the receiver's event loop: claims and releases never interleave, so no lock is needed."""

    def __init__(self, window: float = DEFAULT_WINDOW_SECONDS, clock: Callable[[], float] = time.monotonic) -> None:
        self._window = window
        self._clock = clock
        self._in_flight: set[str] = set()
        self._quiet_until: dict[str, float] = {}

    def claim(self, ids: Iterable[str]) -> list[str]:
        """The ids to signal now, marked in flight until `release`; the others are coalesced."""
        now = self._clock()
        self._quiet_until = {i: until for i, until in self._quiet_until.items() if until > now}
        fresh = [i for i in dict.fromkeys(ids) if i not in self._in_flight and i not in self._quiet_until]
        self._in_flight.update(fresh)
        return fresh

    def release(self, ids: Iterable[str], signalled: Collection[str]) -> None:
        """Their delivery is over; the window opens for those whose signal was taken (a failed one is retried by
        the next alert, not held back)."""
        now = self._clock()
        for i in ids:
            self._in_flight.discard(i)
            if i in signalled and self._window > 0:
                self._quiet_until[i] = now + self._window

    def wait(self, wf_id: str) -> float:
        """Seconds until `claim` could take it: the rest of its window, or a moment while its signal is in flight."""
        if wf_id in self._in_flight:
            return IN_FLIGHT_POLL_SECONDS
        return max(0.0, self._quiet_until.get(wf_id, 0.0) - self._clock())
