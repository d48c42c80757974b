"""A provider of the user's own, through the public contract (``ratchet.models.Provider``).

The provider here answers from Python instead of over HTTP: what is under test is the
model activity's side of the contract (what it puts in a ``ProviderRequest``, what it
takes from a ``ProviderResponse``), on a real worker and a real Temporal server.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from temporalio.client import Client

from ratchet import (
    Agent,
    AgentClient,
    Limits,
    Message,
    RunFailed,
    ToolCall,
    Usage,
    create_worker,
    tool,
)
from ratchet.models import Provider, ProviderRequest, ProviderResponse, model_error

from .conftest import _test_store


@tool
def lookup_order(order_id: int) -> dict[str, object]:
    """Look up an order.

    Args:
        order_id: the order number.
    """
    return {"id": order_id, "status": "shipped"}


class ScriptedInPython(Provider):
    """Calls ``lookup_order`` once, then answers with what the tool returned."""

    def __init__(self) -> None:
        self.requests: list[ProviderRequest] = []

    async def complete(self, request: ProviderRequest) -> ProviderResponse:
        self.requests.append(request)
        last = request.messages[-1]
        if last.role == "tool":
            message = Message.assistant(f"The tool said: {last.content}")
        else:
            call = ToolCall(id="c1", name="lookup_order", arguments='{"order_id": 7}')
            message = Message.assistant(None, [call])
        return ProviderResponse(
            message=message,
            usage=Usage(input_tokens=100, output_tokens=10, requests=1),
            model=f"{request.model}-2026",
            finish_reason="stop",
        )


class RevokedKey(Provider):
    async def complete(self, request: ProviderRequest) -> ProviderResponse:
        raise model_error("ModelAuthError", "the key was revoked")


@asynccontextmanager
async def _hosted(client: Client, agent: Agent, provider: Provider) -> AsyncIterator[AgentClient]:
    """A worker for ``agent`` whose models all come from ``provider`` (as ``mine:...``)."""
    queue = f"test-{uuid.uuid4().hex[:8]}"
    worker = create_worker(
        client,
        [agent],
        task_queue=queue,
        providers={"mine": provider},
        transcript_store=_test_store(),
    )
    async with worker:
        yield AgentClient(client, task_queue=queue)


async def test_a_provider_of_ones_own_gets_the_whole_call_and_its_answer_counts(
    temporal_client: Client,
) -> None:
    agent = Agent(
        "own-provider",
        instructions="You are a support agent.",
        model="mine:my-model",
        tools=[lookup_order],
        temperature=0.2,
        max_tokens=64,
        limits=Limits(model_timeout_seconds=30),
    )
    provider = ScriptedInPython()
    async with _hosted(temporal_client, agent, provider) as client:
        result = await client.run(agent.name, "Where is order 7?")
    assert result.output == 'The tool said: {"id": 7, "status": "shipped"}'
    assert result.usage == Usage(input_tokens=200, output_tokens=20, requests=2)
    first, second = provider.requests
    assert first.model == "my-model"
    assert [m.role for m in first.messages] == ["system", "user"]
    assert first.messages[1].content == "Where is order 7?"
    assert [t.name for t in first.tools] == ["lookup_order"]
    assert (first.tool_mode, first.temperature, first.max_tokens) == (None, 0.2, 64)
    assert first.timeout_seconds == 30
    assert [m.role for m in second.messages] == ["system", "user", "assistant", "tool"]
    assert second.turn == first.turn + 1


async def test_a_providers_typed_error_fails_the_run_with_its_type(
    temporal_client: Client,
) -> None:
    agent = Agent("own-provider-fails", instructions="x", model="mine:m")
    async with _hosted(temporal_client, agent, RevokedKey()) as client:
        with pytest.raises(RunFailed) as failed:
            await client.run(agent.name, "hi")
    assert failed.value.error_type == "ModelAuthError"
    assert "the key was revoked" in str(failed.value)
