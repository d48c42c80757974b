"""What the HTTP API tests share: the app served by real uvicorn on 127.0.0.1, keys of
every role, and an SSE reader.

The server runs in a thread with its own event loop, so a test's client, the server
and the in-process worker never wait on each other's loop (and a synchronous client,
like schemathesis's, can call it too).
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2 as httpx
import uvicorn
from fastapi import FastAPI

from ratchet import Agent, Limits, Policy, require_approval, tool
from ratchet.http import ROLES, KeyStore

from .scenarios import lookup_order

__all__ = [
    "Served",
    "SseEvent",
    "agents",
    "bearer",
    "keys_of_every_role",
    "read_sse",
    "serve",
]


@tool(side_effects=True)
def refund(order_id: int, amount: int) -> str:
    """Refund an amount (in dollars) on an order."""
    return f"refunded ${amount} on order {order_id}"


def agents() -> list[Agent]:
    """``helper`` answers and looks orders up; ``guarded`` needs approval for refunds."""
    fast = Limits(model_retry_initial_seconds=0.1)
    return [
        Agent(
            "helper",
            instructions="You are a support agent. Be brief.",
            model="openai:gpt-4o-mini",
            tools=[lookup_order],
            limits=fast,
        ),
        Agent(
            "guarded",
            instructions="You are a support agent.",
            model="openai:gpt-4o-mini",
            tools=[refund],
            policy=Policy(rules=[require_approval("refund", reason="refunds need a person")]),
            limits=fast,
        ),
    ]


@dataclass
class Served:
    url: str
    server: uvicorn.Server
    thread: threading.Thread

    def client(self, key: str | None = None, **options: Any) -> httpx.AsyncClient:
        headers = bearer(key) if key else {}
        return httpx.AsyncClient(base_url=self.url, headers=headers, timeout=60, **options)


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@contextmanager
def serve(app: FastAPI) -> Iterator[Served]:
    """Serve ``app`` with uvicorn on 127.0.0.1 and a free port until the block ends."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(app, log_level="warning", lifespan="off", timeout_graceful_shutdown=2)
    )
    thread = threading.Thread(
        target=lambda: asyncio.run(server.serve(sockets=[sock])), name="uvicorn", daemon=True
    )
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    try:
        yield Served(f"http://127.0.0.1:{port}", server, thread)
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        sock.close()


def keys_of_every_role(store: KeyStore, tenant: str | None = None) -> dict[str, str]:
    """A key per role (named after it, and the tenant when bound to one)."""
    suffix = f"@{tenant}" if tenant else ""
    return {role: store.create(f"{role}{suffix}", role, tenant)[1] for role in ROLES}


@dataclass(frozen=True)
class SseEvent:
    id: str | None
    event: str | None
    data: str

    def json(self) -> Any:
        return json.loads(self.data)


async def read_sse(
    response: httpx.Response, *, comments: list[str] | None = None
) -> AsyncIterator[SseEvent]:
    """The events of an SSE response as they arrive (comment lines go to ``comments``)."""
    fields: dict[str, str] = {}
    data: list[str] = []
    async for line in response.aiter_lines():
        if line == "":
            if data:
                yield SseEvent(fields.get("id"), fields.get("event"), "\n".join(data))
            fields, data = {}, []
        elif line.startswith(":"):
            if comments is not None:
                comments.append(line)
        else:
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "data":
                data.append(value)
            else:
                fields[name] = value


def temp_store(directory: Path) -> KeyStore:
    return KeyStore(directory / "keys.sqlite")
