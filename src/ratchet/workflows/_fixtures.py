"""Eval replay: tool calls answered from a recorded run's results, not by the tools.

Only runs started with ``RunInput.fixtures`` (an eval's cases) take this path; the
answer is made in the workflow, from its input alone, so no activity is scheduled,
nothing runs on a worker, and replay is deterministic.
"""

from __future__ import annotations

from typing import Any

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from .._tool_fixtures import ToolFixtures, fixture_key
    from ..messages import Message, ToolCall

__all__ = ["FixtureReplay"]


class FixtureReplay:
    """Answers a run's tool calls from its fixtures, in recorded order per call.

    The order restarts with each execution of a run that continues as new (an eval
    case's run is short; a long one sees the recorded results from the first again).
    """

    def __init__(self, fixtures: ToolFixtures) -> None:
        self._recorded = fixtures.by_key()
        self._used: dict[str, int] = {}

    def answer(self, call: ToolCall, arguments: dict[str, Any]) -> Message:
        key = fixture_key(call.name, arguments)
        recorded = self._recorded.get(key)
        if not recorded:
            # The run's history shows it as a rejected call (ratchet.events).
            return Message.tool(call, ToolFixtures.missing(call.name), is_error=True)
        n = self._used.get(key, 0)
        self._used[key] = n + 1
        # More calls than were recorded: the last result again (the tool's latest word).
        result = recorded[min(n, len(recorded) - 1)]
        return Message.tool(call, result.content, is_error=result.is_error)
