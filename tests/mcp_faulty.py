"""A fault-injecting MCP server, written with the ``mcp`` SDK, for ratchet's tests.

``python -m tests.mcp_faulty [stdio|http PORT]``. Its tools misbehave on demand:
slow, crash the process mid-call, answer ``isError``, drop the HTTP session. Every
call appends a line to ``$FAULTY_LOG`` (``tool key=<idempotency key> pid=<pid>``).
"""

from __future__ import annotations

import asyncio
import base64
import os
import sys
from pathlib import Path

from mcp.server.mcpserver import Context, MCPServer
from mcp_types import CallToolResult, ImageContent, TextContent

server = MCPServer("faulty")

# A 1x1 PNG.
PIXEL = base64.b64encode(
    bytes.fromhex(
        "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
        "1f15c4890000000d49444154789c6360000002000100e221bc330000000049454e44ae426082"
    )
).decode()


def _log(tool: str, ctx: Context) -> None:
    meta = ctx.request_context.meta or {}
    key = meta.get("ratchet/idempotency-key", "-")
    path = os.environ.get("FAULTY_LOG")
    if path:
        with Path(path).open("a") as f:
            f.write(f"{tool} key={key} pid={os.getpid()}\n")


@server.tool()
async def lookup(order_id: int, ctx: Context) -> str:
    """Look an order up.

    Args:
        order_id: the order.
    """
    _log("lookup", ctx)
    return f"order {order_id} shipped"


@server.tool()
async def slow(seconds: float, ctx: Context) -> str:
    """Answer after a while.

    Args:
        seconds: how long.
    """
    _log("slow", ctx)
    await asyncio.sleep(seconds)
    return f"done after {seconds:g} s"


@server.tool()
async def crash(ctx: Context) -> str:
    """Crash the server in the middle of the call (the first time; a marker file next to
    the log remembers it)."""
    _log("crash", ctx)
    marker = Path(os.environ.get("FAULTY_LOG", "/nonexistent") + ".crashed")
    if os.environ.get("FAULTY_LOG") and not marker.exists():
        marker.write_text("x")
        os._exit(9)
    return "survived"


@server.tool()
async def refuse(reason: str, ctx: Context) -> CallToolResult:
    """Answer with an error result.

    Args:
        reason: what to say.
    """
    _log("refuse", ctx)
    return CallToolResult(content=[TextContent(text=f"refused: {reason}")], is_error=True)


@server.tool()
async def picture(ctx: Context) -> CallToolResult:
    """Return a tiny image."""
    _log("picture", ctx)
    return CallToolResult(
        content=[TextContent(text="a pixel"), ImageContent(data=PIXEL, mime_type="image/png")]
    )


@server.tool()
async def env_has(name: str, ctx: Context) -> str:
    """Whether the server's environment has a variable (never its value).

    Args:
        name: the variable.
    """
    _log("env_has", ctx)
    return "yes" if os.environ.get(name) else "no"


async def extra(ctx: Context) -> str:
    """A tool that exists once `unlock` was called."""
    _log("extra", ctx)
    return "extra works"


@server.tool()
async def unlock(ctx: Context) -> str:
    """Add the tool `extra` to this server (its tool list changes)."""
    _log("unlock", ctx)
    server.add_tool(extra)
    return "unlocked"


_COUNT = [0]


@server.tool()
async def counter(ctx: Context) -> str:
    """Count the calls this server process answered (state kept by the session)."""
    _log("counter", ctx)
    _COUNT[0] += 1
    return f"{_COUNT[0]} pid={os.getpid()}"


@server.tool()
async def hang(ctx: Context) -> str:
    """Never answer (until the process ends)."""
    _log("hang", ctx)
    await asyncio.sleep(3600)
    return "never"


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "http":
        server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[2]))
    else:
        server.run("stdio")
