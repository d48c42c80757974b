"""``/v1/keys``: API keys, for admins. A tenant's admin manages only its tenant's keys."""

from __future__ import annotations

from fastapi import APIRouter

from .._keys import ApiKey, KeyStore
from .._problems import PROBLEM_RESPONSES, ProblemError
from .._roles import Principal
from .._schemas import KeyCreate, KeyCreated, KeyInfo
from ._deps import Admin, Ctx

__all__ = ["router"]

router = APIRouter(prefix="/v1", tags=["keys"], responses=PROBLEM_RESPONSES)


def _store(keys: KeyStore | None) -> KeyStore:
    if keys is None:
        raise ProblemError(
            409, "ConfigError", "API keys are off on this server (it trusts OIDC tokens only)"
        )
    return keys


def _info(key: ApiKey) -> KeyInfo:
    return KeyInfo(
        id=key.id,
        name=key.name,
        role=key.role,
        tenant=key.tenant,
        created=key.created,
        revoked=key.revoked,
    )


@router.post("/keys", status_code=201, summary="Create an API key (its secret is shown once)")
async def create_key(body: KeyCreate, ctx: Ctx, principal: Admin) -> KeyCreated:
    tenant = body.tenant
    if principal.tenant is not None:
        if tenant not in (None, principal.tenant):
            raise ProblemError(
                403, "Forbidden", f"an admin of tenant {principal.tenant!r} makes keys for it only"
            )
        tenant = principal.tenant
    key, secret = _store(ctx.auth.keys).create(body.name, body.role, tenant)
    return KeyCreated(**_info(key).model_dump(), key=secret)


@router.get("/keys", summary="List API keys (never their secrets)")
async def list_keys(ctx: Ctx, principal: Admin) -> list[KeyInfo]:
    return [_info(k) for k in _store(ctx.auth.keys).list() if _visible(principal, k)]


@router.delete("/keys/{key_id}", summary="Revoke an API key; it stops working at once")
async def revoke_key(key_id: str, ctx: Ctx, principal: Admin) -> KeyInfo:
    store = _store(ctx.auth.keys)
    key = store.get(key_id)
    if key is None or not _visible(principal, key):
        raise ProblemError(
            404, "NotFound", f"no API key with id {key_id!r}; GET /v1/keys lists them"
        )
    revoked = store.revoke(key_id)
    assert revoked is not None
    return _info(revoked)


def _visible(principal: Principal, key: ApiKey) -> bool:
    return principal.tenant is None or key.tenant == principal.tenant
