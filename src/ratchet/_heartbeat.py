"""Heartbeats of ratchet's activities, carrying what a model call's attempts were billed.

Temporal hands an attempt's last heartbeat details to the next attempt. A model call
records the usage the provider reported as soon as it answers, so when that attempt
still fails afterwards (the transcript store is unreachable, the worker dies), the
retry adds it to the call's usage: budgets count every attempt the provider billed,
not only the one that completed. After a crash this is best effort: Temporal's SDK
throttles heartbeats, so an attempt killed within a heartbeat interval of the
provider's answer may not have reported it.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any

from temporalio import activity

from .messages import Usage

_billed: ContextVar[Usage | None] = ContextVar("ratchet_billed", default=None)


def billed_before() -> Usage:
    """The usage earlier attempts of this activity recorded (zero on the first attempt)."""
    for details in activity.info().heartbeat_details:
        if isinstance(details, dict) and isinstance(details.get("billed"), dict):
            return Usage.model_validate(details["billed"])
    return Usage()


def set_billed(usage: Usage) -> None:
    """What this activity's attempts have been billed so far; sent with every heartbeat."""
    _billed.set(usage)
    beat()


def beat(note: str | None = None) -> None:
    """Heartbeat, keeping the billed usage in the details (each heartbeat replaces them)."""
    billed = _billed.get()
    if billed is None and note is None:
        activity.heartbeat()
        return
    details: dict[str, Any] = {"note": note}
    if billed is not None:
        details["billed"] = billed.model_dump()
    activity.heartbeat(details)
