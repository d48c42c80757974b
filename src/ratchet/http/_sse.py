"""Server-Sent Events: a stream of items, with keep-alives while nothing happens.

Each run event goes out as ``id: <cursor>``, ``event: <type>``, ``data: <JSON>``: a
browser's ``EventSource`` that loses the connection reconnects with the last ``id``
in ``Last-Event-ID``, and the stream resumes right after it. A comment line goes out
every ``keepalive`` seconds of silence, so proxies and browsers keep the connection.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import suppress
from typing import Any, TypeVar

from starlette.responses import StreamingResponse

from .. import events as ev
from ._problems import problem_of

__all__ = ["EventStreamResponse", "keepalive_stream", "run_event_frame"]

T = TypeVar("T")
_log = logging.getLogger("ratchet.http")
KEEPALIVE = ": keep-alive\n\n"


class EventStreamResponse(StreamingResponse):
    media_type = "text/event-stream"


def run_event_frame(event: ev.RunEvent) -> str:
    data = ev.RunEventAdapter.dump_json(event).decode()
    return f"id: {ev.cursor(event)}\nevent: {event.type}\ndata: {data}\n\n"


def error_frame(e: Exception) -> str:
    """The last frame of a stream that broke: an ``error`` event holding a problem."""
    status, error_type, detail, _ = problem_of(e)
    if status >= 500:
        _log.error("event stream failed", exc_info=e)
    body = {"status": status, "error_type": error_type, "detail": detail}
    return f"event: error\ndata: {json.dumps(body)}\n\n"


async def keepalive_stream(
    items: AsyncIterator[T],
    frame: Callable[[T], str],
    *,
    keepalive: float,
    on_error: Callable[[Exception], str] = error_frame,
) -> AsyncIterator[str]:
    """``items`` as SSE frames, a keep-alive comment after each ``keepalive`` seconds
    without one, and an error frame (then the end) if ``items`` fails."""
    pending: asyncio.Future[T] | None = None
    try:
        while True:
            if pending is None:
                pending = asyncio.ensure_future(anext(items))
            done, _ = await asyncio.wait({pending}, timeout=keepalive)
            if not done:
                yield KEEPALIVE
                continue
            finished, pending = pending, None
            try:
                item = finished.result()
            except StopAsyncIteration:
                return
            except Exception as e:
                yield on_error(e)
                return
            yield frame(item)
    finally:
        # The client went away (or the stream ended): stop reading the run.
        if pending is not None:
            pending.cancel()
            with suppress(BaseException):
                await pending
        aclose: Any = getattr(items, "aclose", None)
        if aclose is not None:
            with suppress(Exception):
                await aclose()
