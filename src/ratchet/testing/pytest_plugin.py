"""pytest fixtures for testing your agents against real Temporal and a scripted model.

Enable them in your ``conftest.py``::

    pytest_plugins = ["ratchet.testing.pytest_plugin"]

They need ``pytest-asyncio`` (auto or strict mode; in strict mode mark your
tests ``@pytest.mark.asyncio``). The Temporal dev server is started once per
test session, on a session-wide event loop; tests on their own loops use it
all the same (tried with pytest-asyncio 1.5's defaults).

Fixtures:

- ``ratchet_dev_server`` (session): :func:`~ratchet.testing.temporal_dev_server`.
- ``ratchet_client``: its Temporal client (pydantic data converter).
- ``scripted_model``: a started :class:`~ratchet.testing.ScriptedModelServer`
  expecting :data:`~ratchet.testing.SCRIPTED_API_KEY`; after the test it is
  stopped and verified, so an unexpected model call or an unconsumed step fails
  the test even if it forgot to check.
- ``ratchet_worker``: hosts agents on the dev server with ``scripted_model`` as
  their ``openai`` provider: ``async with ratchet_worker([agent]) as agents:``
  yields an :class:`~ratchet.AgentClient` (see
  :func:`~ratchet.testing.in_process_worker`).
- ``ratchet_time_skipping``: a time-skipping test server of the test's own
  (:func:`~ratchet.testing.time_skipping_environment`); host agents on it with
  ``in_process_worker(ratchet_time_skipping.client, [agent], scripted_model)``.

Example::

    async def test_refund_needs_no_approval_below_100(ratchet_worker, scripted_model):
        scripted_model.add(
            tool_calls(call("refund", {"order_id": 5, "amount": 20})),
            reply("Refunded $20."),
        )
        async with ratchet_worker([support]) as agents:
            result = await agents.run("support", "refund $20 on order 5")
        assert result.output == "Refunded $20."
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Iterable, Iterator
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

import pytest
import pytest_asyncio
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from ..agent import Agent
from ..client import AgentClient
from ._environments import temporal_dev_server, time_skipping_environment
from ._server import ScriptedModelServer
from ._worker import SCRIPTED_API_KEY, in_process_worker

__all__ = [
    "HostAgents",
    "ratchet_client",
    "ratchet_dev_server",
    "ratchet_time_skipping",
    "ratchet_worker",
    "scripted_model",
]


class HostAgents(Protocol):
    """The ``ratchet_worker`` fixture: hosts agents while an ``async with`` block runs."""

    def __call__(
        self, agents: Iterable[Agent], /, **worker_options: Any
    ) -> AbstractAsyncContextManager[AgentClient]: ...


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def ratchet_dev_server() -> AsyncIterator[WorkflowEnvironment]:
    """A Temporal dev server shared by the whole test session."""
    async with temporal_dev_server() as env:
        yield env


@pytest.fixture
def ratchet_client(ratchet_dev_server: WorkflowEnvironment) -> Client:
    """A Temporal client of the session's dev server."""
    return ratchet_dev_server.client


@pytest.fixture
def scripted_model() -> Iterator[ScriptedModelServer]:
    """A scripted model server for this test; verified after it."""
    server = ScriptedModelServer(expected_api_key=SCRIPTED_API_KEY).start()
    yield server
    server.stop()
    server.verify()


@pytest.fixture
def ratchet_worker(ratchet_client: Client, scripted_model: ScriptedModelServer) -> HostAgents:
    """Hosts agents on the dev server with ``scripted_model`` as their model."""
    return functools.partial(in_process_worker, ratchet_client, model_server=scripted_model)


@pytest_asyncio.fixture
async def ratchet_time_skipping() -> AsyncIterator[WorkflowEnvironment]:
    """A time-skipping Temporal test server for this test alone."""
    async with time_skipping_environment() as env:
        yield env
