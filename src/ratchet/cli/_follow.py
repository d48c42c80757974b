"""Following a run in the terminal: its steps as they are recorded, and a live status line.

Built on the run's events (``RunHandle.events``): no polling and no worker queries,
so it works the same for a live run, a run on another machine and a closed one.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from rich.console import Console
from rich.markup import escape

from .. import events as ev
from .._render import describe_event, plural
from ..client import RunHandle
from ._common import err, out


async def follow_run(handle: RunHandle, console: Console = out) -> None:
    """Print each step of a run as it is recorded, until the run ends.

    On a terminal a live line below the steps shows the turn, the current step, the
    elapsed time and the tokens so far; elsewhere (pipes, CI logs) only the steps are
    printed, one plain line each, a call waiting for approval included.
    """
    progress = _Progress()
    live = console.status("starting…") if console.is_terminal else None
    ticker = asyncio.create_task(_tick(live, progress)) if live is not None else None
    if live is not None:
        live.start()
    try:
        async for event in handle.events():
            progress.saw(event)
            if line := describe_event(event, handle.id):
                console.print(line, markup=False)
    finally:
        if ticker is not None:
            ticker.cancel()
        if live is not None:
            live.stop()


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
            case _:
                pass

    def line(self) -> str:
        parts = [f"turn {self.turn}" if self.turn else "", self.step]
        parts.append(f"{time.monotonic() - self.started:.1f} s")
        if self.tokens:
            parts.append(plural(self.tokens, "token"))
        return " · ".join(p for p in parts if p)


async def _tick(live: Any, progress: _Progress) -> None:
    while True:
        live.update(escape(progress.line()))
        await asyncio.sleep(0.2)


async def _warn_if_no_worker(handle: RunHandle, task_queue: str) -> None:
    await asyncio.sleep(5)
    if not await handle.picked_up():
        err.print(
            f"waiting: no worker has picked up the run yet; is one running on task queue "
            f"{task_queue!r}? (`ratchet worker --app module:agent`)"
        )
