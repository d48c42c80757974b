"""MCP: tools from any MCP server (``MCPServer``), and ratchet agents served over MCP.

- As a client: ``Agent(tools=[MCPServer.stdio(...), MCPServer.http(...)])`` offers the
  tools of MCP servers to the model; discovery runs in an activity when a run starts
  and is recorded, each call is a ``ratchet.run_tool`` activity.
- As a server: ``ratchet mcp serve`` exposes each agent as an MCP tool that starts a
  durable run and returns its answer, and with ``--tool AGENT.TOOL`` single tools of
  agents, each call one standalone tool call.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._source import MCPServer, Secrets

if TYPE_CHECKING:
    from ._http import create_mcp_http_app
    from ._server import RUN_META_KEY, create_mcp_server, serve_mcp_stdio
    from ._single_tools import TOOL_CALL_META_KEY

__all__ = [
    "RUN_META_KEY",
    "TOOL_CALL_META_KEY",
    "MCPServer",
    "Secrets",
    "create_mcp_http_app",
    "create_mcp_server",
    "serve_mcp_stdio",
]

# The server side (`ratchet mcp serve`) loads the SDK's server stack: only on use, so
# agent definitions (which import MCPServer) and workers do not pay for it.
_SERVER_NAMES = {
    "RUN_META_KEY": "._server",
    "create_mcp_server": "._server",
    "serve_mcp_stdio": "._server",
    "TOOL_CALL_META_KEY": "._single_tools",
    "create_mcp_http_app": "._http",
}


def __getattr__(name: str) -> Any:
    module = _SERVER_NAMES.get(name)
    if module is None:
        raise AttributeError(f"module 'ratchet.mcp' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module, __name__), name)
