"""Flag changes with receipts, in one place: apply at most once per key, read back, compare.

A step is done only when the provider returned a change id AND the post-state read back matches what was
asked for (receipts.1). A mismatch (say someone edited the flag by hand) is never reported as success.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from abrollout.flags.evaluate import FlagState
from abrollout.flags.states import differences
from adapters.protocols import FlagProvider


class FlagChange(BaseModel):
    """The provider's change id, and whether the flag read back as asked (the receipt's ok)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    ok: bool
    ref: str
    message: str
    data: dict[str, Any]


async def apply_verified(flags: FlagProvider, flag_key: str, desired: FlagState, idempotency_key: str,
                         reason: str) -> FlagChange:
    existing = await flags.find_change(idempotency_key)
    change = existing or await flags.apply(flag_key, desired, idempotency_key, reason)
    observed = await flags.read(flag_key)
    replayed = existing is not None
    if observed != desired:
        return FlagChange(ok=False, ref=change.change_id,
                          message=f"read-back mismatch on {flag_key}: the flag does not serve what was applied "
                           f"({'; '.join(differences(desired, observed))})",
                           data={"expected": desired.model_dump(mode="json"),
                                 "observed": observed.model_dump(mode="json") if observed else None,
                                 "replayed": replayed})
    return FlagChange(ok=True, ref=change.change_id,
                      message=f"{reason}; read back and matched" + (" (already applied under this key)" if replayed
                                                                       else ""),
                       data={"read_back": observed.model_dump(mode="json"), "replayed": replayed})
