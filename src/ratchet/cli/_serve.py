"""`ratchet serve`: the HTTP API and the web console, with uvicorn."""

from __future__ import annotations

import ipaddress
import socket
from typing import Annotated

import typer

from .._protocol import DEFAULT_TASK_QUEUE
from ..errors import ConfigError
from ._common import Address, Namespace, TaskQueue, TranscriptStoreUrl, _run, _ui_url, err, out
from ._keys import KeysFile


@_run
async def serve(
    app: Annotated[str, typer.Option("--app", help="The agents it serves, as module:attribute.")],
    host: Annotated[str, typer.Option(help="Address to bind (loopback by default).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.", min=0, max=65535)] = 8000,
    keys: KeysFile = None,
    api_keys: Annotated[
        bool, typer.Option("--api-keys/--no-api-keys", help="Accept API keys.")
    ] = True,
    oidc_jwks_url: Annotated[
        str | None,
        typer.Option(
            envvar="RATCHET_OIDC_JWKS_URL",
            help="Accept OIDC tokens signed by the keys at this JWKS URL.",
        ),
    ] = None,
    oidc_issuer: Annotated[
        str | None, typer.Option(envvar="RATCHET_OIDC_ISSUER", help="The tokens' issuer (iss).")
    ] = None,
    oidc_audience: Annotated[
        str | None,
        typer.Option(envvar="RATCHET_OIDC_AUDIENCE", help="The tokens' audience (aud)."),
    ] = None,
    oidc_role_claim: Annotated[
        str, typer.Option(envvar="RATCHET_OIDC_ROLE_CLAIM", help="The claim holding the role.")
    ] = "ratchet_role",
    oidc_tenant_claim: Annotated[
        str,
        typer.Option(envvar="RATCHET_OIDC_TENANT_CLAIM", help="The claim holding the tenant."),
    ] = "ratchet_tenant",
    oidc_principal_claim: Annotated[
        str,
        typer.Option(
            envvar="RATCHET_OIDC_PRINCIPAL_CLAIM", help="The claim naming the caller, e.g. email."
        ),
    ] = "sub",
    cors_origin: Annotated[
        list[str] | None,
        typer.Option(help="A browser origin allowed to call the API; repeat for several."),
    ] = None,
    ui_url: Annotated[
        str | None,
        typer.Option(
            envvar="RATCHET_UI_URL",
            help="The Temporal Web UI, for links (default: the embedded server's).",
        ),
    ] = None,
    task_queue: TaskQueue = DEFAULT_TASK_QUEUE,
    address: Address = None,
    namespace: Namespace = None,
    transcript_store: TranscriptStoreUrl = None,
) -> None:
    """Serve the HTTP API (/v1) and the web console (/) for the agents of --app."""
    import uvicorn

    from .._app import load_agents
    from ..client import AgentClient
    from ..http import AuthSettings, KeyStore, OidcSettings, create_app
    from ..streaming import delta_store_for
    from ..transcripts import store_from_url

    agents = load_agents(app)
    oidc = None
    if oidc_jwks_url or oidc_issuer or oidc_audience:
        if not (oidc_jwks_url and oidc_issuer and oidc_audience):
            raise ConfigError(
                "OIDC needs all three of --oidc-jwks-url, --oidc-issuer and --oidc-audience"
            )
        oidc = OidcSettings(
            jwks_url=oidc_jwks_url,
            issuer=oidc_issuer,
            audience=oidc_audience,
            role_claim=oidc_role_claim,
            tenant_claim=oidc_tenant_claim,
            principal_claim=oidc_principal_claim,
        )
    store = KeyStore(keys) if api_keys else None
    if store is not None and not any(k.revoked is None for k in store.list()):
        err.print(
            "no API key yet: create one with `ratchet keys create --name NAME --role admin`",
            markup=False,
        )
    client = await AgentClient.connect(address, namespace=namespace, task_queue=task_queue)
    transcripts = store_from_url(transcript_store)
    # Streamed replies are read where the workers of that transcript store write them.
    client.deltas = delta_store_for(transcripts)
    api = create_app(
        client,
        agents=agents,
        auth=AuthSettings(keys=store, oidc=oidc),
        cors_origins=cors_origin or (),
        temporal_ui_url=ui_url or _ui_base(address),
        transcript_store=transcripts,
    )
    if not _loopback(host):
        err.print(
            f"serving on {host}: other machines can reach it; put it behind TLS (https), "
            "or API keys and cookies cross the network in the clear",
            markup=False,
        )
    _check_free(host, port)
    server = uvicorn.Server(
        uvicorn.Config(api, host=host, port=port, log_level="info", proxy_headers=True)
    )
    agents_named = ", ".join(a.name for a in agents)
    out.print(
        f"ratchet API for {agents_named} on http://{host}:{port}/v1 "
        f"(console at /, OpenAPI at /v1/openapi.json)",
        markup=False,
    )
    try:
        await server.serve()
    finally:
        await transcripts.close()
        if store is not None:
            store.close()


def _check_free(host: str, port: int) -> None:
    """Say a taken port in one line, before announcing the server (uvicorn would print
    the announcement, then its own traceback-like error)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as e:
            raise ConfigError(
                f"cannot serve on {host}:{port}: {e.strerror or e}; choose another port "
                "with --port (or stop what uses it)"
            ) from None


def _ui_base(address: str | None) -> str | None:
    """The Temporal Web UI's base URL, when the server is the embedded one."""
    url = _ui_url("-", address, None)
    return url.partition("/namespaces/")[0] if url else None


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
