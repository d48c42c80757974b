"""The model activity's side of streaming: queue deltas, write them in batches.

A provider hands deltas to :meth:`DeltaWriter.add`, which never blocks. One background
task writes whatever has queued since its last write in one transaction, so under a
fast provider the deltas of a few milliseconds share one commit (and one NOTIFY),
while the first delta goes out at once. A failing store never fails the model call:
deltas are a live view, and the call's final message reaches the history anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging

from .._unicode import valid_text
from ._delta import CallKey, Delta
from ._store import DeltaStore

__all__ = ["DeltaWriter"]

_log = logging.getLogger("ratchet.streaming")


class DeltaWriter:
    """Writes one attempt's deltas to a store, in order, in the background."""

    def __init__(self, store: DeltaStore, run_id: str, key: CallKey, attempt: int) -> None:
        self.store = store
        self.run_id = run_id
        self.key = key
        self.attempt = attempt
        self.count = 0
        """Deltas handed over so far."""
        self._pending: list[tuple[int, Delta]] = []
        self._wake = asyncio.Event()
        self._closing = False
        self._failed: BaseException | None = None
        self._task = asyncio.get_running_loop().create_task(self._write_loop())

    def add(self, delta: Delta) -> None:
        """Queue one delta (the provider's :data:`~ratchet.streaming.DeltaSink`)."""
        if not delta.text and delta.tool_call_id is None and delta.tool_name is None:
            return  # nothing a subscriber could show
        if self._failed is None:
            self._pending.append((self.count, _valid(delta)))
            self._wake.set()
        self.count += 1

    async def _write_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            batch, self._pending = self._pending, []
            if batch:
                try:
                    await self.store.append(self.run_id, self.key, self.attempt, batch)
                except Exception as e:
                    # The call goes on; subscribers get its final message from the history.
                    self._failed = e
                    _log.warning(
                        "streaming to %r stopped for %s/%s: %s: %s",
                        self.store,
                        self.run_id,
                        self.key.call_id,
                        type(e).__name__,
                        e,
                    )
                    return
            if self._closing and not self._pending:
                return

    async def close(self) -> None:
        """Write what is queued, then stop; prune expired deltas now and then."""
        self._closing = True
        self._wake.set()
        try:
            await self._task
        finally:
            with contextlib.suppress(Exception):
                await self.store.prune_if_due()

    def abandon(self) -> None:
        """Stop without writing the rest (the attempt was cancelled)."""
        self._task.cancel()


def _valid(delta: Delta) -> Delta:
    """``delta`` with its texts valid: a lone surrogate (a model's ``\\ud800`` escape)
    would stop the store's writes for the rest of the call."""
    text = valid_text(delta.text)
    call_id = None if delta.tool_call_id is None else valid_text(delta.tool_call_id)
    name = None if delta.tool_name is None else valid_text(delta.tool_name)
    # valid_text gives back the same string when it is valid: the common case is free.
    if text is delta.text and call_id is delta.tool_call_id and name is delta.tool_name:
        return delta
    return dataclasses.replace(delta, text=text, tool_call_id=call_id, tool_name=name)
