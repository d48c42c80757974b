"""Stateful MCP servers: each run's session lives on one worker, reached through that
worker's own task queue (the pin). The pin is an activity's result, so it is recorded
and replays; it is carried over continue-as-new."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from .._protocol import PIN_SESSION_ACTIVITY, Carried, SessionPin, SessionPinRequest

__all__ = ["MCPPins"]


class MCPPins:
    """The task queue holding the run's session with each stateful MCP server."""

    def __init__(self, carried: Carried | None) -> None:
        self.queues: dict[str, str] = dict(carried.mcp_sessions) if carried else {}
        self._pinning: dict[str, asyncio.Task[str]] = {}
        self._pins = 0

    async def queue(self, agent: str, server: str) -> str:
        """The pinned worker's queue for ``server``; pins one first if needed (the calls
        of one turn wait for the same pin)."""
        if server in self.queues:
            return self.queues[server]
        task = self._pinning.get(server)
        if task is None:
            self._pins += 1
            task = asyncio.create_task(self._pin(agent, server, self._pins))
            self._pinning[server] = task
        return await task

    def lost(self, server: str, queue: str) -> None:
        """The worker holding the session is gone: the next call pins a new one."""
        if self.queues.get(server) == queue:
            del self.queues[server]
        self._pinning.pop(server, None)

    def failed(self, server: str) -> None:
        """The pin failed: the next call tries again."""
        self._pinning.pop(server, None)

    async def _pin(self, agent: str, server: str, n: int) -> str:
        pin: SessionPin = await workflow.execute_activity(
            PIN_SESSION_ACTIVITY,
            SessionPinRequest(agent=agent, server=server),
            result_type=SessionPin,
            activity_id=f"mcp-pin-{server}-{n}",
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=RetryPolicy(maximum_attempts=5),
            summary=f"pin a session with MCP server {server}",
        )
        self.queues[server] = pin.task_queue
        return pin.task_queue
