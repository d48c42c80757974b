"""Shared fixtures: a real Temporal dev server, real workers, the scripted model server.

They are the test kit's own (ratchet.testing.pytest_plugin) under the names the tests use.
"""

from __future__ import annotations

import asyncio
import base64
import json
import signal
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AbstractAsyncContextManager, suppress
from pathlib import Path
from typing import Any, TypeVar

import pytest
import pytest_asyncio
from temporalio.client import Client
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

import ratchet.local
from ratchet import Agent, AgentClient
from ratchet.testing import (
    SCRIPTED_API_KEY,
    ScriptedModelServer,
    in_process_worker,
    scripted_provider,
)
from ratchet.transcripts import SQLiteTranscriptStore

# The test kit's fixtures (ratchet_dev_server, scripted_model, ...), used as a user would.
pytest_plugins = ["ratchet.testing.pytest_plugin"]

__all__ = [
    "API_KEY",
    "ROOT",
    "decoded_history_text",
    "default_sigint",
    "hosted",
    "mypy_strict",
    "scripted_provider",
    "temporal_binary",
]

ROOT = Path(__file__).resolve().parent.parent
# The key the kit's scripted_model fixture expects: tests search histories for it.
API_KEY = SCRIPTED_API_KEY


def temporal_binary() -> str:
    return str(ratchet.local.temporal_binary())


@pytest.fixture(scope="session")
def temporal_env(ratchet_dev_server: WorkflowEnvironment) -> WorkflowEnvironment:
    return ratchet_dev_server


@pytest_asyncio.fixture(autouse=True, loop_scope="session")
async def _end_runs_left_running(request: pytest.FixtureRequest) -> AsyncIterator[None]:
    """After a test on the session's dev server, terminate every run still running there.

    No worker outlives its test, so such runs (a run left waiting for approval, a
    provider's limiter workflow) would never move again, yet later tests would pay for
    them: ``client.limits()`` waits 5 s on a limiter nobody answers for, and the
    approvals inbox asks every waiting run. Ending them keeps each test's cost its own.
    """
    env: WorkflowEnvironment | None = None
    if "ratchet_dev_server" in request.fixturenames:
        env = request.getfixturevalue("ratchet_dev_server")
    yield
    if env is None:
        return
    client = env.client
    async for run in client.list_workflows("ExecutionStatus = 'Running'"):
        with suppress(RPCError):  # it ended meanwhile
            await client.get_workflow_handle(run.id, run_id=run.run_id).terminate(
                "the test that started it is over"
            )


@pytest.fixture
def temporal_client(ratchet_client: Client) -> Client:
    return ratchet_client


@pytest.fixture
def model_server(scripted_model: ScriptedModelServer) -> ScriptedModelServer:
    """A scripted OpenAI-compatible server; tests add steps, and it is verified afterwards."""
    return scripted_model


def default_sigint() -> None:
    """``preexec_fn`` for a child a test stops with SIGINT: Ctrl-C as in a terminal.

    When pytest itself ignores SIGINT (started in the background by a shell without job
    control, e.g. ``nohup make test &``), its children would inherit that: an ignored
    signal stays ignored across exec, and the child would never see the test's Ctrl-C.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def mypy_strict(source: Path) -> subprocess.CompletedProcess[str]:
    """``mypy --strict`` over one snippet file, as the project's own check runs it.

    From the project root: the snippet is checked against ratchet with the project's
    mypy settings, and mypy's incremental cache (.mypy_cache, which ``make typecheck``
    fills just before the tests) is reused. Without it every call re-checks ratchet and
    its dependencies from scratch: about 20 s instead of 2.
    """
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-error-summary", str(source)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )


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


_STORE: list[SQLiteTranscriptStore] = []


def _test_store() -> SQLiteTranscriptStore:
    """One SQLite transcript store per test session, shared by every worker of it.

    Some tests move a run from one worker to another; both must read the same store.
    """
    if not _STORE:
        _STORE.append(SQLiteTranscriptStore(Path(tempfile.mkdtemp()) / "transcripts.sqlite"))
    return _STORE[0]


def hosted(
    client: Client, agents: list[Agent], server: ScriptedModelServer, **worker_options: Any
) -> AbstractAsyncContextManager[AgentClient]:
    """Run a worker for ``agents`` on a fresh task queue; yield a client bound to it."""
    worker_options.setdefault("transcript_store", _test_store())
    return in_process_worker(client, agents, server, **worker_options)


@pytest.fixture
def workers() -> Iterator[list[Any]]:
    """Worker subprocesses started by a test (see tests/workers.py); stopped afterwards."""
    started: list[Any] = []
    yield started
    for w in started:
        w.stop()


T = TypeVar("T")


async def eventually(
    fetch: Callable[[], Awaitable[T]], done: Callable[[T], bool], seconds: float = 60
) -> T:
    """``fetch()`` once ``done`` holds for it, or its last value after ``seconds``: for
    listings from Temporal's visibility store, which is eventually consistent and lags
    most on a busy 2-core CI machine. The caller still asserts on what it returns."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while True:
        value = await fetch()
        if done(value) or loop.time() > deadline:
            return value
        await asyncio.sleep(0.2)
