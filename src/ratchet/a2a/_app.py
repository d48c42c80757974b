"""``create_a2a_app``: an ASGI application serving only the A2A endpoints
(``ratchet a2a serve``); ``ratchet serve`` adds the same routes to the HTTP API."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

from starlette.applications import Starlette
from temporalio.client import Client

from ..agent import Agent
from ..client import AgentClient
from ..http._app import APPROVAL_SECRET_ENV, approval_signer, ratchet_version
from ..http._auth import Authenticator, AuthSettings
from ..transcripts import TranscriptStore
from ._routes import A2A_PREFIX, a2a_routes

__all__ = ["create_a2a_app"]


def create_a2a_app(
    client: AgentClient | Client,
    *,
    agents: Sequence[Agent],
    auth: AuthSettings,
    descriptions: Mapping[str, str] | None = None,
    public_url: str | None = None,
    prefix: str = A2A_PREFIX,
    approval_secret: str | None = None,
    transcript_store: TranscriptStore | None = None,
) -> Starlette:
    """The A2A endpoints of ``agents`` as an ASGI application (see ``ratchet.a2a``).

    Args:
        client: the client runs are started and read with (a Temporal client is
            wrapped in an :class:`~ratchet.AgentClient` on the default task queue).
        agents: the agents it serves.
        auth: the credentials it accepts (API keys, OIDC tokens), as ``create_app``.
        descriptions: each agent's description for its card, by name.
        public_url: the server's URL as clients reach it (default: as each request
            names it).
        prefix: where the endpoints go (``/a2a/NAME``).
        approval_secret: sign approvals with this secret (authenticated approvals);
            default ``$RATCHET_APPROVAL_SECRET``.
        transcript_store: the workers' transcript store.

    Raises:
        ConfigError: no credentials are configured, agents share a name, or a
            description names no served agent.
    """
    agent_client = client if isinstance(client, AgentClient) else AgentClient(client)
    routes = a2a_routes(
        agent_client,
        agents=agents,
        authenticator=Authenticator(auth),
        descriptions=descriptions,
        public_url=public_url,
        prefix=prefix,
        sign_approval=approval_signer(approval_secret or os.environ.get(APPROVAL_SECRET_ENV)),
        transcript_store=transcript_store,
        version=ratchet_version(),
    )
    return Starlette(routes=routes)
