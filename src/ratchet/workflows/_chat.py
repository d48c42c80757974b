"""Chat: follow-up user messages, answered in arrival order, one at a time."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from .._protocol import ChatMessage

__all__ = ["Chat"]


class Chat:
    """The inbox of a chat run, the replies owed, and how the chat ends."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        """Started with ``chat=True``: the run stays open for follow-up messages."""
        self._closed = False
        self._ending = False
        self._inbox: list[tuple[int, str]] = []
        self._replies: dict[int, str] = {}
        self._answering = 0
        """The message the agent is answering (0: the run's prompt)."""
        self._sent = 0
        self._lock = asyncio.Lock()

    async def send(self, text: str) -> str:
        """Queue a message (the send update); return the agent's reply to it."""
        async with self._lock:  # FIFO: one message at a time, in arrival order
            self._sent += 1
            index = self._sent
            self._inbox.append((index, text))
            await workflow.wait_condition(lambda: index in self._replies)
            return self._replies.pop(index)

    def check(self, message: ChatMessage) -> None:
        """Refuse a message the chat cannot take (the send update's validator)."""
        if not self.enabled:
            raise ApplicationError("this run is not a chat: start it with chat=True (ratchet chat)")
        if self._closed or self._ending:
            raise ApplicationError("this chat has ended")
        if not message.text.strip():
            raise ApplicationError("the message is empty")

    def end(self) -> None:
        """Close the chat after the messages already sent are answered."""
        self._ending = True

    def reply(self, answer: str) -> None:
        """The agent's answer to the message it was answering."""
        self._replies[self._answering] = answer

    async def wait(self, idle_seconds: float, can_continue_as_new: Callable[[], bool]) -> None:
        """Until a message arrives, the chat is ended, it is idle too long or may hand over."""
        # Idle for too long: end, unless a message arrived in the same workflow task.
        with contextlib.suppress(asyncio.TimeoutError):
            await workflow.wait_condition(
                lambda: bool(self._inbox) or self._ending or can_continue_as_new(),
                timeout=timedelta(seconds=idle_seconds),
            )

    @property
    def quiet(self) -> bool:
        """No message waits and nobody ended the chat."""
        return not self._inbox and not self._ending

    def next_message(self) -> str | None:
        """The oldest waiting message; None: the chat is over (ended, or idle)."""
        if not self._inbox:
            return None
        self._answering, text = self._inbox.pop(0)
        return text

    def close(self) -> None:
        self._closed = True
