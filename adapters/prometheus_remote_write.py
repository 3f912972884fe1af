"""Prometheus remote write (protocol 1.0), encoded by hand, and a simulator sink that mirrors guardrail metrics.

Remote write is the one way to give Prometheus samples with chosen timestamps and labels while it runs (the
Pushgateway refuses timestamps; scraping cannot backdate). `WriteRequest` is small enough to encode directly, which
spares a generated-protobuf dependency; the body is snappy block-compressed (not framed), as the protocol requires.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import cramjam
import httpx
import numpy as np

from adapters.redaction import quote, url_secrets
from adapters.simulator import HourStore, Rows

HEADERS = {
    "Content-Encoding": "snappy",
    "Content-Type": "application/x-protobuf",
    "X-Prometheus-Remote-Write-Version": "0.1.0",
}

# The messages encoded: WriteRequest {repeated TimeSeries timeseries = 1}; TimeSeries {repeated Label labels = 1;
# repeated Sample samples = 2}; Label {string name = 1; string value = 2}; Sample {double value = 1; int64
# timestamp = 2} (milliseconds since the epoch).
_VARINT, _FIXED64, _LENGTH_DELIMITED = 0, 1, 2
DETAIL_CHARS = 300
"""How much of a refusal's body goes into the error, once the URL's credentials are masked."""


class RemoteWriteError(RuntimeError):
    """Prometheus refused a remote write (for example samples older than its out-of-order window)."""


@dataclass(frozen=True)
class Sample:
    """One sample of the series `name{labels}`."""

    name: str
    labels: Mapping[str, str]
    value: float
    timestamp_ms: int


def _varint(n: int) -> bytes:
    n &= 0xFFFF_FFFF_FFFF_FFFF  # int64 as protobuf does: a negative number is its 64-bit two's complement
    out = bytearray()
    while n >= 0x80:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _key(field: int, wire_type: int) -> bytes:
    return _varint(field << 3 | wire_type)


def _nested(field: int, payload: bytes) -> bytes:
    return _key(field, _LENGTH_DELIMITED) + _varint(len(payload)) + payload


def _label(name: str, value: str) -> bytes:
    return _nested(1, name.encode()) + _nested(2, value.encode())


def _sample(value: float, timestamp_ms: int) -> bytes:
    return _key(1, _FIXED64) + struct.pack("<d", value) + _key(2, _VARINT) + _varint(timestamp_ms)


def encode_write_request(samples: Iterable[Sample]) -> bytes:
    """The `WriteRequest` protobuf: one time series per label set, its samples in timestamp order, its labels
    sorted by name (byte order, as Prometheus sorts them: `__name__` comes first among lower-case names) and
    labels with an empty value left out (the protocol forbids them; to Prometheus they are absent anyway)."""
    series: dict[tuple[tuple[str, str], ...], list[Sample]] = {}
    for s in samples:
        labels = tuple(sorted((k, v) for k, v in {**s.labels, "__name__": s.name}.items() if v))
        series.setdefault(labels, []).append(s)
    return b"".join(
        _nested(1, b"".join(_nested(1, _label(*label)) for label in labels)
                + b"".join(_nested(2, _sample(s.value, s.timestamp_ms))
                           for s in sorted(members, key=lambda s: s.timestamp_ms)))
        for labels, members in series.items()
    )


def _body(samples: Sequence[Sample]) -> bytes:
    return bytes(cramjam.snappy.compress_raw(encode_write_request(samples)))


def _raise_for_refusal(response: httpx.Response, url: str) -> None:
    if response.is_error:
        secrets = url_secrets(url)
        raise RemoteWriteError(f"remote write to {quote(url, secrets)} refused: HTTP {response.status_code} "
                               f"{quote(response.text.strip(), secrets, DETAIL_CHARS)}")


async def remote_write(client: httpx.AsyncClient, url: str, samples: Sequence[Sample]) -> None:
    """POST the samples to a remote-write receiver (`.../api/v1/write`); raises RemoteWriteError if refused."""
    _raise_for_refusal(await client.post(url, content=_body(samples), headers=HEADERS), url)


def remote_write_sync(client: httpx.Client, url: str, samples: Sequence[Sample]) -> None:
    """`remote_write` for synchronous callers (the simulator runs in a worker thread)."""
    _raise_for_refusal(client.post(url, content=_body(samples), headers=HEADERS), url)


def hour_means(rows: Rows, metric: str) -> dict[str, float]:
    """Per arm, the metric's mean over the hour's exposed users: a user's value is the sum of their events, zero
    without any (so a Bernoulli metric gives its rate). Arms without exposed users are left out."""
    exposures, events = rows.exposures, rows.metric_events
    arms, arm_of_user = np.unique(exposures.arm.astype(str), return_inverse=True)
    order = np.argsort(exposures.user_id.astype(str))
    sorted_users = exposures.user_id.astype(str)[order]
    chosen = events.metric == metric
    # Every event belongs to an exposed user (the simulator logs only kept users), so the lookup always hits.
    event_arm = arm_of_user[order][np.searchsorted(sorted_users, events.user_id[chosen].astype(str))]
    sums = np.bincount(event_arm, weights=events.value[chosen], minlength=arms.size)
    counts = np.bincount(arm_of_user, minlength=arms.size)
    return {str(arm): float(sums[i] / counts[i]) for i, arm in enumerate(arms)}


class PrometheusMirror:
    """An `HourStore` that also pushes each newly written simulated hour's per-arm guardrail means to Prometheus,
    stamped with the real time, so that an instant query at now over the lookback window sees the latest
    simulated hour (the simulator compresses hours into seconds; its calendar means nothing to Prometheus).

    Exactly once per hour rests on the simulator's per-experiment lock: the mirror pushes when the hours done went
    from `hour` to `hour + 1` around its own write. Two workers simulating the same experiment into one store could
    both see that and push the hour twice (the same values, a moment apart)."""

    def __init__(self, store: HourStore, write_url: str, series: Mapping[str, str], timeout: float = 10.0) -> None:
        """`series` maps a guardrail metric to its Prometheus series name (latency_p95 -> abrollout_latency_p95)."""
        self._store = store
        self._write_url = write_url
        self._series = dict(series)
        self._client = httpx.Client(timeout=timeout)
        self._last_ms: dict[str, int] = {}

    def close(self) -> None:
        self._client.close()

    def hours_done(self, exp_key: str) -> int:
        return self._store.hours_done(exp_key)

    def write_hour(self, exp_key: str, hour: int, rows: Rows) -> int:
        """Delegate, then push if this call wrote the hour; a refused push raises (the hour stays written)."""
        before = self._store.hours_done(exp_key)
        done = self._store.write_hour(exp_key, hour, rows)
        if before == hour and done == hour + 1:
            stamp = self._timestamp_ms(exp_key)
            samples = [Sample(name, {"experiment": exp_key, "arm": arm}, value, stamp)
                       for metric, name in self._series.items()
                       for arm, value in hour_means(rows, metric).items()]
            if samples:
                remote_write_sync(self._client, self._write_url, samples)
        return done

    def _timestamp_ms(self, exp_key: str) -> int:
        """Now, but strictly after the experiment's previous push: hours caught up within one millisecond would
        otherwise share a timestamp, and Prometheus refuses a second value at the same timestamp."""
        stamp = max(time.time_ns() // 1_000_000, self._last_ms.get(exp_key, 0) + 1)
        self._last_ms[exp_key] = stamp
        return stamp
