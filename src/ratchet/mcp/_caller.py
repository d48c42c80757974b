"""Who calls the MCP server: the local user over stdio, an API key's holder over HTTP."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mcp.server import ServerRequestContext
from mcp.shared.exceptions import MCPError
from mcp_types import INVALID_REQUEST

from .._protocol import RunInput
from ..client import AgentClient, RunHandle
from ..errors import RunNotFound

__all__ = ["PRINCIPAL_SCOPE_KEY", "Caller", "caller_of", "visible_run"]

PRINCIPAL_SCOPE_KEY = "ratchet.principal"
"""Where the HTTP transport's authentication leaves the request's
:class:`ratchet.http.Principal`, in the ASGI scope."""


@dataclass(frozen=True)
class Caller:
    """The one calling a tool or reading a resource."""

    name: str
    tenant: str | None
    """Set: the caller starts runs of this tenant and sees only this tenant's runs."""


_LOCAL = Caller(name="local", tenant=None)


def caller_of(ctx: ServerRequestContext[Any, Any]) -> Caller:
    """The caller of a request.

    A request without an HTTP request behind it (stdio, an in-process client) comes
    from whoever started the server: it sees every run. One over HTTP must carry the
    principal that :func:`ratchet.mcp.create_mcp_http_app` authenticated.

    Raises:
        MCPError: an HTTP request nobody authenticated (the server is served over
            HTTP without the app that checks API keys).
    """
    request = ctx.request
    if request is None:
        return _LOCAL
    scope = getattr(request, "scope", None)
    principal = scope.get(PRINCIPAL_SCOPE_KEY) if isinstance(scope, dict) else None
    if principal is None:
        raise MCPError(
            INVALID_REQUEST,
            "unauthenticated HTTP request: serve ratchet's MCP server over HTTP with "
            "ratchet.mcp.create_mcp_http_app (`ratchet mcp serve --transport http`), "
            "which checks each request's API key",
        )
    return Caller(name=principal.name, tenant=principal.tenant)


async def visible_run(
    client: AgentClient, caller: Caller, run_id: str
) -> tuple[RunHandle, RunInput]:
    """The run with this id and its input, if ``caller`` may see it.

    Raises:
        RunNotFound: no such run, or another tenant's: both say the same, so a tenant
            cannot learn whether another's run id exists.
    """
    not_found = RunNotFound(f"no run with id {run_id!r}; ratchet://runs lists recent runs")
    handle = client.get(run_id)
    try:
        run_input = await handle.input()
    except (RunNotFound, ValueError):
        # ValueError: a workflow of another kind under this id (its input is no RunInput).
        raise not_found from None
    if caller.tenant is not None and run_input.tenant != caller.tenant:
        raise not_found
    return handle, run_input
