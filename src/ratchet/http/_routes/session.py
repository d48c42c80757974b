"""``/v1/session`` and ``/v1/me``: the console's login, logout, and who is logged in."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

from fastapi import APIRouter, Request, Response

from .._auth import authenticator, unauthorized
from .._problems import PROBLEM_RESPONSES, ProblemError, retry_after
from .._schemas import Login, Me
from .._sessions import COOKIE_NAME, Session
from ._deps import Viewer

__all__ = ["router"]

router = APIRouter(prefix="/v1", tags=["session"], responses=PROBLEM_RESPONSES)


@router.post("/session", summary="Log in with an API key: sets the session cookie")
async def login(body: Login, request: Request, response: Response) -> Me:
    auth = authenticator(request)
    address = request.client.host if request.client else "unknown"
    wait = auth.logins.wait_seconds(address)
    if wait > 0:
        raise ProblemError(
            429,
            "TooManyRequests",
            f"too many failed logins from {address}; try again in {wait:.0f} s",
            headers=retry_after(wait),
        )
    found = await auth.verify(body.api_key)
    if found is None:
        auth.logins.failed(address)
        raise unauthorized("that key is not valid (unknown or revoked)")
    principal, expires = found
    session_id, session = auth.sessions.open(
        dataclasses.replace(principal, via="session"), expires=expires
    )
    secure = auth.settings.secure_cookies
    response.set_cookie(
        COOKIE_NAME,
        session_id,
        max_age=max(1, int(session.expires - datetime.now(UTC).timestamp())),
        path="/",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https" if secure is None else secure,
    )
    return _me(session)


@router.delete("/session", status_code=204, summary="Log out: ends the session")
async def logout(request: Request, response: Response) -> None:
    session_id = request.cookies.get(COOKIE_NAME)
    if session_id is not None:
        authenticator(request).sessions.close(session_id)
    response.delete_cookie(COOKIE_NAME, path="/", httponly=True, samesite="strict")


@router.get("/me", summary="Who the credential of this request is")
async def me(request: Request, principal: Viewer) -> Me:
    session_id = request.cookies.get(COOKIE_NAME)
    if principal.via == "session" and session_id is not None:
        session = authenticator(request).session(session_id)
        if session is not None:
            return _me(session)
    return Me(
        principal=principal.name, role=principal.role, tenant=principal.tenant, via=principal.via
    )


def _me(session: Session) -> Me:
    p = session.principal
    return Me(
        principal=p.name,
        role=p.role,
        tenant=p.tenant,
        via=p.via,
        csrf_token=session.csrf_token,
        expires=datetime.fromtimestamp(session.expires, UTC),
    )
