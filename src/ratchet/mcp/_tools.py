"""MCP tools in a run: discovered into tool specs when the run starts, called from the
tool activity, their results turned into the text of a tool message.

Errors map to ratchet's taxonomy: a transport failure (the server cannot be reached,
its process died, the HTTP session was dropped, a timeout) is ``MCPUnavailable``,
retried by the activity's retry policy; an error the server answered (an unknown
tool, invalid arguments) is ``MCPError``, not retried; a result with ``isError`` is a
tool error message the model reads.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping
from typing import Any, cast

from mcp import Client
from mcp_types import (
    AudioContent,
    CallToolResult,
    EmbeddedResource,
    ImageContent,
    RequestParamsMeta,
    ResourceLink,
    TextContent,
    TextResourceContents,
    Tool,
)
from mcp_types.jsonrpc import CONNECTION_CLOSED, INTERNAL_ERROR, REQUEST_TIMEOUT
from temporalio.exceptions import ApplicationError

from ..tools import ToolSpec
from ._sessions import MCPSessions, is_transport_failure
from ._source import MCPServer

__all__ = ["IDEMPOTENCY_META_KEY", "call_tool", "discover", "render_result", "session_key"]

TRANSPORT_CODES = frozenset({CONNECTION_CLOSED, REQUEST_TIMEOUT})
"""Errors the SDK reports for a lost connection or an unanswered request: the session
is dropped and the call retried on a new one."""

IDEMPOTENCY_META_KEY = "ratchet/idempotency-key"
"""The ``_meta`` key carrying a call's idempotency key (stable across its retries)."""


def session_key(agent: str, server: MCPServer, run_id: str | None = None) -> str:
    """Stateless servers share one session per agent and server; ``run_id`` pins one."""
    return f"{agent}/{server.name}" + (f"/{run_id}" if run_id else "")


async def discover(
    sessions: MCPSessions, agent: str, server: MCPServer, taken: set[str]
) -> list[ToolSpec]:
    """The server's offered tools as tool specs (names prefixed), in the server's order.

    Raises:
        ApplicationError: ``MCPUnavailable`` (retryable) when the server cannot be
            reached; ``ConfigError`` when a tool's name clashes with another tool.
    """

    async def listed(client: Client) -> list[Tool]:
        tools: list[Tool] = []
        cursor: str | None = None
        for _ in range(100):  # a paginator that never ends cannot hang the snapshot
            # Never from the client's cache: a new run (or a refresh) asks the server.
            page = await client.list_tools(cursor=cursor, cache_mode="refresh")
            tools += page.tools
            cursor = page.next_cursor
            if not cursor:
                break
        return tools

    tools = await _mapped(
        server, "listing the tools", sessions.use(session_key(agent, server), server, listed)
    )
    specs: list[ToolSpec] = []
    for t in tools:
        if not server.offers(t.name):
            continue
        name = server.prefix + t.name
        if name in taken:
            raise ApplicationError(
                f"agent {agent!r}: MCP server {server.name!r} offers a tool named {name!r}, "
                "like another of the agent's tools; give the server a prefix=... or deny=[...] it",
                type="ConfigError",
                non_retryable=True,
            )
        taken.add(name)
        hints = t.annotations
        destructive = hints is not None and hints.destructive_hint is True
        specs.append(
            ToolSpec(
                name=name,
                description=t.description or t.title or t.name,
                parameters=_object_schema(t.input_schema),
                side_effects=server.changes_world(t.name) or destructive,
                # An attempt may have to (re)connect first; the call itself is bounded
                # by the server's timeout (the request's read timeout).
                timeout_seconds=server.timeout + server.connect_timeout,
                max_attempts=server.max_attempts,
                mcp_server=server.name,
                mcp_tool=t.name,
                mcp_stateful=server.stateful,
                mcp_connect_seconds=server.connect_timeout,
                mcp_refresh=server.refresh_on_continue_as_new,
            )
        )
    return specs


