"""Deterministic identifiers: canonical JSON, content hashes and idempotency keys.

The same spec must give the same keys byte for byte on every machine and every replay, so nothing here
reads a clock or a random source; a changed argument changes the hash and therefore the key.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no insignificant whitespace; NaN/Infinity are refused (not JSON)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def digest(value: Any, length: int = 16) -> str:
    """A hex SHA-256 prefix of the canonical JSON of `value`."""
    return hashlib.sha256(canonical_json(value).encode("utf-8")).hexdigest()[:length]


def idempotency_key(experiment_key: str, step: str, args: Any) -> str:
    """`<experiment>:<step>:<args hash>`: stable across retries, replays and workers; new when an arg changes."""
    return f"{experiment_key}:{step}:{digest(args)}"
