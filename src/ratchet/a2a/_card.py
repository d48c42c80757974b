"""An agent's A2A agent card: who it is, what it can do, where and how to call it.

Served without credentials at ``<endpoint>/.well-known/agent-card.json`` (what A2A
clients fetch first); it says that every call needs ``Authorization: Bearer <key>``
(an API key from ``ratchet keys create``, or an OIDC token). The card is public, so
it shows the description given for the agent or, without one, only the first
sentence of its instructions, and its tools' names and descriptions.
"""

from __future__ import annotations

import re

from a2a.types import (
    AgentCapabilities,
    AgentCard,
    AgentInterface,
    AgentSkill,
    HTTPAuthSecurityScheme,
    SecurityRequirement,
    SecurityScheme,
    StringList,
)
from a2a.utils.constants import PROTOCOL_VERSION_0_3, PROTOCOL_VERSION_1_0, TransportProtocol

from ..agent import Agent

__all__ = ["SECURITY_SCHEME", "agent_card", "describe"]

SECURITY_SCHEME = "bearer"
"""The card's name for ratchet's credentials (API keys and OIDC tokens, as bearers)."""

_FIRST_SENTENCE = re.compile(r"^(.+?[.!?])(\s|$)", re.DOTALL)


def describe(agent: Agent, description: str | None = None) -> str:
    """``description``, else the first sentence of the agent's instructions."""
    if description and description.strip():
        return description.strip()
    text = " ".join(agent.instructions.split())
    found = _FIRST_SENTENCE.match(text)
    sentence = found.group(1) if found else text
    return sentence[:300] or f"ratchet agent {agent.name}"


def agent_card(
    agent: Agent,
    url: str,
    *,
    description: str | None = None,
    version: str = "0",
) -> AgentCard:
    """The A2A card of ``agent``, whose JSON-RPC endpoint is ``url``.

    Args:
        agent: the agent.
        url: its A2A endpoint (absolute), e.g. ``https://agents.example.com/a2a/support``.
        description: what it does, for the card (default: the first sentence of its
            instructions).
        version: the card's version (``ratchet serve`` gives ratchet's).
    """
    what = describe(agent, description)
    skills = [
        AgentSkill(
            id=agent.name,
            name=agent.name,
            description=what,
            tags=["ratchet", "agent"],
            input_modes=["text/plain", "application/json"],
            output_modes=_output_modes(agent),
        )
    ]
    for name, tool in sorted(agent.tools.items()):
        skills.append(
            AgentSkill(id=f"tool:{name}", name=name, description=tool.description, tags=["tool"])
        )
    for name, sub in sorted(agent.subagents.items()):
        skills.append(
            AgentSkill(id=f"agent:{name}", name=name, description=sub.description, tags=["agent"])
        )
    return AgentCard(
        name=agent.name,
        description=what,
        version=version,
        # One endpoint speaks both: A2A 1.0, and 0.3 (message/send, tasks/get...)
        # for older clients, which read the card's 0.3 fields.
        supported_interfaces=[
            AgentInterface(
                url=url, protocol_binding=TransportProtocol.JSONRPC.value, protocol_version=v
            )
            for v in (PROTOCOL_VERSION_1_0, PROTOCOL_VERSION_0_3)
        ],
        capabilities=AgentCapabilities(streaming=True, push_notifications=False),
        security_schemes={
            SECURITY_SCHEME: SecurityScheme(
                http_auth_security_scheme=HTTPAuthSecurityScheme(
                    scheme="Bearer",
                    description="A ratchet API key (rk_..., `ratchet keys create`) or an "
                    "OIDC token of the server's identity provider.",
                )
            )
        },
        security_requirements=[SecurityRequirement(schemes={SECURITY_SCHEME: StringList()})],
        default_input_modes=["text/plain", "application/json"],
        default_output_modes=_output_modes(agent),
        skills=skills,
    )


def _output_modes(agent: Agent) -> list[str]:
    return ["text/plain", "application/json"] if agent.output is not None else ["text/plain"]
