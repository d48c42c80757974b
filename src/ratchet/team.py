"""Agents working together: sub-agents called as tools, and handoffs.

- **Sub-agent** (:meth:`ratchet.Agent.as_tool`): the parent's model calls another
  agent like a tool. The parent starts that agent's run as a Temporal child workflow
  (its own history, its own continue-as-new) and waits for it durably; the parent's
  history holds only the child's final answer and totals. Budgets flow down (a
  child may spend at most what its parent has left), usage and cost roll up, and
  cancelling the parent cancels its children.
- **Handoff** (``Agent(handoffs=[...])``): the model hands the conversation to
  another agent, which takes over in the same run with its own instructions, tools
  and policy. Every agent a run can hand off to is recorded in its snapshot when it
  starts, so a handoff reaches exactly the agent the run started with, whatever the
  workers host by then.

Both reach the model as tools: a sub-agent as a tool named after it (one ``input``
argument, the task), a handoff as ``transfer_to_<agent>``.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from .errors import ConfigError
from .tools import ToolSpec

if TYPE_CHECKING:
    from .agent import Agent

__all__ = [
    "HANDOFF_PREFIX",
    "AgentTool",
    "Handoff",
    "handoff_message",
    "handoff_tool_name",
    "subagent_run_id",
]

HANDOFF_PREFIX = "transfer_to_"
"""Handoff tools are named ``transfer_to_<agent>`` (a '.' in the agent's name becomes
'_')."""

SUBAGENT_PARAMETERS: dict[str, Any] = {
    "type": "object",
    "properties": {
        "input": {
            "type": "string",
            "description": "The task for the agent, with everything it needs to know: "
            "it does not see this conversation.",
        }
    },
    "required": ["input"],
    "additionalProperties": False,
}
"""What the model passes a sub-agent: its task, as text."""

HANDOFF_PARAMETERS: dict[str, Any] = {
    "type": "object",
    "properties": {
        "reason": {
            "type": "string",
            "description": "Why the conversation goes to this agent (optional).",
        }
    },
    "additionalProperties": False,
}

_TOOL_NAME_RE = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_-]{0,63}$")


class AgentTool:
    """Another agent, offered to the model as a tool (:meth:`ratchet.Agent.as_tool`).

    Each call runs the agent as a child workflow of the calling run, with the call's
    ``input`` as its prompt; the tool's result is the child's final answer (a
    structured answer's JSON).
    """

    def __init__(
        self,
        agent: Agent,
        *,
        description: str,
        name: str | None = None,
        timeout: float | None = None,
    ) -> None:
        self.agent = agent
        self.name = name or agent.name.replace(".", "_")
        if not _TOOL_NAME_RE.match(self.name):
            raise ConfigError(
                f"sub-agent tool name {self.name!r} is invalid: use letters, digits, '_' "
                "or '-' (at most 64 characters, not starting with a digit); pass name=..."
            )
        if not description.strip():
            raise ConfigError(
                f"sub-agent tool {self.name!r}: describe what agent {agent.name!r} does "
                "(description=...); the model reads it to decide when to call it"
            )
        if timeout is not None and timeout <= 0:
            raise ConfigError(f"sub-agent tool {self.name!r}: timeout must be > 0 (or None)")
        self.description = description
        self.timeout = timeout

    def spec(self) -> ToolSpec:
        return ToolSpec(
            name=self.name,
            description=self.description,
            parameters=SUBAGENT_PARAMETERS,
            # 0: none of its own (the child's budgets and approval deadlines bound it).
            timeout_seconds=self.timeout or 0.0,
            max_attempts=1,
            agent=self.agent.name,
        )

    def __repr__(self) -> str:
        return f"AgentTool({self.name!r}, agent={self.agent.name!r})"


class Handoff:
    """A handoff target: ``Agent(handoffs=[Handoff(billing, description=...)])``.

    A bare agent in ``handoffs`` is the same as ``Handoff(agent)``.
    """

    def __init__(self, agent: Agent, *, description: str | None = None) -> None:
        self.agent = agent
        self.name = handoff_tool_name(agent.name)
        self.description = description or (
            f"Hand the conversation over to agent {agent.name!r}: it takes over from here, "
            "with its own instructions and tools."
        )

    def spec(self) -> ToolSpec:
        return ToolSpec(
            name=self.name,
            description=self.description,
            parameters=HANDOFF_PARAMETERS,
            handoff=self.agent.name,
        )

    def __repr__(self) -> str:
        return f"Handoff({self.agent.name!r})"


def handoff_tool_name(agent: str) -> str:
    """The tool a model calls to hand the conversation to ``agent``."""
    return HANDOFF_PREFIX + re.sub(r"[^a-zA-Z0-9_-]", "_", agent)


def handoff_message(source: str, target: str) -> str:
    """The handoff tool's result, as the model (now ``target``) reads it."""
    return f"Handed off from agent {source!r} to agent {target!r}, which takes over from here."


def subagent_run_id(parent: str, activity_id: str) -> str:
    """The child run's workflow id: stable per call, so a replay finds the same child."""
    return f"{parent}.{activity_id}"
