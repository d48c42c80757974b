"""Recorded tool results an eval replays instead of calling the real tools.

An eval case (``ratchet.evals``) runs a recorded run's prompt again against a changed
agent. Its run carries the tool results the recorded run got (``RunInput.fixtures``);
the workflow answers each tool call from them (``workflows/_fixtures.py``), so no tool
runs, nothing has side effects, and every case sees the inputs it saw before.

A call is matched by its tool's name and its arguments as canonical JSON. A call
made again with the same arguments gets the next recorded result (the last one once
they are used up); a call with no recorded result gets an error the model can read,
starting with :data:`NO_RECORDED_RESULT`, and no tool runs.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict

__all__ = ["NO_RECORDED_RESULT", "RecordedToolCall", "ToolFixtures", "fixture_key"]

NO_RECORDED_RESULT = "error: no recorded result for tool"
"""How the tool message of a call the recorded run never made starts."""


def fixture_key(tool: str, arguments: dict[str, Any]) -> str:
    """The key a call is matched by: its tool and its arguments as canonical JSON."""
    return tool + "\x00" + json.dumps(arguments, sort_keys=True, separators=(",", ":"))


class RecordedToolCall(BaseModel):
    """One tool call of a recorded run, and the tool message the model got for it."""

    model_config = ConfigDict(frozen=True)

    tool: str
    arguments: dict[str, Any]
    """The schema-checked arguments (``ToolCallStarted.arguments``)."""
    content: str
    """The tool message's text, as the model read it."""
    is_error: bool = False


class ToolFixtures(BaseModel):
    """The tool results a run replays instead of calling its tools (an eval case's)."""

    model_config = ConfigDict(frozen=True)

    calls: list[RecordedToolCall] = []
    """In the order the recorded run made them."""
    source_run: str | None = None
    """The recorded run they come from."""

    def by_key(self) -> dict[str, list[RecordedToolCall]]:
        """The recorded results of each (tool, arguments), in recorded order."""
        out: dict[str, list[RecordedToolCall]] = {}
        for c in self.calls:
            out.setdefault(fixture_key(c.tool, c.arguments), []).append(c)
        return out

    @staticmethod
    def missing(tool: str) -> str:
        """The tool message of a call with no recorded result."""
        return (
            f"{NO_RECORDED_RESULT} {tool!r} with these arguments in eval replay (the "
            "recorded run never made this call); no tool ran."
        )
