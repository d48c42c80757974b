"""``POST /v1/agui/{agent}``: the AG-UI protocol, so AG-UI front-ends can run an agent.

The thread is a chat run whose id is the AG-UI ``threadId``: the first AG-UI run of a
thread starts it with the last user message; each later one sends the last user
message to it. The response streams the agent's work until it answers (see
``ratchet.http._agui`` for the event mapping). Front-end tools and state in the input
are not used: the agent's own tools run on the workers.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import suppress
from typing import Any

from ag_ui.core import BaseEvent, RunAgentInput, RunErrorEvent, RunStartedEvent
from ag_ui.core.types import TextPart, UserMessage
from ag_ui.encoder import EventEncoder
from fastapi import APIRouter

from ... import events as ev
from ..._protocol import ChatReply
from ...client import RunHandle
from ...errors import RunNotFound
from .._agui import AguiTranslator, answers_turn
from .._context import ApiContext, visible_run
from .._problems import PROBLEM_RESPONSES, ProblemError, problem_of
from .._roles import Principal
from .._schemas import AgentName, StartRun
from .._sse import EventStreamResponse, keepalive_stream
from ._deps import Ctx, Operator
from .runs import start_visible_run

__all__ = ["router"]

router = APIRouter(prefix="/v1", tags=["ag-ui"], responses=PROBLEM_RESPONSES)

_STREAM: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "text/event-stream of AG-UI events (`data: <event JSON>`), from "
        "RUN_STARTED to RUN_FINISHED or RUN_ERROR.",
        "content": {"text/event-stream": {"schema": {"type": "string"}}},
    }
}


@router.post(
    "/agui/{agent}",
    summary="Run an agent with the AG-UI protocol (a thread is a chat run)",
    response_class=EventStreamResponse,
    responses=_STREAM,
)
async def agui_run(
    agent: AgentName, body: RunAgentInput, ctx: Ctx, principal: Operator
) -> EventStreamResponse:
    ctx.agent(agent)
    prompt = _last_user_text(body)
    handle, cursor, message = await _thread(ctx, principal, agent, body.thread_id, prompt)
    encoder = EventEncoder()
    translator = AguiTranslator(body.thread_id, body.run_id)
    stream = keepalive_stream(
        _turn(translator, handle, cursor, message),
        encoder.encode,
        keepalive=ctx.keepalive_seconds,
        on_error=lambda e: encoder.encode(_run_error(e)),
    )
    return EventStreamResponse(
        stream,
        media_type=encoder.get_content_type(),
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


def _last_user_text(body: RunAgentInput) -> str:
    for message in reversed(body.messages):
        if not isinstance(message, UserMessage):
            continue
        content = message.content
        if isinstance(content, str):
            text = content
        else:
            text = "\n".join(p.text for p in content if isinstance(p, TextPart))
        if text.strip():
            return text
    raise ProblemError(400, "ConfigError", "the input has no user message with text to send")


async def _thread(
    ctx: ApiContext, principal: Principal, agent: str, thread_id: str, prompt: str
) -> tuple[RunHandle, str, str | None]:
    """The thread's run, the cursor to stream after, and the message to send it (None:
    the run was just started with it)."""
    try:
        handle, run_input = await visible_run(ctx, principal, thread_id)
    except RunNotFound:
        started = await start_visible_run(
            ctx, principal, StartRun(agent=agent, prompt=prompt, id=thread_id, chat=True)
        )
        return ctx.client.get(started.id), "0", None
    if run_input.agent != agent or not run_input.chat:
        raise ProblemError(
            409,
            "ConfigError",
            f"thread {thread_id!r} is a run of agent {run_input.agent!r}"
            f"{'' if run_input.chat else ' that is not a chat'}; use a new threadId",
        )
    last = "0"
    async for event in handle.events(follow=False, tokens=False):
        last = ev.cursor(event)
    return handle, last, prompt


async def _turn(
    translator: AguiTranslator, handle: RunHandle, cursor: str, message: str | None
) -> AsyncIterator[BaseEvent]:
    """The AG-UI events of one turn: from sending ``message`` to the agent's answer."""
    yield RunStartedEvent(thread_id=translator.thread_id, run_id=translator.run_id)
    events = handle.events(after=cursor)
    sending: asyncio.Future[ChatReply] | None = (
        asyncio.ensure_future(handle.send(message)) if message is not None else None
    )
    next_event: asyncio.Future[ev.RunEvent] | None = None
    try:
        while True:
            if next_event is None:
                next_event = asyncio.ensure_future(anext(events))
            watched: set[asyncio.Future[object]] = {next_event}  # type: ignore[arg-type]
            if sending is not None and not sending.done():
                watched.add(sending)  # type: ignore[arg-type]
            await asyncio.wait(watched, return_when=asyncio.FIRST_COMPLETED)
            if sending is not None and sending.done() and (error := sending.exception()):
                yield _run_error(error)
                return
            if not next_event.done():
                continue
            finished, next_event = next_event, None
            try:
                event = finished.result()
            except StopAsyncIteration:
                return
            for out in translator.translate(event):
                yield out
            if isinstance(event, ev.RunFinished):
                return
            if answers_turn(event):
                assert isinstance(event, ev.ModelCallFinished)
                for out in translator.finish(event):
                    yield out
                return
    finally:
        for task in (next_event, sending):
            if task is not None and not task.done():
                task.cancel()
                with suppress(BaseException):
                    await task
        closing: Any = events  # an async generator (typed as its iterator)
        with suppress(Exception):
            await closing.aclose()


def _run_error(e: BaseException) -> RunErrorEvent:
    if not isinstance(e, Exception):
        return RunErrorEvent(message=str(e) or type(e).__name__, code="InternalError")
    _, error_type, detail, _ = problem_of(e)
    return RunErrorEvent(message=detail, code=error_type)
