"""Live token events, merged into a run's recorded events while its model calls run.

The history says when a model call starts (``model_call_started``, at scheduling)
and when it ends (``model_call_finished``); in between, the call's deltas are in the
delta store (``ratchet.streaming``). While the history has nothing new to say and a
call is open, this tails the store and yields its deltas as ``token`` events; when
the call's end arrives, it first yields the deltas still unread, so a live subscriber
sees every piece before the authoritative message. Calls that ended before the reader
caught up yield no tokens: their messages say it all.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime

from . import events as ev
from .streaming import CallKey, DeltaStore, StoredDelta

__all__ = ["with_tokens"]

_log = logging.getLogger("ratchet.streaming")

_WAIT_SECONDS = 1.0
"""How long one wait on the store lasts before the history is looked at again."""


@dataclass
class _OpenCall:
    started: ev.ModelCallStarted
    key: CallKey
    after: tuple[int, int]
    """The last (attempt, offset) yielded."""

    def token(self, row: StoredDelta) -> ev.TokenDelta:
        s = self.started
        return ev.TokenDelta(
            seq=s.seq,
            at=datetime.fromtimestamp(row.created, UTC),
            execution=s.execution,
            history_event_id=s.history_event_id,
            call_id=s.call_id,
            turn=s.turn,
            attempt=row.attempt,
            offset=row.offset,
            kind=row.delta.kind,
            text=row.delta.text,
            tool_call_index=row.delta.tool_call_index,
            tool_call_id=row.delta.tool_call_id,
            tool_name=row.delta.tool_name,
        )

    def superseded(self, by_attempt: int) -> ev.TokensSuperseded:
        s = self.started
        return ev.TokensSuperseded(
            seq=s.seq,
            at=s.at,
            execution=s.execution,
            history_event_id=s.history_event_id,
            call_id=s.call_id,
            turn=s.turn,
            attempt=self.after[0],
            by_attempt=by_attempt,
        )


class _Tail:
    """The store, while it works: a failing store ends the tokens, never the events."""

    def __init__(self, store: DeltaStore) -> None:
        self.store: DeltaStore | None = store

    def failed(self, e: Exception) -> None:
        _log.warning(
            "token events stopped: the delta store %r failed (%s: %s); the run's events go on",
            self.store,
            type(e).__name__,
            e,
        )
        self.store = None


async def _tokens(tail: _Tail, call: _OpenCall) -> AsyncIterator[ev.RunEvent]:
    """The call's deltas after its cursor, with a ``tokens_superseded`` before the first
    piece of a later attempt."""
    while tail.store is not None:
        try:
            rows = await tail.store.read(call.key, call.after)
        except Exception as e:
            tail.failed(e)
            return
        for row in rows:
            if call.after[0] and row.attempt > call.after[0]:
                yield call.superseded(row.attempt)
            call.after = (row.attempt, row.offset)
            yield call.token(row)
        if len(rows) < 1000:
            return


async def with_tokens(
    recorded: AsyncIterator[tuple[str, ev.RunEvent]],
    deltas: DeltaStore,
    seq_after: int,
    token_after: tuple[int, int] | None,
) -> AsyncIterator[ev.RunEvent]:
    """``recorded`` (execution id, event) pairs with the token events of open calls merged
    in; events at or before ``seq_after`` (and tokens at or before ``token_after`` of the
    call started at ``seq_after``) are not yielded."""
    queue: asyncio.Queue[tuple[str, ev.RunEvent] | BaseException | None] = asyncio.Queue()

    async def pump() -> None:
        try:
            async for item in recorded:
                await queue.put(item)
            await queue.put(None)
        except BaseException as e:  # handed to the consumer, which raises it
            await queue.put(e)
            if isinstance(e, asyncio.CancelledError):
                raise

    tail = _Tail(deltas)
    producer = asyncio.create_task(pump())
    waiting: asyncio.Task[tuple[str, ev.RunEvent] | BaseException | None] | None = None
    open_calls: dict[str, _OpenCall] = {}
    try:
        while True:
            if open_calls and tail.store is not None and (waiting is not None or queue.empty()):
                # Caught up with the history, and calls are streaming: tail the store.
                try:
                    version = await tail.store.version()
                except Exception as e:
                    tail.failed(e)
                    continue
                for call in list(open_calls.values()):
                    async for token in _tokens(tail, call):
                        yield token
                if tail.store is None:
                    continue
                if waiting is None:
                    waiting = asyncio.create_task(queue.get())
                changed = asyncio.create_task(tail.store.wait_changed(version, _WAIT_SECONDS))
                await asyncio.wait({waiting, changed}, return_when=asyncio.FIRST_COMPLETED)
                if not changed.done():
                    changed.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await changed
                elif changed.exception() is not None:
                    tail.failed(changed.exception())  # type: ignore[arg-type]
                if not waiting.done():
                    continue  # the store changed: read it again (the wait stays pending)
                item = waiting.result()
                waiting = None
            elif waiting is not None:
                item = await waiting
                waiting = None
            else:
                item = await queue.get()
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            execution, event = item
            match event:
                case ev.ModelCallStarted():
                    resume = token_after if event.seq == seq_after and token_after else (0, -1)
                    open_calls[event.call_id] = _OpenCall(
                        event, CallKey(execution, event.call_id), resume
                    )
                case ev.MessageRecorded() if (
                    event.message.role == "assistant" and event.seq > seq_after
                ):
                    # A reply was recorded: its pieces come before it.
                    for call in list(open_calls.values()):
                        async for token in _tokens(tail, call):
                            yield token
                case ev.ModelCallFinished() if event.call_id in open_calls:
                    call = open_calls.pop(event.call_id)
                    if event.seq > seq_after:
                        # Everything the worker wrote is in the store by now.
                        async for token in _tokens(tail, call):
                            yield token
                        if call.after[0] and call.after[0] < event.attempts:
                            yield call.superseded(event.attempts)
                case ev.RunFinished() | ev.ContinuedAsNew():
                    open_calls.clear()
                case _:
                    pass
            if event.seq > seq_after:
                yield event
    finally:
        for task in (waiting, producer):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
