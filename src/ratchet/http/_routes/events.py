"""``/v1/runs/{id}/events``: a run's events as Server-Sent Events, live and resumable."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from ... import events as ev
from ...errors import ConfigError
from .._context import visible_run
from .._problems import PROBLEM_RESPONSES
from .._schemas import CURSOR, RunId
from .._sse import EventStreamResponse, keepalive_stream, run_event_frame
from ._deps import Ctx, Viewer

__all__ = ["router"]

router = APIRouter(prefix="/v1", tags=["runs"], responses=PROBLEM_RESPONSES)

_STREAM: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "text/event-stream: each run event as `id: <cursor>`, "
        "`event: <type>`, `data: <RunEvent JSON>`; comment lines keep the connection "
        "alive; the stream ends after `run_finished`.",
        "content": {"text/event-stream": {"schema": {"type": "string"}}},
    }
}


@router.get(
    "/runs/{run_id}/events",
    summary="Follow a run's events (SSE), from the start or after a cursor",
    response_class=EventStreamResponse,
    responses=_STREAM,
)
async def run_events(
    run_id: RunId,
    request: Request,
    ctx: Ctx,
    principal: Viewer,
    after: Annotated[
        str | None,
        Query(
            description="Resume after this cursor (an event's SSE id), e.g. 12 or 12:1:40.",
            pattern=CURSOR,
        ),
    ] = None,
) -> EventStreamResponse:
    """A browser's EventSource resumes by itself: on reconnection it sends the last id
    it got in the ``Last-Event-ID`` header, which wins over ``after``."""
    cursor = request.headers.get("last-event-id") or after or "0"
    try:
        ev.parse_cursor(cursor)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    handle, _ = await visible_run(ctx, principal, run_id)
    stream = keepalive_stream(
        handle.events(after=cursor, store=ctx.transcript_store),
        run_event_frame,
        keepalive=ctx.keepalive_seconds,
    )
    return EventStreamResponse(
        stream, headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    )
