"""`ratchet serve`: the HTTP API, the web console and the A2A endpoints, with uvicorn;
and what every serving command shares (credentials, binding, the server loop)."""

from __future__ import annotations

import ipaddress
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from .._protocol import DEFAULT_TASK_QUEUE
from ..errors import ConfigError
from ._common import Address, Namespace, TaskQueue, TranscriptStoreUrl, _run, _ui_url, err, out
from ._keys import KeysFile

if TYPE_CHECKING:
    from ..http import AuthSettings, KeyStore

AppSpec = Annotated[str, typer.Option("--app", help="The agents it serves, as module:attribute.")]
Host = Annotated[str, typer.Option(help="Address to bind (loopback by default).")]
Port = Annotated[int, typer.Option(help="Port to listen on.", min=0, max=65535)]
ApiKeys = Annotated[bool, typer.Option("--api-keys/--no-api-keys", help="Accept API keys.")]
OidcJwksUrl = Annotated[
    str | None,
    typer.Option(
        envvar="RATCHET_OIDC_JWKS_URL",
        help="Accept OIDC tokens signed by the keys at this JWKS URL.",
    ),
]
OidcIssuer = Annotated[
    str | None, typer.Option(envvar="RATCHET_OIDC_ISSUER", help="The tokens' issuer (iss).")
]
OidcAudience = Annotated[
    str | None, typer.Option(envvar="RATCHET_OIDC_AUDIENCE", help="The tokens' audience (aud).")
]
OidcRoleClaim = Annotated[
    str, typer.Option(envvar="RATCHET_OIDC_ROLE_CLAIM", help="The claim holding the role.")
]
OidcTenantClaim = Annotated[
    str, typer.Option(envvar="RATCHET_OIDC_TENANT_CLAIM", help="The claim holding the tenant.")
]
OidcPrincipalClaim = Annotated[
    str,
    typer.Option(
        envvar="RATCHET_OIDC_PRINCIPAL_CLAIM", help="The claim naming the caller, e.g. email."
    ),
]
PublicUrl = Annotated[
    str | None,
    typer.Option(
        envvar="RATCHET_PUBLIC_URL",
        help="The server's URL as A2A clients reach it, for the agent cards "
        "(default: the URL each request came to).",
    ),
]


@_run
async def serve(
    app: AppSpec,
    host: Host = "127.0.0.1",
    port: Port = 8000,
    keys: KeysFile = None,
    api_keys: ApiKeys = True,
    oidc_jwks_url: OidcJwksUrl = None,
    oidc_issuer: OidcIssuer = None,
    oidc_audience: OidcAudience = None,
    oidc_role_claim: OidcRoleClaim = "ratchet_role",
    oidc_tenant_claim: OidcTenantClaim = "ratchet_tenant",
    oidc_principal_claim: OidcPrincipalClaim = "sub",
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
    a2a: Annotated[
        bool,
        typer.Option("--a2a/--no-a2a", help="Serve each agent as an A2A agent too, at /a2a/NAME."),
    ] = True,
    public_url: PublicUrl = None,
    task_queue: TaskQueue = DEFAULT_TASK_QUEUE,
    address: Address = None,
    namespace: Namespace = None,
    transcript_store: TranscriptStoreUrl = None,
) -> None:
    """Serve the HTTP API (/v1), the web console (/) and the A2A agents (/a2a/NAME)
    for the agents of --app."""
    from .._app import load_agents
    from ..client import AgentClient
    from ..http import create_app
    from ..streaming import delta_store_for
    from ..transcripts import store_from_url

    agents = load_agents(app)
    store, auth = auth_settings(
        keys,
        api_keys,
        oidc_jwks_url,
        oidc_issuer,
        oidc_audience,
        oidc_role_claim,
        oidc_tenant_claim,
        oidc_principal_claim,
    )
    client = await AgentClient.connect(address, namespace=namespace, task_queue=task_queue)
    transcripts = store_from_url(transcript_store)
    # Streamed replies are read where the workers of that transcript store write them.
    client.deltas = delta_store_for(transcripts)
    api = create_app(
        client,
        agents=agents,
        auth=auth,
        cors_origins=cors_origin or (),
        temporal_ui_url=ui_url or _ui_base(address),
        transcript_store=transcripts,
        a2a=a2a,
        public_url=public_url,
    )
    agents_named = ", ".join(a.name for a in agents)
    announced = (
        f"ratchet API for {agents_named} on http://{host}:{port}/v1 "
        f"(console at /, OpenAPI at /v1/openapi.json"
        + (", A2A agents at /a2a/NAME)" if a2a else ")")
    )
    try:
        await serve_app(api, host, port, announced)
    finally:
        await transcripts.close()
        if store is not None:
            store.close()


def auth_settings(
    keys: Path | None,
    api_keys: bool,
    oidc_jwks_url: str | None,
    oidc_issuer: str | None,
    oidc_audience: str | None,
    oidc_role_claim: str,
    oidc_tenant_claim: str,
    oidc_principal_claim: str,
) -> tuple[KeyStore | None, AuthSettings]:
    """The key store (to close at the end) and the credentials a server accepts.

    Raises:
        ConfigError: some of the OIDC options but not all three.
    """
    from ..http import AuthSettings, KeyStore, OidcSettings

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
    return store, AuthSettings(keys=store, oidc=oidc)


async def serve_app(app: Any, host: str, port: int, announcement: str) -> None:
    """Serve an ASGI app with uvicorn until Ctrl-C, after saying where."""
    import uvicorn

    if not _loopback(host):
        err.print(
            f"serving on {host}: other machines can reach it; put it behind TLS (https), "
            "or API keys and cookies cross the network in the clear",
            markup=False,
        )
    _check_free(host, port)
    server = uvicorn.Server(
        uvicorn.Config(app, host=host, port=port, log_level="info", proxy_headers=True)
    )
    out.print(announcement, markup=False)
    await server.serve()


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
