"""Which agents the MCP server offers, each as one MCP tool.

The agents are given (``Agent`` objects, whose instructions and output type the tool
describes, or bare names), or else discovered: the agents the workers polling the
client's task queue announce (``ratchet._hosting``), asked again every few seconds
so workers started after the server count.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import mcp_types as types

from .._hosting import hosted_agents
from .._render import shorten
from ..agent import Agent, check_agent_name
from ..client import AgentClient
from ..output import WRAP_KEY, OutputSpec

__all__ = ["AgentCatalog", "OfferedAgent"]

_REDISCOVER_SECONDS = 5.0
_FIRST_POLL_SECONDS = 5.0

PROMPT = "prompt"
RUN_ID = "run_id"

_INPUT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        PROMPT: {"type": "string", "minLength": 1, "description": "What to ask the agent."},
        RUN_ID: {
            "type": "string",
            "minLength": 1,
            "description": "The run's id (optional). Calling again with the same id and "
            "prompt returns that run's answer instead of starting another run: give one "
            "to retry a call safely, or to pick up a run after a timeout.",
        },
    },
    "required": [PROMPT],
    "additionalProperties": False,
}


@dataclass(frozen=True)
class OfferedAgent:
    """One agent as an MCP tool."""

    name: str
    instructions: str | None = None
    """None: only the name is known (``--agents``, or discovered)."""
    output: OutputSpec | None = None
    """The agent's output type, when known: the tool declares it as its output schema."""

    def tool(self) -> types.Tool:
        about = f" Its instructions: {shorten(self.instructions, 400)}" if self.instructions else ""
        return types.Tool(
            name=self.name,
            title=f"Run agent {self.name}",
            description=(
                f"Run the ratchet agent {self.name!r} on a prompt and return its answer. Each "
                "call starts a durable run (it survives restarts; read its status at "
                f"ratchet://runs/{{run_id}}); tools that need approval wait for a person.{about}"
            ),
            input_schema=_INPUT_SCHEMA,
            output_schema=self.output.parameters() if self.output else None,
            annotations=types.ToolAnnotations(
                title=f"Run agent {self.name}", read_only_hint=False, open_world_hint=True
            ),
        )

    def structured(self, data: Any) -> dict[str, Any]:
        """A structured answer as the tool's structured content (always an object: an
        answer that is none goes under ``result``, as the output schema says)."""
        wrapped = self.output.wrapped if self.output else not isinstance(data, dict)
        return {WRAP_KEY: data} if wrapped else dict(data)


class AgentCatalog:
    """The agents offered: given ones, or the task queue's hosted agents."""

    def __init__(self, client: AgentClient, agents: Sequence[Agent | str] | None) -> None:
        self.client = client
        self._fixed: dict[str, OfferedAgent] | None = None
        if agents is not None:
            self._fixed = {}
            for agent in agents:
                offered = _offered(agent)
                self._fixed[offered.name] = offered
        self._discovered: dict[str, OfferedAgent] = {}
        self._discovered_at = float("-inf")
        self._waited = False

    @property
    def discovers(self) -> bool:
        """Whether the agents are the ones the task queue's workers announce."""
        return self._fixed is None

    async def offered(self) -> list[OfferedAgent]:
        """Every agent offered, by name."""
        found = self._fixed if self._fixed is not None else await self._discover()
        return [found[name] for name in sorted(found)]

    async def find(self, name: str) -> OfferedAgent | None:
        if self._fixed is not None:
            return self._fixed.get(name)
        found = self._discovered.get(name)
        if found is None:  # maybe a worker that started since the last look
            self._discovered_at = float("-inf")
            found = (await self._discover()).get(name)
        return found

    async def _discover(self) -> dict[str, OfferedAgent]:
        if time.monotonic() - self._discovered_at > _REDISCOVER_SECONDS:
            hosting = await hosted_agents(self.client.temporal, self.client.task_queue)
            if not hosting.pollers and not self._waited:
                # Workers started with the server may not have polled yet; many clients
                # list tools once, when they connect: give the workers a moment, once.
                self._waited = True
                deadline = time.monotonic() + _FIRST_POLL_SECONDS
                while not hosting.pollers and time.monotonic() < deadline:
                    await asyncio.sleep(0.25)
                    hosting = await hosted_agents(self.client.temporal, self.client.task_queue)
            self._discovered = {name: OfferedAgent(name) for name in hosting.agents}
            self._discovered_at = time.monotonic()
        return self._discovered


def _offered(agent: Agent | str) -> OfferedAgent:
    if isinstance(agent, str):
        check_agent_name(agent)
        return OfferedAgent(agent)
    return OfferedAgent(agent.name, instructions=agent.instructions, output=agent.output)
