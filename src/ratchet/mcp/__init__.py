"""MCP: tools from any MCP server (``MCPServer``), and ratchet agents served over MCP.

- As a client: ``Agent(tools=[MCPServer.stdio(...), MCPServer.http(...)])`` offers the
  tools of MCP servers to the model; discovery runs in an activity when a run starts
  and is recorded, each call is a ``ratchet.run_tool`` activity.
- As a server: ``ratchet mcp serve`` exposes each agent as an MCP tool that starts a
  durable run and returns its answer.
"""

from __future__ import annotations

from ._source import MCPServer, Secrets

__all__ = ["MCPServer", "Secrets"]
