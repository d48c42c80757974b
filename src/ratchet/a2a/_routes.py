"""Where each agent's A2A endpoint is, and who may call it.

For each agent ``NAME`` (under ``prefix``, ``/a2a`` by default):

- ``GET /a2a/NAME/.well-known/agent-card.json``: its agent card, public;
- ``POST /a2a/NAME``: its JSON-RPC endpoint (A2A 1.0 methods, and the 0.3 names
  ``message/send``, ``message/stream``, ``tasks/get``, ``tasks/cancel``...), for
  callers with ``Authorization: Bearer <API key or OIDC token>``; anything else gets
  401 before the request is read.

So an A2A client pointed at ``https://HOST/a2a/NAME`` finds the card where it looks
for it, and the card names the same URL as the endpoint.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from a2a.server.request_handlers.response_helpers import agent_card_to_dict
from a2a.server.routes.jsonrpc_dispatcher import JsonRpcDispatcher
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from ..agent import Agent
from ..client import AgentClient
from ..errors import ConfigError
from ..http._auth import Authenticator, unauthorized
from ..http._problems import ProblemError, problem_response
from ..transcripts import TranscriptStore
from ._caller import CALLER_SCOPE_KEY, Caller, CallerContextBuilder
from ._card import agent_card
from ._handler import RunTaskHandler

__all__ = ["A2A_PREFIX", "CARD_PATH", "a2a_routes", "endpoint_url"]

A2A_PREFIX = "/a2a"
CARD_PATH = "/.well-known/agent-card.json"
"""Where A2A clients look for an agent's card, under its endpoint."""


def endpoint_url(base_url: str, agent: str, *, prefix: str = A2A_PREFIX) -> str:
    """The A2A endpoint of ``agent`` on a server at ``base_url``."""
    return f"{base_url.rstrip('/')}{prefix}/{agent}"


def a2a_routes(
    client: AgentClient,
    *,
    agents: Sequence[Agent],
    authenticator: Authenticator,
    descriptions: Mapping[str, str] | None = None,
    public_url: str | None = None,
    prefix: str = A2A_PREFIX,
    sign_approval: Callable[..., str] | None = None,
    transcript_store: TranscriptStore | None = None,
    version: str = "0",
) -> list[BaseRoute]:
    """The A2A routes of ``agents``, to add to a Starlette or FastAPI application.

    Args:
        client: starts and reads the runs.
        agents: the agents to serve.
        authenticator: checks each call's bearer credential (``ratchet.http``'s).
        descriptions: what each agent does, by name, for its card (default: the first
            sentence of its instructions).
        public_url: the server's URL as clients reach it, for the cards (default: the
            URL each card request came to).
        prefix: where the endpoints go.
        sign_approval: signs approvals (authenticated approvals), as ``create_app``.
        transcript_store: the workers' transcript store (see :class:`RunTaskHandler`).
        version: the cards' version.

    Raises:
        ConfigError: two agents share a name, or a description names no served agent.
    """
    by_name = {a.name: a for a in agents}
    if len(by_name) != len(agents):
        raise ConfigError("two agents have the same name; each needs its own")
    unknown = sorted(set(descriptions or {}) - set(by_name))
    if unknown:
        raise ConfigError(f"descriptions name agents that are not served: {', '.join(unknown)}")
    handler = RunTaskHandler(client, sign_approval=sign_approval, transcript_store=transcript_store)
    dispatcher = JsonRpcDispatcher(
        handler, context_builder=CallerContextBuilder(), enable_v0_3_compat=True
    )

    def agent_of(request: Request) -> Agent:
        name = request.path_params["agent"]
        agent = by_name.get(name)
        if agent is None:
            served = ", ".join(sorted(by_name)) or "none"
            raise ProblemError(
                404, "UnknownAgent", f"no agent named {name!r} here (A2A agents: {served})"
            )
        return agent

    async def card(request: Request) -> Response:
        try:
            agent = agent_of(request)
        except ProblemError as e:
            return problem_response(e.status, e.error_type, e.detail, e.headers)
        url = endpoint_url(public_url or str(request.base_url), agent.name, prefix=prefix)
        described = (descriptions or {}).get(agent.name)
        return JSONResponse(
            agent_card_to_dict(agent_card(agent, url, description=described, version=version))
        )

    async def rpc(request: Request) -> Response:
        try:
            agent = agent_of(request)
            header = request.headers.get("authorization")
            if header is None:
                raise unauthorized(
                    "no credentials: send 'Authorization: Bearer <API key or token>' (an "
                    "API key from `ratchet keys create`)"
                )
            principal = await authenticator.bearer(header)
        except ProblemError as e:
            return problem_response(e.status, e.error_type, e.detail, e.headers)
        request.scope[CALLER_SCOPE_KEY] = Caller(principal=principal, agent=agent.name)
        return await dispatcher.handle_requests(request)

    return [
        Route(f"{prefix}/{{agent}}{CARD_PATH}", card, methods=["GET"], name="a2a_card"),
        Route(f"{prefix}/{{agent}}", rpc, methods=["POST"], name="a2a_endpoint"),
    ]
