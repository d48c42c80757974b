"""Agents for `ratchet tools` tests: a function tool, a sub-agent, a handoff and the
tools of a third-party MCP server (mcp-server-time)."""

from __future__ import annotations

import sys
from pathlib import Path

from ratchet import Agent, tool
from ratchet.mcp import MCPServer


@tool(side_effects=True)
def note(text: str) -> str:
    """Write a note.

    Args:
        text: what to write.
    """
    return "noted"


helper = Agent("tool-helper", instructions="Help.", model="openai:test")
desk = Agent("tool-desk", instructions="Desk.", model="openai:test")
clock = Agent(
    "tool-clock",
    instructions="Tell the time.",
    model="openai:test",
    tools=[
        note,
        helper.as_tool(description="Helps."),
        MCPServer.stdio(
            str(Path(sys.executable).parent / "mcp-server-time"),
            ["--local-timezone", "UTC"],
            name="time",
            prefix="time_",
            deny=["convert_time"],
        ),
    ],
    handoffs=[desk],
)
agents = [clock]
