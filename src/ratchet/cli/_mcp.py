"""`ratchet mcp serve`: ratchet agents as an MCP server, over stdio or streamable HTTP."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from .._protocol import DEFAULT_TASK_QUEUE
from ._common import Address, Namespace, TaskQueue, _run, agent_names, err, out, pick_agents
from ._keys import KeysFile
from ._serve import _check_free, _loopback

if TYPE_CHECKING:
    from mcp.server import Server

    from ..agent import Agent

mcp_app = typer.Typer(
    help="ratchet agents as an MCP server: any MCP client (a desktop assistant, an IDE) "
    "runs them as tools.",
    no_args_is_help=True,
)


class Transport(StrEnum):
    stdio = "stdio"
    http = "http"


@mcp_app.command("serve")
@_run
async def mcp_serve(
    agents: Annotated[
        str | None,
        typer.Option(
            "--agents",
            help="The agents to offer, comma-separated (default: every agent of --app, "
            "else every agent the task queue's workers host).",
        ),
    ] = None,
    app: Annotated[
        str | None,
        typer.Option(
            "--app",
            help="The agents, as module:attribute: their tools then describe their "
            "instructions and output types.",
        ),
    ] = None,
    transport: Annotated[
        Transport, typer.Option(help="stdio (for a local client) or streamable HTTP.")
    ] = Transport.stdio,
    host: Annotated[str, typer.Option(help="HTTP: address to bind (loopback by default).")] = (
        "127.0.0.1"
    ),
    port: Annotated[int, typer.Option(help="HTTP: port to listen on.", min=0, max=65535)] = 8001,
    keys: KeysFile = None,
    tool: Annotated[
        list[str] | None,
        typer.Option(
            "--tool",
            help="Offer one tool of an agent too, as AGENT.TOOL (repeat for more): each "
            "call runs it on its own as a standalone activity, under the agent's policy.",
        ),
    ] = None,
    task_queue: TaskQueue = DEFAULT_TASK_QUEUE,
    address: Address = None,
    namespace: Namespace = None,
) -> None:
    """Serve agents as MCP tools; runs and approvals as MCP resources.

    Over stdio nothing but the protocol goes to stdout; over HTTP every request needs
    an API key of the operator role (`ratchet keys create`), sent as a bearer token.
    """
    from .._app import load_agents
    from ..client import AgentClient
    from ..mcp import create_mcp_server

    loaded = list(load_agents(app)) if app is not None else None
    offered: list[Agent | str] | None = list(loaded) if loaded is not None else None
    names = agent_names(agents)
    if names is not None:
        # Without --app the names stand alone (the workers that host them describe them).
        offered = list(pick_agents(loaded, names, str(app))) if loaded is not None else [*names]
    client = await AgentClient.connect(address, namespace=namespace, task_queue=task_queue)
    server = create_mcp_server(client, offered, tools=tool or ())
    if transport is Transport.stdio:
        from ..mcp import serve_mcp_stdio

        await serve_mcp_stdio(server)
        return
    await _serve_http(server, host, port, keys)


async def _serve_http(server: Server[Any], host: str, port: int, keys_path: Path | None) -> None:
    import uvicorn

    from ..http import AuthSettings, KeyStore
    from ..mcp import create_mcp_http_app

    store = KeyStore(keys_path)
    if not any(k.revoked is None for k in store.list()):
        err.print(
            "no API key yet: create one with `ratchet keys create --name NAME --role operator`",
            markup=False,
        )
    api = create_mcp_http_app(server, auth=AuthSettings(keys=store), host=host)
    if not _loopback(host):
        err.print(
            f"serving on {host}: other machines can reach it; put it behind TLS (https), "
            "or API keys cross the network in the clear",
            markup=False,
        )
    _check_free(host, port)
    config = uvicorn.Config(api, host=host, port=port, log_level="info", proxy_headers=True)
    out.print(f"ratchet MCP server on http://{host}:{port}/mcp", markup=False)
    try:
        await uvicorn.Server(config).serve()
    finally:
        store.close()
