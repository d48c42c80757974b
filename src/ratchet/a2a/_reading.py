"""Reading a run as a task: as recorded now, and live from there.

Both go through ``RunHandle.events`` (the one reader of a run's history, plus the
live token stream), folded by :class:`~ratchet.a2a._view.TaskView`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from contextlib import aclosing, suppress
from typing import Any, cast

from a2a.server.events import Event

from .. import events as ev
from .._protocol import ChatReply
from ..client import RunHandle
from ..transcripts import TranscriptStore
from ._errors import a2a_error
from ._view import TaskView

__all__ = ["TaskReader"]


class TaskReader:
    """Reads runs as tasks, resolving prompts with ``store`` when the history alone
    cannot (after a compaction)."""

    def __init__(self, store: TranscriptStore | None = None) -> None:
        self._store = store

    async def fold(self, handle: RunHandle, agent: str) -> TaskView:
        """The task of a run as recorded now."""
        view = TaskView(handle.id, agent=agent)
        async for event in handle.events(follow=False, tokens=False, store=self._store):
            view.feed(event)
        return view

    async def follow(
        self, handle: RunHandle, view: TaskView, sending: asyncio.Future[ChatReply] | None
    ) -> AsyncGenerator[Event]:
        """The A2A events of the run's events after ``view.cursor``, until the task ends
        or waits for the client.

        Raises:
            A2AError: ``sending`` (a chat message on its way) failed.
        """
        events = self._events(handle, view.cursor)
        next_event: asyncio.Future[ev.RunEvent] | None = None
        try:
            while True:
                if next_event is None:
                    next_event = asyncio.ensure_future(anext(events))
                watched: set[asyncio.Future[Any]] = {next_event}
                if sending is not None and not sending.done():
                    watched.add(sending)
                await asyncio.wait(watched, return_when=asyncio.FIRST_COMPLETED)
                if sending is not None and sending.done():
                    error = None if sending.cancelled() else sending.exception()
                    if isinstance(error, Exception):
                        raise a2a_error(error)
                if not next_event.done():
                    continue
                finished, next_event = next_event, None
                try:
                    event = finished.result()
                except StopAsyncIteration:
                    return
                for out in view.feed(event):
                    yield out
                if view.settled:
                    return
        finally:
            if next_event is not None and not next_event.done():
                next_event.cancel()
                with suppress(BaseException):
                    await next_event
            await events.aclose()

    async def until_final(self, handle: RunHandle, view: TaskView, seconds: float) -> None:
        """Fold the run's next events into ``view`` until it ends, for ``seconds`` at
        most (then ``view`` is as far as the run got)."""
        with suppress(TimeoutError):
            async with (
                asyncio.timeout(seconds),
                aclosing(self._events(handle, view.cursor, tokens=False)) as stream,
            ):
                async for event in stream:
                    view.feed(event)
                    if view.final:
                        return

    def _events(
        self, handle: RunHandle, after: str, *, tokens: bool = True
    ) -> AsyncGenerator[ev.RunEvent]:
        """The run's events after ``after``, live, as a closable generator."""
        # RunHandle.events is an async generator function, typed as an iterator.
        return cast(
            "AsyncGenerator[ev.RunEvent]",
            handle.events(after=after, tokens=tokens, store=self._store),
        )
