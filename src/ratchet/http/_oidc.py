"""OIDC/JWT bearer tokens, verified against the identity provider's JWKS.

The signature is checked with the provider's published keys (fetched from the JWKS
URL and cached), then the issuer, the audience and the expiry. The role and the
tenant come from claims the deployment names, so any provider that can put a claim
in its access tokens works (Keycloak, Auth0, Okta, Entra ID, Dex...).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import jwt

from ..errors import ConfigError
from ._roles import ROLES, Principal, Role, check_tenant

__all__ = ["OidcSettings", "OidcVerifier", "TokenRefused", "looks_like_jwt"]


@dataclass(frozen=True)
class OidcSettings:
    """How to trust bearer tokens of an OIDC provider."""

    jwks_url: str
    """The provider's JWKS document, e.g. ``https://idp.example.com/.well-known/jwks.json``."""
    issuer: str
    """The ``iss`` every token must carry."""
    audience: str
    """The ``aud`` every token must carry (this API's client id or resource name)."""
    role_claim: str = "ratchet_role"
    """The claim holding the role: one role, or a list of which the strongest counts
    (names that are not ratchet roles are ignored, e.g. a provider's own groups)."""
    tenant_claim: str = "ratchet_tenant"
    """The claim binding the token to a tenant; absent: every tenant's runs."""
    principal_claim: str = "sub"
    """The claim naming the caller (recorded on approvals), e.g. ``email``."""
    default_role: Role | None = None
    """The role of a token without a role claim (None: such a token is refused)."""
    algorithms: Sequence[str] = field(default=("RS256", "ES256", "PS256", "EdDSA"))
    """Signature algorithms accepted (never ``none``, never HMAC: the key is public)."""
    leeway_seconds: float = 30.0
    """Clock skew tolerated on ``exp``, ``nbf`` and ``iat``."""


def looks_like_jwt(token: str) -> bool:
    """A compact JWS: three base64url parts (an API key has none of its dots)."""
    return token.count(".") == 2 and token.startswith("eyJ")


class OidcVerifier:
    """Verifies bearer tokens; the JWKS is fetched lazily and cached (5 min)."""

    def __init__(self, settings: OidcSettings) -> None:
        for algorithm in settings.algorithms:
            if algorithm.lower() == "none" or algorithm.upper().startswith("HS"):
                raise ConfigError(
                    f"OIDC algorithm {algorithm!r} is not allowed: tokens must be signed "
                    "with the provider's private key (RS256, ES256, PS256, EdDSA)"
                )
        self.settings = settings
        self._jwks = jwt.PyJWKClient(settings.jwks_url, cache_jwk_set=True, lifespan=300)

    async def verify(self, token: str) -> tuple[Principal, float | None] | None:
        """The principal a valid token names and its expiry (epoch seconds), or None.

        Runs in a thread: fetching the JWKS is blocking I/O.
        """
        claims = await asyncio.to_thread(self._claims, token)
        if claims is None:
            return None
        return self._principal(claims), claims.get("exp")

    def _claims(self, token: str) -> dict[str, Any] | None:
        s = self.settings
        try:
            key = self._jwks.get_signing_key_from_jwt(token)
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=list(s.algorithms),
                audience=s.audience,
                issuer=s.issuer,
                leeway=s.leeway_seconds,
                options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.PyJWTError:
            return None
        return claims

    def _principal(self, claims: dict[str, Any]) -> Principal:
        s = self.settings
        role = _strongest(claims.get(s.role_claim)) or s.default_role
        name = claims.get(s.principal_claim)
        tenant = claims.get(s.tenant_claim)
        if role is None:
            raise TokenRefused(f"the token has no ratchet role in its {s.role_claim!r} claim")
        if not isinstance(name, str) or not name:
            raise TokenRefused(f"the token has no {s.principal_claim!r} claim naming the caller")
        if tenant is not None:
            try:
                check_tenant(str(tenant))
            except ConfigError as e:
                raise TokenRefused(f"the token's {s.tenant_claim!r} claim: {e}") from None
        return Principal(
            name=name, role=role, tenant=None if tenant is None else str(tenant), via="oidc"
        )


class TokenRefused(ConfigError):
    """A token that verifies but cannot act here (no role, no name)."""


def _strongest(value: object) -> Role | None:
    names = value if isinstance(value, list) else [value]
    found = [r for r in ROLES if r in names]
    return found[-1] if found else None
