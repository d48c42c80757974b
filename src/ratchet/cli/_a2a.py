"""`ratchet a2a serve`: ratchet agents as A2A agents, alone (``ratchet serve`` serves
them beside the HTTP API)."""

from __future__ import annotations

from typing import Annotated

import typer

from .._protocol import DEFAULT_TASK_QUEUE
from ._common import (
    Address,
    Namespace,
    TaskQueue,
    TranscriptStoreUrl,
    _run,
    agent_names,
    pick_agents,
)
from ._keys import KeysFile
from ._serve import (
    ApiKeys,
    AppSpec,
    Host,
    OidcAudience,
    OidcIssuer,
    OidcJwksUrl,
    OidcPrincipalClaim,
    OidcRoleClaim,
    OidcTenantClaim,
    Port,
    PublicUrl,
    auth_settings,
    serve_app,
)

a2a_app = typer.Typer(
    help="ratchet agents as A2A agents (the Agent2Agent protocol).", no_args_is_help=True
)


@a2a_app.command("serve")
@_run
async def a2a_serve(
    app: AppSpec,
    agents: Annotated[
        str | None,
        typer.Option(
            "--agents", help="Serve only these agents of --app, comma-separated (default: all)."
        ),
    ] = None,
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
    public_url: PublicUrl = None,
    task_queue: TaskQueue = DEFAULT_TASK_QUEUE,
    address: Address = None,
    namespace: Namespace = None,
    transcript_store: TranscriptStoreUrl = None,
) -> None:
    """Serve the agents of --app as A2A agents: each at /a2a/NAME, its card at
    /a2a/NAME/.well-known/agent-card.json. Calls need an API key (`ratchet keys`)."""
    from .._app import load_agents
    from ..a2a import create_a2a_app
    from ..client import AgentClient
    from ..streaming import delta_store_for
    from ..transcripts import store_from_url

    served = load_agents(app)
    names = agent_names(agents)
    if names is not None:
        served = pick_agents(served, names, app)
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
    client.deltas = delta_store_for(transcripts)
    a2a = create_a2a_app(
        client,
        agents=served,
        auth=auth,
        public_url=public_url,
        transcript_store=transcripts,
    )
    base = (public_url or f"http://{host}:{port}").rstrip("/")
    lines = [f"A2A agents on {base}:"] + [f"  {a.name}: {base}/a2a/{a.name}" for a in served]
    try:
        await serve_app(a2a, host, port, "\n".join(lines))
    finally:
        await transcripts.close()
        if store is not None:
            store.close()
