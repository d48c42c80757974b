"""Who calls, and which agent: from the authenticated request into the A2A call context.

The A2A endpoint authenticates every request before the SDK's dispatcher reads it
(``Authorization: Bearer <API key or OIDC token>``, as ``ratchet serve``); the caller
then travels in the ``ServerCallContext`` to the request handler, which checks the
role each operation needs (``viewer`` reads, ``operator`` sends and cancels,
``approver`` answers approvals).
"""

from __future__ import annotations

from dataclasses import dataclass

from a2a.auth.user import User
from a2a.server.context import ServerCallContext
from a2a.server.routes import DefaultServerCallContextBuilder
from a2a.types import InvalidRequestError
from starlette.requests import Request

from ..http._roles import Principal, Role

__all__ = ["CALLER_SCOPE_KEY", "Caller", "CallerContextBuilder", "caller_of"]

CALLER_SCOPE_KEY = "ratchet.a2a.caller"
"""Where the endpoint leaves the :class:`Caller` in the request's ASGI scope."""


@dataclass(frozen=True)
class Caller:
    """An authenticated caller of one agent's A2A endpoint."""

    principal: Principal
    agent: str

    def require(self, role: Role, doing: str) -> None:
        """Refuse unless the caller's role includes ``role``.

        Raises:
            InvalidRequestError: the role is too weak (JSON-RPC has no "forbidden"; the
                message says which role is needed).
        """
        if not self.principal.can(role):
            raise InvalidRequestError(
                f"forbidden: {doing} needs the {role} role; {self.principal.name!r} has "
                f"{self.principal.role}",
                data={"error_type": "Forbidden"},
            )


class _PrincipalUser(User):
    def __init__(self, principal: Principal) -> None:
        self._principal = principal

    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def user_name(self) -> str:
        return self._principal.name


class CallerContextBuilder(DefaultServerCallContextBuilder):
    """The SDK's call context, with the caller the endpoint authenticated."""

    def build(self, request: Request) -> ServerCallContext:
        context = super().build(request)
        caller = request.scope.get(CALLER_SCOPE_KEY)
        if isinstance(caller, Caller):
            context.user = _PrincipalUser(caller.principal)
            context.state[CALLER_SCOPE_KEY] = caller
        return context


def caller_of(context: ServerCallContext) -> Caller:
    """The caller of a request (always set: the endpoint refuses unauthenticated ones)."""
    caller = context.state.get(CALLER_SCOPE_KEY)
    if not isinstance(caller, Caller):
        raise InvalidRequestError("unauthenticated: send 'Authorization: Bearer <API key>'")
    return caller
