"""The MCP server over streamable HTTP, every request authenticated.

Each request must carry ``Authorization: Bearer <credential>``: an API key of the
HTTP API's key store (``ratchet keys create``) or, when configured, an OIDC token,
checked as ``ratchet serve`` checks them. Running agents needs the ``operator``
role; a key bound to a tenant starts and sees only that tenant's runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mcp.server import Server
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from ._caller import PRINCIPAL_SCOPE_KEY

if TYPE_CHECKING:
    # The HTTP API's stack loads only for a server served over HTTP, not with every
    # import of ratchet.mcp (workers import it for MCP tool sources).
    from ..http import AuthSettings, Principal, Role
    from ..http._auth import Authenticator

__all__ = ["MCP_PATH", "REQUIRED_ROLE", "create_mcp_http_app"]

MCP_PATH = "/mcp"
REQUIRED_ROLE: Role = "operator"


def create_mcp_http_app(
    server: Server[Any],
    *,
    auth: AuthSettings,
    host: str = "127.0.0.1",
    path: str = MCP_PATH,
) -> ASGIApp:
    """An ASGI app serving ``server`` over streamable HTTP at ``path``.

    Args:
        server: from :func:`ratchet.mcp.create_mcp_server`.
        auth: the credentials accepted (``AuthSettings(keys=KeyStore())`` for API keys).
        host: the address it is served on: on loopback, requests whose ``Host`` or
            ``Origin`` is not local are refused (DNS rebinding protection).
        path: where the MCP endpoint is.

    Raises:
        ConfigError: ``auth`` accepts no credential at all.
    """
    from ..http._auth import Authenticator

    authenticator = Authenticator(auth)
    inner = server.streamable_http_app(streamable_http_path=path, host=host)
    return _RequireBearer(inner, authenticator)


class _RequireBearer:
    """Refuses every HTTP request without a valid bearer credential of a strong enough
    role; hands the principal to the MCP handlers in the ASGI scope."""

    def __init__(self, app: ASGIApp, authenticator: Authenticator) -> None:
        self.app = app
        self.authenticator = authenticator

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        from ..http._problems import ProblemError, problem_response

        if scope["type"] != "http":  # lifespan: the MCP session manager starts there
            await self.app(scope, receive, send)
            return
        try:
            principal = await self._principal(Request(scope))
        except ProblemError as e:
            response = problem_response(e.status, e.error_type, e.detail, e.headers)
            await response(scope, receive, send)
            return
        await self.app({**scope, PRINCIPAL_SCOPE_KEY: principal}, receive, send)

    async def _principal(self, request: Request) -> Principal:
        from ..http._problems import ProblemError

        unauthorized = {"WWW-Authenticate": "Bearer"}
        header = request.headers.get("authorization")
        scheme, _, credential = (header or "").partition(" ")
        if scheme.lower() != "bearer" or not credential.strip():
            raise ProblemError(
                401,
                "Unauthorized",
                "ratchet's MCP endpoint needs an API key: send 'Authorization: Bearer "
                "<API key>' (create one with `ratchet keys create --name NAME --role "
                f"{REQUIRED_ROLE}`)",
                headers=unauthorized,
            )
        found = await self.authenticator.verify(credential.strip())
        if found is None:
            raise ProblemError(
                401,
                "Unauthorized",
                "the bearer credential is not valid (unknown, revoked or expired)",
                headers=unauthorized,
            )
        principal = found[0]
        if not principal.can(REQUIRED_ROLE):
            raise ProblemError(
                403,
                "Forbidden",
                f"running agents over MCP needs the {REQUIRED_ROLE} role; "
                f"{principal.name!r} has {principal.role}",
            )
        return principal
