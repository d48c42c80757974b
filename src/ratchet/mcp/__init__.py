"""MCP: tools from any MCP server (``MCPServer``), and ratchet agents served over MCP.

- As a client: ``Agent(tools=[MCPServer.stdio(...), MCPServer.http(...)])`` offers the
  tools of MCP servers to the model; discovery runs in an activity when a run starts
  and is recorded, each call is a ``ratchet.run_tool`` activity.
- As a server: ``ratchet mcp serve`` exposes each agent as an MCP tool that starts a
  durable run and returns its answer.
"""

from __future__ import annotations

__all__: list[str] = []

# --- The server side: ratchet agents as MCP tools (`ratchet mcp serve`). ---
from ._http import create_mcp_http_app
from ._server import RUN_META_KEY, create_mcp_server, serve_mcp_stdio

__all__ += ["RUN_META_KEY", "create_mcp_http_app", "create_mcp_server", "serve_mcp_stdio"]
