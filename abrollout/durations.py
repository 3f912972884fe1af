"""Durations written by people ("1h", "30m", "2d", "90s") as whole seconds, and back.

Specs carry schedule intervals as text so they read naturally; the domain code works in seconds.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import BeforeValidator, PlainSerializer, WithJsonSchema

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_PATTERN = re.compile(r"^\s*(\d{1,9})\s*([smhd])\s*$")


_FORMS = "a duration like '1h', '30m' or '2d' (a whole number and one of s, m, h, d)"


def parse_offset(value: object) -> int:
    """Seconds (zero allowed) from "0h"/"15m"/"2d" or a whole number of seconds; ValueError naming the forms."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 10**9:
        return value
    if isinstance(value, str):
        match = _PATTERN.match(value)
        if match:
            return int(match.group(1)) * _UNITS[match.group(2)]
    raise ValueError(f"expected {_FORMS}")


def parse_duration(value: object) -> int:
    """Like parse_offset, but an interval must be positive."""
    seconds = parse_offset(value)
    if seconds <= 0:
        raise ValueError(f"expected a positive duration, {_FORMS}")
    return seconds


def format_duration(seconds: int) -> str:
    """The shortest exact text for a duration: 3600 -> "1h", 5400 -> "90m"."""
    for unit in ("d", "h", "m"):
        size = _UNITS[unit]
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds // 3600}h" if seconds == 0 else f"{seconds}s"


_SCHEMA = WithJsonSchema({"type": "string", "pattern": r"^\d+[smhd]$", "examples": ["1h", "24h", "30m"]})
_SERIALIZER = PlainSerializer(format_duration, return_type=str, when_used="json")

Duration = Annotated[int, BeforeValidator(parse_duration), _SERIALIZER, _SCHEMA]
"""A positive interval, e.g. a check schedule."""

Offset = Annotated[int, BeforeValidator(parse_offset), _SERIALIZER, _SCHEMA]
"""A point in time after the run started, zero allowed, e.g. a ramp step's start."""
