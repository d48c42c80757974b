"""Riding out a transcript store outage inside a worker's activities.

A model call reads its prompt from the store and writes the answer back. When the store
is briefly gone (a SQLite file locked by a backup, PostgreSQL restarting), failing the
call would waste the provider's answer, and Temporal's retries would count against the
call's attempts; instead the activity waits for the store, heartbeating so the server
knows it is alive, for up to ``RATCHET_STORE_OUTAGE_SECONDS`` (60 s by default). Past
that the call fails for good with the typed ``TranscriptStoreUnavailable``: the run
stops at its last recorded step, which ``ratchet fork`` goes on from.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TypeVar

from temporalio import activity
from temporalio.exceptions import ApplicationError

from ._heartbeat import heartbeating
from .errors import ConfigError, TranscriptStoreUnavailable
from .transcripts import ChainNode, StoreStats, TranscriptStore

__all__ = ["OUTAGE_ENV", "OutageTolerantStore", "outage_seconds_from_env"]

OUTAGE_ENV = "RATCHET_STORE_OUTAGE_SECONDS"
DEFAULT_OUTAGE_SECONDS = 60.0

_log = logging.getLogger("ratchet.worker")
T = TypeVar("T")


def outage_seconds_from_env() -> float:
    """How long a worker waits for an unavailable store before a call gives up."""
    text = os.environ.get(OUTAGE_ENV, "").strip()
    if not text:
        return DEFAULT_OUTAGE_SECONDS
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if seconds < 0:
        raise ConfigError(f"{OUTAGE_ENV}={text!r}: give a number of seconds (0 or more)")
    return seconds


class OutageTolerantStore(TranscriptStore):
    """``store``, with every operation retried through an outage of ``outage_seconds``."""

    def __init__(self, store: TranscriptStore, outage_seconds: float | None = None) -> None:
        self.inner = store
        self.outage_seconds = (
            outage_seconds_from_env() if outage_seconds is None else outage_seconds
        )

    async def put(self, messages: Mapping[str, str], nodes: Sequence[ChainNode]) -> None:
        await self._through(lambda: self.inner.put(messages, nodes))

    async def messages(self, hashes: Sequence[str]) -> dict[str, str]:
        return await self._through(lambda: self.inner.messages(hashes))

    async def chain(self, head: str) -> list[ChainNode]:
        return await self._through(lambda: self.inner.chain(head))

    async def stats(self) -> StoreStats:
        return await self._through(self.inner.stats)

    async def close(self) -> None:
        await self.inner.close()

    def __repr__(self) -> str:
        return repr(self.inner)

    async def _through(self, op: Callable[[], Awaitable[T]]) -> T:
        down_since: float | None = None
        delay = 0.2
        while True:
            # From the start of the failed try: a locked SQLite file fails only after
            # its 10 s busy timeout.
            tried = time.monotonic()
            try:
                result = await _heartbeating_in_activity(op())
            except TranscriptStoreUnavailable as e:
                now = time.monotonic()
                if down_since is None:
                    down_since = tried
                    _log.warning("%s; waiting up to %.0f s for it", e, self.outage_seconds)
                waited = now - down_since
                if waited >= self.outage_seconds:
                    raise _gave_up(e, waited) from e
                await _heartbeating_in_activity(
                    asyncio.sleep(min(delay, self.outage_seconds - waited))
                )
                delay = min(delay * 2, 2.0)
                continue
            if down_since is not None:
                _log.warning(
                    "the transcript store %r is back after %.1f s",
                    self.inner,
                    time.monotonic() - down_since,
                )
            return result


async def _heartbeating_in_activity(work: Awaitable[T]) -> T:
    """Await ``work``, heartbeating meanwhile when inside an activity with a heartbeat
    timeout (a SQLite call may block for its 10 s busy timeout)."""
    timeout = activity.info().heartbeat_timeout if activity.in_activity() else None
    if not timeout:
        return await work
    return await heartbeating(work, timeout.total_seconds())


def _gave_up(e: TranscriptStoreUnavailable, waited: float) -> Exception:
    if not activity.in_activity():
        return e
    run = activity.info().workflow_id or "RUN"
    return ApplicationError(
        f"{e} (waited {waited:.0f} s, {OUTAGE_ENV}). The run stopped at its last recorded "
        f"step; once the store is back, go on from there with `ratchet fork {run} --at "
        f"STEP` (`ratchet show {run}` lists the steps)",
        type="TranscriptStoreUnavailable",
        non_retryable=True,
    )
