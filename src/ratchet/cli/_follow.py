"""Following a run in the terminal: its steps as they are recorded, the model's replies
as they are written, and a live status line.

Built on the run's events (``RunHandle.events``): no polling and no worker queries,
so it works the same for a live run, a run on another machine and a closed one.
"""

from __future__ import annotations

import asyncio
import time

from rich.console import Console
from rich.markup import escape
from rich.status import Status

from .. import events as ev
from .._render import answer_prefix, describe_event, describe_tool_start, plural
from ..client import RunHandle
from ._common import err, out
from ._replies import ReplyPrinter


async def follow_run(handle: RunHandle, console: Console = out, *, stream: bool = True) -> None:
    """Print each step of a run as it is recorded, until the run ends.

    Tool calls show as they start and as they finish. With ``stream`` (the default) the
    model's replies are printed as they are written, piece by piece on their step's
    line, and not again once recorded; a retried attempt's line is ended with a note
    and the new attempt starts a line of its own. Without it each reply is printed
    whole, one line, once recorded.

    On a terminal a live line below the steps shows the turn, the current step, the
    elapsed time and the tokens so far (hidden while a reply streams: it would garble
    the partial line); elsewhere (pipes, CI logs) only the steps are printed, a call
    waiting for approval included, and replies stream there too.
    """
    progress = _Progress()
    status = _StatusLine(console, progress) if console.is_terminal else None
    replies = ReplyPrinter(
        console,
        lambda token: answer_prefix(token.turn),
        line_started=status.hide if status is not None else None,
        line_ended=status.show if status is not None else None,
    )
    if status is not None:
        status.show()
    try:
        async for event in handle.events(tokens=stream):
            progress.saw(event)
            match event:
                case ev.TokenDelta():
                    replies.token(event)
                    continue
                case ev.TokensSuperseded():
                    replies.superseded(event)
                    continue
                case ev.ModelCallFinished():
                    if replies.finished(event):
                        continue  # its text streamed whole on its line
                    line: str | None = describe_event(event, handle.id)
                case ev.ToolCallStarted():
                    line = describe_tool_start(event)
                case _:
                    line = describe_event(event, handle.id)
            if line:
                replies.end_line()
                console.print(line, markup=False)
    finally:
        replies.end_line()
        if status is not None:
            status.hide()


class _StatusLine:
    """The live line below the steps on a terminal; hidden and shown again around a
    streaming reply (a fresh rich status each time: a restarted one would first erase
    the line above it)."""

    def __init__(self, console: Console, progress: _Progress) -> None:
        self._console = console
        self._progress = progress
        self._status: Status | None = None
        self._ticker: asyncio.Task[None] | None = None

    def show(self) -> None:
        if self._status is not None:
            return
        self._status = self._console.status(escape(self._progress.line()))
        self._status.start()
        self._ticker = asyncio.create_task(self._tick(self._status))

    def hide(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            self._ticker = None
        if self._status is not None:
            self._status.stop()
            self._status = None

    async def _tick(self, status: Status) -> None:
        while True:
            status.update(escape(self._progress.line()))
            await asyncio.sleep(0.2)


class _Progress:
    """What the live line shows, kept from the events seen."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.turn = 0
        self.step = "starting"
        self.tokens = 0

    def saw(self, event: ev.RunEvent) -> None:
        match event:
            case ev.ModelCallStarted():
                self.turn = event.turn
                self.step = f"model {event.model}"
            case ev.ModelCallAttemptFailed():
                self.step = f"model call retrying after attempt {event.attempt}"
            case ev.ModelCallFinished():
                self.tokens += event.usage.total_tokens
                self.step = "model answered"
            case ev.ToolCallStarted():
                self.step = f"tool {event.tool}"
            case ev.ApprovalRequested():
                self.step = f"waiting for approval of {event.approval.call_id}"
            case ev.ApprovalAnswered():
                self.step = "approval answered"
            case ev.PromptCompacted():
                self.step = "prompt shrunk to fit the context"
            case ev.TokenDelta(kind="tool_arguments") if event.tool_name:
                self.step = f"model writing a call to {event.tool_name}"
            case ev.TokenDelta(kind="text"):
                self.step = "model writing its answer"
            case _:
                pass

    def line(self) -> str:
        parts = [f"turn {self.turn}" if self.turn else "", self.step]
        parts.append(f"{time.monotonic() - self.started:.1f} s")
        if self.tokens:
            parts.append(plural(self.tokens, "token"))
        return " · ".join(p for p in parts if p)


async def _warn_if_no_worker(handle: RunHandle, task_queue: str) -> None:
    await asyncio.sleep(5)
    if not await handle.picked_up():
        err.print(
            f"waiting: no worker has picked up the run yet; is one running on task queue "
            f"{task_queue!r}? (`ratchet worker --app module:agent`)"
        )
