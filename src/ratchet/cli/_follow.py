"""Following a run in the terminal: its steps as they are recorded, and a live status line."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from rich.console import Console
from rich.markup import escape

from .._render import describe_message
from ..client import RunHandle
from ._common import err, out


async def follow_run(handle: RunHandle, console: Console = out) -> None:
    """Print each step of a run as it is recorded.

    On a terminal a live line below the steps shows the turn, the current step, the
    elapsed time and the tokens so far; elsewhere (pipes, CI logs) only the steps are
    printed, one plain line each.
    """
    live = console.status("starting…") if console.is_terminal else None
    ticker = asyncio.create_task(_progress(handle, live)) if live is not None else None
    if live is not None:
        live.start()
    try:
        turn = 0
        async for message in handle.follow():
            if message.role == "assistant":
                turn += 1
            if line := describe_message(message, turn):
                console.print(line, markup=False)
    finally:
        if ticker is not None:
            ticker.cancel()
        if live is not None:
            live.stop()


async def _progress(handle: RunHandle, live: Any) -> None:
    started = time.monotonic()
    while True:
        try:
            s = await handle.status()
            live.update(
                escape(
                    f"turn {s.turn} · {s.step} · {time.monotonic() - started:.1f} s · "
                    f"{s.usage.total_tokens} tokens"
                )
            )
        except Exception:  # no worker yet, or the run just closed: keep the last line
            live.update(f"waiting · {time.monotonic() - started:.1f} s")
        await asyncio.sleep(0.5)


async def _warn_if_no_worker(handle: RunHandle, task_queue: str) -> None:
    await asyncio.sleep(5)
    if not await handle.picked_up():
        err.print(
            f"waiting: no worker has picked up the run yet; is one running on task queue "
            f"{task_queue!r}? (`ratchet worker --app module:agent`)"
        )
