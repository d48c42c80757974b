"""The activities that set a run up: snapshot its agent (discovering MCP tools),
refresh MCP tools, pin a stateful MCP session, and hand the prompt off to another agent.
"""

from __future__ import annotations

from temporalio import activity
from temporalio.exceptions import ApplicationError

from .._protocol import (
    HAND_OFF_ACTIVITY,
    PIN_SESSION_ACTIVITY,
    REFRESH_TOOLS_ACTIVITY,
    SNAPSHOT_ACTIVITY,
    AgentSpec,
    HandoffRequest,
    HandoffResult,
    SessionPin,
    SessionPinRequest,
    SnapshotRequest,
    ToolsRefresh,
    ToolsRefreshRequest,
)
from ..agent import Agent
from ..errors import ConfigError
from ..messages import handed_over, opening_messages
from ..tools import ToolSpec
from ..transcripts import save_messages, save_tools
from ._base import ActivitiesBase

__all__ = ["AgentSetupActivities"]


class AgentSetupActivities(ActivitiesBase):
    """Snapshots, MCP tool discovery and session pins, handoffs."""

    @activity.defn(name=REFRESH_TOOLS_ACTIVITY)
    async def refresh_mcp_tools(self, request: ToolsRefreshRequest) -> ToolsRefresh:
        """Discover the tools of some of an agent's MCP servers again."""
        from ..mcp._tools import discover

        agent = self._agent(request.agent)
        taken = {t.name for t in request.keep}
        tools = list(request.keep)
        for name in request.servers:
            server = agent.mcp_servers.get(name)
            if server is None:
                raise ApplicationError(
                    f"agent {agent.name!r} has no MCP server named {name!r} on this worker "
                    "any more; its tools cannot be refreshed",
                    type="ConfigError",
                    non_retryable=True,
                )
            tools += await discover(self.mcp, agent.name, server, taken)
        ref = await save_tools(self.store, tools) if request.store and tools else None
        return ToolsRefresh(tools=tools, tools_ref=ref)

    @activity.defn(name=PIN_SESSION_ACTIVITY)
    async def pin_mcp_session(self, request: SessionPinRequest) -> SessionPin:
        """Take a run's session with a stateful MCP server: this worker will hold it."""
        if self.session_queue is None:
            raise ApplicationError(
                f"this worker has no task queue of its own for MCP sessions (agent "
                f"{request.agent!r}, server {request.server!r}); build it with create_worker",
                type="ConfigError",
                non_retryable=True,
            )
        return SessionPin(task_queue=self.session_queue)

    @activity.defn(name=SNAPSHOT_ACTIVITY)
    async def snapshot_agent(self, request: SnapshotRequest) -> AgentSpec:
        """Record the agent's current definition; the run uses only this snapshot.

        The tools of the agent's MCP servers are discovered here, so the snapshot
        records them and a replay never contacts a server.
        """
        agent = self._agent(request.agent)
        try:
            spec = agent.spec(model=request.model)
        except ConfigError as e:
            raise ApplicationError(str(e), type="ConfigError", non_retryable=True) from e
        self._provider(spec.model)
        for member in spec.team.values():
            self._provider(member.model)
        spec = await self._with_mcp_tools(agent, spec)
        if spec.team:
            team = {
                name: await self._with_mcp_tools(self._agent(name), member)
                for name, member in spec.team.items()
            }
            spec = spec.model_copy(update={"team": team})
        if request.prompt is not None:
            # The same messages the workflow opens the transcript with (same hashes).
            opening = opening_messages(spec.instructions, request.prompt)
            await save_messages(self.store, None, opening)
            # Stored once: model calls carry a reference, not every schema again.
            spec = await self._tools_stored(spec)
            if spec.team:
                team = {name: await self._tools_stored(m) for name, m in spec.team.items()}
                spec = spec.model_copy(update={"team": team})
        return spec

    async def _with_mcp_tools(self, agent: Agent, spec: AgentSpec) -> AgentSpec:
        if not agent.mcp_servers:
            return spec
        from ..mcp._tools import discover

        taken = {t.name for t in spec.tools}
        found: list[ToolSpec] = []
        for server in agent.mcp_servers.values():
            found += await discover(self.mcp, agent.name, server, taken)
        return spec.model_copy(update={"tools": [*spec.tools, *found]})

    async def _tools_stored(self, spec: AgentSpec) -> AgentSpec:
        if not spec.tools:
            return spec
        return spec.model_copy(update={"tools_ref": await save_tools(self.store, spec.tools)})

    @activity.defn(name=HAND_OFF_ACTIVITY)
    async def hand_off(self, request: HandoffRequest) -> HandoffResult:
        """Restart the prompt under the handoff target's instructions, in the store."""
        prompt = await self._prompt(request.head, request.appended)
        head = await save_messages(self.store, None, handed_over(prompt, request.instructions))
        assert head is not None  # a handed-over prompt has its system message
        return HandoffResult(head=head)
