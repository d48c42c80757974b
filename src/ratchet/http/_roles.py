"""Who is asking: roles, and the principal a request is authenticated as."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

from .._runs import TENANT_RE
from ..errors import ConfigError

__all__ = ["ROLES", "Principal", "Role", "check_role", "check_tenant"]

Role = Literal["viewer", "operator", "approver", "admin"]
"""What a credential may do; each role includes the ones before it.

- ``viewer``: read agents, runs, traces, events, pending approvals and limits;
- ``operator``: start runs, send chat messages, end chats, cancel runs;
- ``approver``: answer approvals (and raise spent budgets);
- ``admin``: change limits, manage API keys.
"""

ROLES: tuple[Role, ...] = get_args(Role)
"""Every role, weakest first."""


def check_role(role: str) -> Role:
    """``role`` if it is one of :data:`ROLES`, else a ConfigError naming them."""
    for known in ROLES:
        if role == known:
            return known
    raise ConfigError(f"unknown role {role!r}; use one of: {', '.join(ROLES)}")


def check_tenant(tenant: str) -> str:
    if not TENANT_RE.match(tenant):
        raise ConfigError(
            f"bad tenant {tenant!r}: 1-64 letters, digits, '_', '-' or '.', e.g. acme"
        )
    return tenant


@dataclass(frozen=True)
class Principal:
    """An authenticated caller."""

    name: str
    """Who: an API key's name, or a token's subject claim. Approvals record it."""
    role: Role
    tenant: str | None
    """Set: the caller sees and starts only this tenant's runs."""
    via: Literal["api_key", "oidc", "session"]
    key_id: str | None = None
    """The API key behind it (an API key, or a session opened with one)."""

    def can(self, role: Role) -> bool:
        """Whether this principal's role includes ``role``."""
        return ROLES.index(self.role) >= ROLES.index(role)

    def sees(self, tenant: str | None) -> bool:
        """Whether a run of ``tenant`` is visible to this principal."""
        return self.tenant is None or self.tenant == tenant
