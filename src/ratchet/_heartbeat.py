"""Heartbeats of ratchet's activities, carrying what a model call's attempts cost.

Temporal hands an attempt's last heartbeat details to the next attempt. A model call
records each request it sends to the provider, and the usage the provider reports as
soon as it answers, and hands both to the next attempt with its last heartbeat when
it fails (say the transcript store is unreachable): the retry adds them to the
call's usage. Budgets count every attempt the provider saw, and attempts that never
reached it (still waiting for rate-limit capacity) are not counted as requests.
After a crash (kill -9) this is best effort: only what a periodic heartbeat (every
third of the heartbeat timeout while the call runs) reported before the crash.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, TypeVar

from temporalio import activity

from .messages import Usage


@dataclass
class Attempts:
    """What the attempts of one model call have sent and been billed, this one included.

    Mutable and shared by reference: the heartbeating loop and the task doing the
    call see the same object (a task copies the context, not the object).
    """

    sent: int = 0
    """Requests that reached the provider (sent), over all attempts."""
    billed: Usage = field(default_factory=Usage)
    """Tokens the provider reported, over all attempts (``requests`` unused)."""

    def usage(self) -> Usage:
        """The call's usage: every answered attempt's tokens, every sent request."""
        return self.billed.model_copy(update={"requests": max(self.sent, 1)})


_attempts: ContextVar[Attempts | None] = ContextVar("ratchet_attempts", default=None)


@contextmanager
def counted_attempts() -> Iterator[Attempts]:
    """Track this model call's totals, starting from the previous attempt's heartbeat.

    When the attempt fails, its last heartbeat (which goes with the failure) hands the
    totals to the next one. Only then: a heartbeat on every call would cost a server
    round trip each (an attempt's first heartbeat is sent at once). The periodic
    heartbeats of a long call carry the totals too, which is what survives a crash.
    """
    attempts = Attempts()
    for details in activity.info().heartbeat_details:
        if isinstance(details, dict) and isinstance(details.get("billed"), dict):
            attempts.sent = int(details.get("sent", 0))
            attempts.billed = Usage.model_validate(details["billed"])
    _attempts.set(attempts)
    try:
        yield attempts
    except BaseException:
        # Cancellation too: a call cut off by a stopping worker's drain, or by the run's
        # cancellation, still hands its sent requests and tokens on.
        beat()
        raise


def request_sent() -> None:
    """The attempt is sending its request to the provider."""
    attempts = _attempts.get()
    if attempts is not None:
        attempts.sent += 1


def answered(usage: Usage) -> None:
    """The provider answered with ``usage`` (this attempt may still fail)."""
    attempts = _attempts.get()
    if attempts is not None:
        attempts.billed = attempts.billed + usage.model_copy(update={"requests": 0})


def beat(note: str | None = None) -> None:
    """Heartbeat, keeping the call's totals in the details (each heartbeat replaces them)."""
    attempts = _attempts.get()
    if attempts is None and note is None:
        activity.heartbeat()
        return
    details: dict[str, Any] = {"note": note}
    if attempts is not None:
        details["sent"] = attempts.sent
        details["billed"] = attempts.billed.model_dump()
    activity.heartbeat(details)


T = TypeVar("T")


async def heartbeating(work: Awaitable[T], heartbeat_seconds: float) -> T:
    """Await ``work`` while heartbeating.

    Heartbeats tell Temporal the worker is alive (a crashed worker's activity is
    retried elsewhere after ``heartbeat_seconds``) and deliver cancellation: when
    the run is cancelled, the next heartbeat cancels ``work``.
    """
    task = asyncio.ensure_future(work)
    interval = max(0.1, min(heartbeat_seconds / 3, 5.0))
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=interval)
            if done:
                return task.result()
            beat()
    finally:
        if not task.done():
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
