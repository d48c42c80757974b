"""Single tools of agents as MCP tools (opt-in: ``ratchet mcp serve --tool AGENT.TOOL``).

Each call runs the one tool as a standalone activity (``AgentClient.call_tool``): the
tool's retries and timeout, the agent's policy, a stable idempotency key, no model.
The tool's schema comes from a worker hosting the agent, asked when the tools are
listed (kept for a minute). A tool that needs a person's approval is refused: an MCP
caller cannot name an approver. Standalone calls belong to no tenant, so callers
whose API key is a tenant's neither see nor call them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import mcp_types as types

from .._standalone_tools import hosted_agent_spec
from ..agent import check_agent_name
from ..client import AgentClient
from ..errors import ConfigError, RatchetError, ToolCallFailed
from ..tools import ToolSpec
from ._caller import Caller

__all__ = ["TOOL_CALL_META_KEY", "SingleTools"]

_log = logging.getLogger("ratchet.mcp")

TOOL_CALL_META_KEY = "ratchet/tool_call"
"""The ``_meta`` entry of a single tool's result: activity id, attempts, idempotency key."""

_RELOOK_SECONDS = 60.0


class SingleTools:
    """The single tools offered, by MCP tool name (``AGENT.TOOL``)."""

    def __init__(self, client: AgentClient, names: Sequence[str]) -> None:
        """Raises ConfigError: a name is not ``AGENT.TOOL``."""
        self.client = client
        self._wanted: dict[str, tuple[str, str]] = {}
        for name in names:
            # Tool names have no dots; agent names may.
            agent, dot, tool = name.rpartition(".")
            if not dot or not tool:
                raise ConfigError(
                    f"single tool {name!r}: name it AGENT.TOOL, e.g. support.order_status"
                )
            check_agent_name(agent)
            self._wanted[name] = (agent, tool)
        self._specs: dict[str, ToolSpec] = {}
        self._looked_at = float("-inf")

    def offers(self, name: str) -> bool:
        return name in self._wanted

    async def listed(self, caller: Caller) -> list[types.Tool]:
        """The single tools as MCP tools (none for a tenant's caller); a tool whose agent
        no worker hosts now, or that the agent lacks, is left out and logged."""
        if caller.tenant is not None or not self._wanted:
            return []
        await self._look_up()
        return [_mcp_tool(name, self._wanted[name][0], spec) for name, spec in self._specs.items()]

    async def call(
        self, caller: Caller, name: str, arguments: dict[str, Any]
    ) -> types.CallToolResult:
        agent, tool = self._wanted[name]
        if caller.tenant is not None:
            return _error(
                "ConfigError",
                f"tool {name!r} is not offered to tenant {caller.tenant!r}: a standalone tool "
                "call belongs to no tenant",
            )
        try:
            result = await self.client.call_tool(agent, tool, arguments)
        except ToolCallFailed as e:
            return _error(e.error_type, f"{e.message} (activity {e.activity_id})")
        except RatchetError as e:
            return _error(type(e).__name__, str(e))
        return types.CallToolResult(
            content=[types.TextContent(text=result.content)],
            is_error=result.is_error,
            _meta={
                TOOL_CALL_META_KEY: {
                    "activity_id": result.activity_id,
                    "attempts": result.attempts,
                    "idempotency_key": result.idempotency_key,
                }
            },
        )

    async def _look_up(self) -> None:
        if time.monotonic() - self._looked_at < _RELOOK_SECONDS:
            return
        specs: dict[str, ToolSpec] = {}
        agents = {agent for agent, _ in self._wanted.values()}
        for agent in sorted(agents):
            try:
                spec = await hosted_agent_spec(self.client.temporal, self.client.task_queue, agent)
            except ConfigError as e:
                _log.warning("single tools of agent %s are not offered: %s", agent, e)
                continue
            for name, (owner, tool) in self._wanted.items():
                if owner != agent:
                    continue
                found = spec.tool(tool)
                if found is None or found.agent or found.handoff or found.mcp_stateful:
                    # Absent, or not an activity of its own (see checked_call).
                    _log.warning("agent %s has no tool %s to call alone: not offered", agent, tool)
                else:
                    specs[name] = found
        self._specs = dict(sorted(specs.items()))
        self._looked_at = time.monotonic()


def _mcp_tool(name: str, agent: str, spec: ToolSpec) -> types.Tool:
    return types.Tool(
        name=name,
        title=f"{spec.name} of agent {agent}",
        description=(
            f"{spec.description} (Tool {spec.name!r} of ratchet agent {agent!r}, run on its "
            "own as a durable Temporal activity: retried after crashes with one idempotency "
            "key, under the agent's policy.)"
        ),
        input_schema=spec.parameters,
        annotations=types.ToolAnnotations(
            title=f"{spec.name} of agent {agent}",
            read_only_hint=not spec.side_effects,
            open_world_hint=True,
        ),
    )


def _error(error_type: str, message: str) -> types.CallToolResult:
    return types.CallToolResult(
        content=[types.TextContent(text=f"{error_type}: {message}")], is_error=True
    )
