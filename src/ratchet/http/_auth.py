"""Authentication (who is asking) and authorization (may they) for every request.

A request authenticates with ``Authorization: Bearer <credential>``, an API key or an
OIDC JWT, or with the console's session cookie. Routes declare the weakest role they
need with :func:`require`; a caller without credentials gets 401, one whose role is
too weak 403.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from fastapi import Depends, Request
from fastapi.security import APIKeyCookie, HTTPAuthorizationCredentials, HTTPBearer

from ..errors import ConfigError
from ._keys import ApiKey, KeyStore
from ._oidc import OidcSettings, OidcVerifier, TokenRefused, looks_like_jwt
from ._problems import ProblemError
from ._roles import Principal, Role
from ._sessions import COOKIE_NAME, CSRF_HEADER, LoginLimiter, Session, Sessions

__all__ = ["AuthSettings", "Authenticator", "authenticator", "require", "unauthorized"]

_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

# Declared for the OpenAPI document (the security schemes); checked by Authenticator.
_bearer = HTTPBearer(auto_error=False, description="An API key (rk_...) or an OIDC JWT.")
_cookie = APIKeyCookie(
    name=COOKIE_NAME,
    auto_error=False,
    description=f"The console's session (POST /v1/session); unsafe requests also send "
    f"{CSRF_HEADER}.",
)


@dataclass(frozen=True)
class AuthSettings:
    """Which credentials the API accepts. At least one of ``keys`` and ``oidc``."""

    keys: KeyStore | None = None
    """API keys (``ratchet keys create``)."""
    oidc: OidcSettings | None = None
    """OIDC/JWT bearer tokens of an identity provider."""
    session_ttl_seconds: float = 8 * 3600.0
    """A console session ends this long after login (or when its token expires)."""
    login_attempts: int = 5
    """Failed logins allowed per client address in ``login_window_seconds``."""
    login_window_seconds: float = 60.0
    secure_cookies: bool | None = None
    """Mark the session cookie ``Secure``: None decides per request (when it came over
    https, as the ASGI server reports it; behind a TLS proxy run uvicorn with
    ``--proxy-headers``)."""


def unauthorized(detail: str) -> ProblemError:
    return ProblemError(401, "Unauthorized", detail, headers={"WWW-Authenticate": "Bearer"})


class Authenticator:
    """Turns a request's credential into a :class:`Principal`."""

    def __init__(self, settings: AuthSettings) -> None:
        if settings.keys is None and settings.oidc is None:
            raise ConfigError(
                "the HTTP API needs a way to authenticate: AuthSettings(keys=KeyStore()) "
                "for API keys, and/or oidc=OidcSettings(...) for an identity provider"
            )
        self.settings = settings
        self.keys = settings.keys
        self.oidc = OidcVerifier(settings.oidc) if settings.oidc else None
        self.sessions = Sessions(settings.session_ttl_seconds)
        self.logins = LoginLimiter(settings.login_attempts, settings.login_window_seconds)

    async def verify(self, credential: str) -> tuple[Principal, float | None] | None:
        """The principal a bearer credential names, and when it expires; None: invalid.

        Raises:
            ProblemError: 403, a valid token that names no role or no caller.
        """
        if looks_like_jwt(credential):
            if self.oidc is None:
                return None
            try:
                return await self.oidc.verify(credential)
            except TokenRefused as e:
                raise ProblemError(403, "Forbidden", str(e)) from None
        if self.keys is not None and (key := self.keys.verify(credential)) is not None:
            return _of_key(key), None
        return None

    async def authenticate(self, request: Request) -> Principal:
        """The caller of ``request``.

        Raises:
            ProblemError: 401 without a valid credential; 403 for a cookie request
                that changes something without the session's CSRF token.
        """
        header = request.headers.get("authorization")
        if header is not None:
            return await self.bearer(header)
        session_id = request.cookies.get(COOKIE_NAME)
        if session_id is None:
            raise unauthorized(
                "no credentials: send 'Authorization: Bearer <API key or token>' or log in "
                "with POST /v1/session"
            )
        session = self.session(session_id)
        if session is None:
            raise unauthorized("the session has ended; log in again with POST /v1/session")
        if request.method not in _SAFE_METHODS:
            sent = request.headers.get(CSRF_HEADER, "")
            if not hmac.compare_digest(sent.encode(), session.csrf_token.encode()):
                raise ProblemError(
                    403,
                    "CsrfRejected",
                    f"a request authenticated by the session cookie must send the session's "
                    f"CSRF token in {CSRF_HEADER} (POST /v1/session and GET /v1/me return it)",
                )
        return session.principal

    async def bearer(self, header: str) -> Principal:
        """The caller an ``Authorization`` header value names (``Bearer <credential>``).

        Raises:
            ProblemError: 401 for another scheme or an invalid credential; 403 for a
                valid token that names no role or no caller.
        """
        scheme, _, credential = header.partition(" ")
        if scheme.lower() != "bearer" or not credential.strip():
            raise unauthorized("use 'Authorization: Bearer <API key or token>'")
        found = await self.verify(credential.strip())
        if found is None:
            raise unauthorized("the bearer credential is not valid (unknown, revoked or expired)")
        return found[0]

    def session(self, session_id: str) -> Session | None:
        """The live session with this id; a session whose API key was revoked has ended."""
        session = self.sessions.get(session_id)
        if session is None:
            return None
        key_id = session.principal.key_id
        if key_id is not None and self.keys is not None:
            key = self.keys.get(key_id)
            if key is None or key.revoked is not None:
                self.sessions.close(session_id)
                return None
        return session


def _of_key(key: ApiKey) -> Principal:
    return Principal(name=key.name, role=key.role, tenant=key.tenant, via="api_key", key_id=key.id)


def authenticator(request: Request) -> Authenticator:
    auth: Authenticator = request.app.state.ratchet.auth
    return auth


def require(role: Role) -> Callable[..., Awaitable[Principal]]:
    """A FastAPI dependency: the caller, if its role includes ``role``."""

    async def dependency(
        request: Request,
        _bearer_credential: HTTPAuthorizationCredentials | None = Depends(_bearer),  # noqa: B008
        _session_cookie: str | None = Depends(_cookie),
    ) -> Principal:
        principal = await authenticator(request).authenticate(request)
        if not principal.can(role):
            raise ProblemError(
                403,
                "Forbidden",
                f"this needs the {role} role; {principal.name!r} has {principal.role}",
            )
        return principal

    return dependency
