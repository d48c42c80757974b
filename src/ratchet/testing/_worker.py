"""An in-process worker hosting a test's agents, with the scripted server as their model."""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import AsyncIterator, Iterable
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

from temporalio.client import Client

from ..agent import Agent
from ..client import AgentClient
from ..models import OpenAICompatible
from ..streaming import SQLiteDeltaStore, delta_store_for
from ..transcripts import SQLiteTranscriptStore, TranscriptStore
from ..worker import create_worker
from ._server import ScriptedModelServer

__all__ = ["SCRIPTED_API_KEY", "in_process_worker", "scripted_provider"]

SCRIPTED_API_KEY = "sk-test-never-in-history"
"""The API key the ``scripted_model`` fixture expects, and the one sent to a server
that checks none. Search a run's history for it to prove secrets stay out."""


def scripted_provider(server: ScriptedModelServer) -> OpenAICompatible:
    """A provider that sends model calls to ``server`` with the key it expects, if any.

    Args:
        server: A started server.
    """
    key = server.expected_api_key
    return OpenAICompatible(base_url=server.base_url, api_key=key or SCRIPTED_API_KEY)


@asynccontextmanager
async def in_process_worker(
    client: Client,
    agents: Iterable[Agent],
    model_server: ScriptedModelServer,
    *,
    task_queue: str | None = None,
    transcript_store: TranscriptStore | None = None,
    **worker_options: Any,
) -> AsyncIterator[AgentClient]:
    """Hosts ``agents`` in this process while the block runs; yields a client for them.

    The agents' ``openai:`` models are answered by ``model_server`` (an agent whose
    model is ``"openai:any-name"`` talks to it). Each call gets a fresh task queue,
    so tests sharing one Temporal server never pick up each other's runs.

    Example::

        server.add(tool_calls(call("lookup_order", {"order_id": 1042})), reply("Shipped."))
        async with in_process_worker(env.client, [support], server) as agents:
            result = await agents.run("support", "Where is order 1042?")
        assert result.output == "Shipped."

    Args:
        client: A client with the pydantic data converter (from
            :func:`temporal_dev_server`, :func:`time_skipping_environment` or
            :func:`ratchet.connect`).
        agents: The agents to host.
        model_server: A started :class:`ScriptedModelServer`, the ``openai`` provider.
        task_queue: The queue to poll; by default a fresh ``test-<random>`` one.
        transcript_store: Where model calls keep their messages; by default a
            SQLite file in a temporary directory removed afterwards. Pass one
            store to several workers that must serve the same runs. Streamed
            replies go to the delta store beside it, which the yielded client
            reads (``RunHandle.events`` yields their ``token`` events).
        **worker_options: Passed to :func:`ratchet.create_worker` (e.g. ``providers``
            to add more, ``max_cached_workflows``, ``rate_limits``).
    """
    queue = task_queue or f"test-{uuid.uuid4().hex[:8]}"
    providers = {"openai": scripted_provider(model_server), **worker_options.pop("providers", {})}
    async with AsyncExitStack() as stack:
        if transcript_store is None:
            directory = stack.enter_context(tempfile.TemporaryDirectory(prefix="ratchet-test-"))
            transcript_store = SQLiteTranscriptStore(Path(directory) / "transcripts.sqlite")
            stack.push_async_callback(transcript_store.close)
            if "delta_store" not in worker_options:
                # Its own, closed with the directory (not the process-wide shared one).
                own = SQLiteDeltaStore(Path(directory) / "transcripts-deltas.sqlite")
                stack.push_async_callback(own.close)
                worker_options["delta_store"] = own
        worker = create_worker(
            client,
            agents,
            task_queue=queue,
            providers=providers,
            transcript_store=transcript_store,
            **worker_options,
        )
        await stack.enter_async_context(worker)
        # The client reads streamed replies where this worker writes them.
        deltas = worker_options.get("delta_store") or delta_store_for(transcript_store)
        yield AgentClient(client, task_queue=queue, deltas=deltas)
