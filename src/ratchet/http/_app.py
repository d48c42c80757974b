"""``create_app``: the ASGI application of the HTTP API and the console."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.staticfiles import StaticFiles
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from temporalio.client import Client

from ..agent import Agent
from ..approval_proof import _key as approval_key
from ..approval_proof import sign_approval
from ..client import AgentClient
from ..errors import ConfigError
from ..transcripts import TranscriptStore
from ._auth import Authenticator, AuthSettings
from ._context import ApiContext
from ._problems import Problem, install_problem_handlers
from ._routes import ROUTERS
from ._sessions import CSRF_HEADER

__all__ = ["APPROVAL_SECRET_ENV", "CONSOLE_DIR", "approval_signer", "create_app", "ratchet_version"]

CONSOLE_DIR = Path(__file__).parent / "console"
"""The console's static files, served at ``/``."""
APPROVAL_SECRET_ENV = "RATCHET_APPROVAL_SECRET"


def create_app(
    client: AgentClient | Client,
    *,
    agents: Sequence[Agent],
    auth: AuthSettings,
    cors_origins: Sequence[str] = (),
    keepalive_seconds: float = 15.0,
    temporal_ui_url: str | None = None,
    approval_secret: str | None = None,
    transcript_store: TranscriptStore | None = None,
    console: bool = True,
    a2a: bool = True,
    a2a_descriptions: Mapping[str, str] | None = None,
    public_url: str | None = None,
) -> FastAPI:
    """The HTTP API (``/v1``) and the web console (``/``), as a FastAPI application.

    Serve it with any ASGI server (``ratchet serve`` uses uvicorn), or mount it in an
    existing application.

    Args:
        client: the client runs are started and read with (a Temporal client is
            wrapped in an :class:`~ratchet.AgentClient` on the default task queue).
        agents: the agents the API describes and starts runs of.
        auth: the credentials it accepts (API keys, OIDC tokens).
        cors_origins: browser origins allowed to call the API from other sites
            (default: none; the console is same-origin and needs none).
        keepalive_seconds: how often an idle event stream sends a keep-alive comment.
        temporal_ui_url: the Temporal Web UI's base URL, for links to runs.
        approval_secret: sign approvals with this secret (authenticated approvals:
            the workers must have the same one); default ``$RATCHET_APPROVAL_SECRET``.
        transcript_store: the workers' transcript store, to show prompts the event
            history alone cannot rebuild (after a compaction).
        console: serve the console's static files at ``/``.
        a2a: serve each agent as an A2A agent too, at ``/a2a/NAME`` (``ratchet.a2a``),
            behind the same credentials (its agent card is public).
        a2a_descriptions: each agent's description for its A2A card, by name (default:
            the first sentence of its instructions).
        public_url: the server's URL as clients reach it, for the A2A cards (default:
            the URL each request came to).

    Raises:
        ConfigError: no credentials are configured, or an approval secret is set but
            this ratchet cannot sign approvals.
    """
    agent_client = client if isinstance(client, AgentClient) else AgentClient(client)
    by_name = {a.name: a for a in agents}
    if len(by_name) != len(agents):
        raise ConfigError("two agents have the same name; each needs its own")
    app = FastAPI(
        title="ratchet",
        version=ratchet_version(),
        description="Durable AI agents on Temporal: start, watch, trace and approve runs.",
        openapi_url="/v1/openapi.json",
        # The interactive docs load their scripts from a CDN: the server stays offline.
        docs_url=None,
        redoc_url=None,
    )
    ctx = ApiContext(
        client=agent_client,
        agents=by_name,
        auth=Authenticator(auth),
        keepalive_seconds=keepalive_seconds,
        temporal_ui_url=temporal_ui_url,
        sign_approval=approval_signer(approval_secret or os.environ.get(APPROVAL_SECRET_ENV)),
        transcript_store=transcript_store,
    )
    app.state.ratchet = ctx
    install_problem_handlers(app)
    for router in ROUTERS:
        app.include_router(router)
    if a2a:
        # Imported here: the A2A SDK loads only for servers that serve A2A.
        from ..a2a import a2a_routes

        # Plain Starlette routes: the A2A endpoints are not part of the /v1 OpenAPI
        # document (their contract is A2A's), and they come before the console's
        # catch-all mount.
        app.router.routes.extend(
            a2a_routes(
                agent_client,
                agents=agents,
                authenticator=ctx.auth,
                descriptions=a2a_descriptions,
                public_url=public_url,
                sign_approval=ctx.sign_approval,
                transcript_store=transcript_store,
                version=app.version,
            )
        )
    app.openapi = partial(_openapi, app)  # type: ignore[method-assign]
    if console and CONSOLE_DIR.is_dir():
        app.mount("/", StaticFiles(directory=CONSOLE_DIR, html=True), name="console")
    if cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(cors_origins),
            allow_methods=["GET", "POST", "PUT", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "Last-Event-ID", CSRF_HEADER],
            # Cross-site requests authenticate with bearer credentials, never the cookie.
            allow_credentials=False,
        )
    app.add_middleware(_SecurityHeaders)
    return app


def approval_signer(secret: str | None) -> Callable[..., str] | None:
    """``sign_approval`` bound to ``secret`` (None without one)."""
    if not secret:
        return None
    # Checked now (a short secret fails at startup, not at the first approval).
    sign: Callable[..., str] = partial(sign_approval, approval_key(secret))
    return sign


def ratchet_version() -> str:
    """The installed ratchet's version."""
    try:
        return version("ratchet")
    except PackageNotFoundError:
        return "0"


def _openapi(app: FastAPI) -> dict[str, Any]:
    if app.openapi_schema is None:
        schema = get_openapi(
            title=app.title,
            version=app.version,
            description=app.description,
            routes=app.routes,
        )
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        components["Problem"] = Problem.model_json_schema(
            ref_template="#/components/schemas/{model}"
        )
        app.openapi_schema = schema
    return app.openapi_schema


class _SecurityHeaders:
    """Headers every response carries: no framing (a page cannot trick a click on
    Approve), no MIME sniffing, no referrer; API answers are never cached."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        api = str(scope.get("path", "")).startswith(("/v1/", "/a2a/"))

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                names = {name.lower() for name, _ in headers}
                extra = [
                    (b"x-content-type-options", b"nosniff"),
                    (b"x-frame-options", b"DENY"),
                    (b"content-security-policy", b"frame-ancestors 'none'"),
                    (b"referrer-policy", b"no-referrer"),
                ]
                if api:
                    extra.append((b"cache-control", b"no-store"))
                headers += [(k, v) for k, v in extra if k not in names]
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, with_headers)