async def call_tool(
    sessions: MCPSessions,
    key: str,
    server: MCPServer,
    tool: str,
    arguments: Mapping[str, Any],
    idempotency_key: str,
) -> CallToolResult:
    """Call ``tool`` on the server through the session for ``key``."""

    async def called(client: Client) -> CallToolResult:
        return await client.call_tool(
            tool,
            dict(arguments),
            read_timeout_seconds=server.timeout,
            meta=cast(RequestParamsMeta, {IDEMPOTENCY_META_KEY: idempotency_key}),
        )

    result: CallToolResult = await _mapped(
        server, f"calling {tool!r}", sessions.use(key, server, called)
    )
    return result


async def render_result(result: CallToolResult, save_blob: Any) -> str:
    """The tool message's text: text blocks, structured content, and binary content
    (images, audio, blobs) as references to the transcript store.

    ``save_blob(hash, body)`` stores a binary block under its hash.
    """
    parts: list[str] = []
    for block in result.content:
        if isinstance(block, TextContent):
            parts.append(block.text)
        elif isinstance(block, ImageContent | AudioContent):
            parts.append(await _reference(block.type, block.mime_type, block.data, save_blob))
        elif isinstance(block, EmbeddedResource):
            r = block.resource
            if isinstance(r, TextResourceContents):
                parts.append(r.text)
            else:
                mime = r.mime_type or "application/octet-stream"
                parts.append(await _reference(f"resource {r.uri}", mime, r.blob, save_blob))
        elif isinstance(block, ResourceLink):
            parts.append(
                f"[resource link {block.uri}" + (f": {block.name}]" if block.name else "]")
            )
    if result.structured_content is not None and not any(
        isinstance(b, TextContent) for b in result.content
    ):
        # Structured content without a text rendering: the model reads its JSON.
        parts.append(json.dumps(result.structured_content, ensure_ascii=False))
    return "\n".join(parts) if parts else ("(no content)" if not result.is_error else "error")


async def _reference(kind: str, mime: str, data: str, save_blob: Any) -> str:
    raw = base64.b64decode(data, validate=False)
    digest = "sha256:" + hashlib.sha256(raw).hexdigest()
    await save_blob(digest, json.dumps({"mime_type": mime, "data": data}))
    return f"[{kind} {mime}, {len(raw):,} bytes, stored as {digest}]"


def _object_schema(schema: Mapping[str, Any]) -> dict[str, Any]:
    """The arguments' schema as providers expect it (an object at the root)."""
    out = dict(schema)
    out.setdefault("type", "object")
    out.setdefault("properties", {})
    return out


async def _mapped(server: MCPServer, what: str, work: Any) -> Any:
    """``work``'s result, its failures mapped to the taxonomy."""
    from mcp.shared.exceptions import MCPError

    try:
        return await work
    except MCPError as e:
        if e.code in TRANSPORT_CODES:
            raise ApplicationError(
                f"MCP server {server.name!r} is unavailable while {what}: {e.message}",
                type="MCPUnavailable",
            ) from None
        # A server's internal error may pass on a retry; anything else it refused will not.
        raise ApplicationError(
            f"MCP server {server.name!r} refused {what}: {e.message} (code {e.code})",
            type="MCPError",
            non_retryable=e.code != INTERNAL_ERROR,
        ) from None
    except ApplicationError:
        raise
    except Exception as e:
        if not (is_transport_failure(e) or isinstance(e, TimeoutError)):
            # E.g. a result that does not match the tool's own output schema: the same
            # on every attempt, so not retried.
            raise ApplicationError(
                f"MCP server {server.name!r} gave a bad answer while {what}: {_flat(e)}",
                type="MCPError",
                non_retryable=True,
            ) from None
        hint = ""
        if isinstance(e, FileNotFoundError) and server.transport == "stdio":
            hint = (
                f"; is {server.command!r} installed where the worker runs (on its PATH)? "
                "Or pass its full path"
            )
        # Not chained: a retried attempt's failure must stay small in the history.
        raise ApplicationError(
            f"MCP server {server.name!r} is unavailable while {what}: {_flat(e)}{hint}",
            type="MCPUnavailable",
        ) from None


def _flat(e: BaseException) -> str:
    """An exception group's leaves, or the exception's own text."""
    leaves = getattr(e, "exceptions", None)
    if leaves:
        return "; ".join(_flat(x) for x in leaves)
    return f"{type(e).__name__}: {e}" if str(e) else repr(e)
