"""Reading what a signal carries, from anyone (the CLI, the Temporal UI's Signal dialog, the raw API, a webhook):
never raised, always either a request or the reason it was dropped.

A handler that raises fails the workflow task on every retry and wedges the experiment (its stop button with it),
so every payload shape is answered here: none, several, null, binary, wrong types, huge.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TypeVar

from pydantic import ValidationError

from abrollout.run.control import AlertRequest, Control, StopRequest

C = TypeVar("C", bound=Control)

NO_REASON = "no reason given"
ALERT_CHECK_MIN_INTERVAL = timedelta(seconds=10)
"""Real time between two alert-triggered checks of one experiment: a flood of alerts costs at most one check per
interval (the warehouse is what it protects, so it is not scaled with an accelerated clock); an alert arriving
meanwhile waits for its end, and any more join it."""
MAX_ERRORS_SHOWN = 3


def read(signal: str, model: type[C], args: tuple[object, ...]) -> C | str:
    """The request in a signal's arguments, or why it was dropped (one line, at most a few hundred characters).

    An empty payload is the Temporal UI's Signal dialog with nothing typed: a `stop` or an `alert` then means what
    it says (stopping is the safe direction, an alert only runs a check), while a `promote` needs its variant.
    A bare JSON string is taken as the reason, the one field a person types."""
    if len(args) > 1:
        return f"{signal}: {len(args)} inputs; send one JSON object"
    value = args[0] if args else None
    if value is None:
        value = {"reason": NO_REASON} if model is StopRequest else {} if model is AlertRequest else None
    elif isinstance(value, str) and model in (StopRequest, AlertRequest):
        value = {"reason": value}
    if not isinstance(value, dict):
        return f"{signal}: expected a JSON object, got {_kind(value)}"
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        shown = "; ".join(f"{'.'.join(str(p) for p in e['loc'])[:40] or 'payload'}: {e['msg'][:80]}"
                          for e in exc.errors()[:MAX_ERRORS_SHOWN])
        more = exc.error_count() - MAX_ERRORS_SHOWN
        return f"{signal}: {shown}" + (f" (+{more} more)" if more > 0 else "")


def _kind(value: object) -> str:
    if isinstance(value, bytes | bytearray):
        return f"{len(value)} bytes of binary data"
    return type(value).__name__
