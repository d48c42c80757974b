"""The worker's MCP sessions: one open session per server, shared by the calls of
every run (stateless servers), reconnecting after a failure.

A session's transport (a subprocess, an HTTP session) is opened and closed by one
background task, as the ``mcp`` SDK's task groups require; calls from activity tasks
go through the open session.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import anyio
import httpx2
from mcp import Client
from mcp.client.stdio import StdioServerParameters
from mcp.client.streamable_http import streamable_http_client

from ._source import MCPServer

__all__ = ["MCPSessions", "is_transport_failure"]

_log = logging.getLogger("ratchet.mcp")

T = TypeVar("T")


class _Session:
    """One open connection to a server, owned by its own task."""

    def __init__(self, server: MCPServer) -> None:
        self.server = server
        self.used = time.monotonic()
        self._ready: asyncio.Future[Client] = asyncio.get_running_loop().create_future()
        self._close = asyncio.Event()
        self._task = asyncio.create_task(self._own(), name=f"mcp session {server.name}")

    async def client(self) -> Client:
        return await asyncio.wait_for(
            asyncio.shield(self._ready), timeout=self.server.connect_timeout
        )

    @property
    def alive(self) -> bool:
        return not self._task.done()

    @property
    def ready(self) -> bool:
        return self._ready.done() and not self._ready.cancelled() and not self._ready.exception()

    async def close(self) -> None:
        self._close.set()
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await asyncio.wait_for(self._task, timeout=5)
        if not self._task.done():
            self._task.cancel()

    async def _own(self) -> None:
        try:
            async with contextlib.AsyncExitStack() as stack:
                target = _target(self.server)
                if isinstance(target, httpx2.AsyncClient):
                    # The transport does not close an HTTP client it is given.
                    http = await stack.enter_async_context(target)
                    target = streamable_http_client(self.server.url, http_client=http)
                # (A server that never finishes its handshake: ``client()`` times out and
                # the session is dropped, which cancels this task.)
                client = await stack.enter_async_context(Client(target, read_timeout_seconds=None))
                self._ready.set_result(client)
                await self._close.wait()
        except BaseException as e:
            if not self._ready.done():
                self._ready.set_exception(e if isinstance(e, Exception) else RuntimeError(str(e)))
            if not isinstance(e, Exception):
                raise
            _log.info("MCP session to %s ended: %s: %s", self.server.name, type(e).__name__, e)


def is_transport_failure(e: BaseException) -> bool:
    """A lost connection: the process died, a stream closed, the network failed."""
    from mcp.shared.exceptions import MCPError
    from mcp_types.jsonrpc import CONNECTION_CLOSED

    leaves = getattr(e, "exceptions", None)
    if leaves:
        return any(is_transport_failure(x) for x in leaves)
    if isinstance(e, MCPError):
        return e.code == CONNECTION_CLOSED  # e.g. the process died at start
    return isinstance(
        e,
        OSError
        | EOFError
        | anyio.ClosedResourceError
        | anyio.BrokenResourceError
        | anyio.EndOfStream
        | httpx2.TransportError,
    )


def _target(server: MCPServer) -> Any:
    if server.transport == "stdio":
        return StdioServerParameters(
            command=server.command,
            args=list(server.args),
            env=server.environment() or None,
            cwd=server.cwd,
        )
    return httpx2.AsyncClient(
        headers=server.request_headers(),
        timeout=httpx2.Timeout(server.connect_timeout, read=max(server.timeout, 30.0)),
    )


class MCPSessions:
    """Open sessions by key (a server's name within an agent, and for a stateful server
    the run too); a failed one is dropped and the next use reconnects. A run's own
    session (a stateful server) is closed after ``idle_seconds`` without a call: the
    run has most likely ended."""

    def __init__(self, idle_seconds: float = 900.0) -> None:
        self._sessions: dict[str, _Session] = {}
        self._lock = asyncio.Lock()
        self._idle_seconds = idle_seconds

    def _close_idle(self) -> None:
        now = time.monotonic()
        for key, session in list(self._sessions.items()):
            if key.count("/") >= 2 and now - session.used > self._idle_seconds:
                del self._sessions[key]
                asyncio.get_running_loop().create_task(session.close())

    async def use(self, key: str, server: MCPServer, work: Callable[[Client], Awaitable[T]]) -> T:
        """Run ``work`` on the session for ``key``, opening it if needed. A lost
        connection drops the session: the next use reconnects."""
        from mcp.shared.exceptions import MCPError
        from mcp_types.jsonrpc import CONNECTION_CLOSED

        self._close_idle()
        session = await self._session(key, server)
        session.used = time.monotonic()
        try:
            client = await session.client()
            return await work(client)
        except MCPError as e:
            # The connection is gone; otherwise the server answered (an unanswered
            # request, too, leaves the session to the calls sharing it).
            if e.code == CONNECTION_CLOSED:
                await self.drop(key, session)
            raise
        except TimeoutError:
            if not session.ready:
                await self.drop(key, session)  # it never connected: start afresh next time
            raise
        except Exception as e:
            # Only a lost transport ends the session; a bad result (e.g. one that does
            # not match the tool's output schema) leaves it to the calls sharing it.
            if is_transport_failure(e) or not session.alive:
                await self.drop(key, session)
            raise
        finally:
            session.used = time.monotonic()

    async def drop(self, key: str, session: _Session | None = None) -> None:
        async with self._lock:
            current = self._sessions.get(key)
            if current is not None and (session is None or current is session):
                del self._sessions[key]
            else:
                current = None
        if current is not None:
            await current.close()

    async def close(self) -> None:
        async with self._lock:
            sessions, self._sessions = list(self._sessions.values()), {}
        await asyncio.gather(*(s.close() for s in sessions), return_exceptions=True)

    async def _session(self, key: str, server: MCPServer) -> _Session:
        async with self._lock:
            session = self._sessions.get(key)
            if session is None or not session.alive:
                session = _Session(server)
                self._sessions[key] = session
            return session
