"""What an agent offers its model: every tool, with where it comes from.

``ratchet tools AGENT`` prints it: from the agent's definition (``--app``), its MCP
servers asked live; or from the snapshot of the agent's most recent run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from temporalio.exceptions import ApplicationError

from .agent import Agent, AgentSpec
from .errors import ConfigError
from .tools import ToolSpec

__all__ = ["ListedTool", "discovered_spec", "listed_tools"]

ToolSource = Literal["function", "sub-agent", "handoff", "mcp"]


@dataclass(frozen=True)
class ListedTool:
    """One tool as the model sees it, and its source."""

    name: str
    source: ToolSource
    description: str
    parameters: dict[str, Any]
    detail: str
    """``mcp server NAME (tool T)``, ``runs agent NAME``, ``hands off to NAME``, or the
    function tool's flags (side effects, timeout, attempts)."""


def listed_tools(spec: AgentSpec) -> list[ListedTool]:
    """The tools of a snapshot, in the order the model gets them."""
    return [_listed(t) for t in spec.tools]


async def discovered_spec(agent: Agent) -> AgentSpec:
    """The agent's snapshot as a run would take it now: its MCP servers' tools
    discovered live (their servers are started or connected to, then closed).

    Raises:
        ConfigError: a server cannot be reached, or its tools clash with others.
    """
    from .mcp._sessions import MCPSessions
    from .mcp._tools import discover

    spec = agent.spec()
    sessions = MCPSessions()
    taken = {t.name for t in spec.tools}
    found: list[ToolSpec] = []
    try:
        for server in agent.mcp_servers.values():
            found += await discover(sessions, agent.name, server, taken)
    except ApplicationError as e:
        raise ConfigError(str(e)) from None
    finally:
        await sessions.close()
    return spec.model_copy(update={"tools": [*spec.tools, *found]})


def _listed(t: ToolSpec) -> ListedTool:
    if t.mcp_server is not None:
        state = ", stateful" if t.mcp_stateful else ""
        source: ToolSource = "mcp"
        detail = f"mcp server {t.mcp_server} (tool {t.mcp_tool}{state})"
    elif t.agent is not None:
        source, detail = "sub-agent", f"runs agent {t.agent} as a child workflow"
    elif t.handoff is not None:
        source, detail = "handoff", f"hands the conversation off to agent {t.handoff}"
    else:
        flags = ["side effects"] if t.side_effects else []
        flags += [f"timeout {t.timeout_seconds:g} s", f"{t.max_attempts} attempts"]
        source, detail = "function", ", ".join(flags)
    return ListedTool(t.name, source, t.description, t.parameters, detail)
