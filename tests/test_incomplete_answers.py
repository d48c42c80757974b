"""A final answer cut off by the output token limit, or empty, never completes silently:
a warning in the result, the trace and the run's events, or (on request) a failure."""

from __future__ import annotations

import pytest
from temporalio.client import Client

from ratchet import Agent, Limits, RunFailed
from ratchet.testing import ScriptedModelServer, reply
from ratchet.trace import build_trace

from .conftest import hosted

WARNING = Agent("warner", instructions="x", model="openai:m", max_tokens=5)
STRICT = Agent(
    "strict",
    instructions="x",
    model="openai:m",
    limits=Limits(on_incomplete_answer="fail"),
)


async def test_a_cut_off_answer_completes_with_a_warning(
    temporal_client: Client, model_server: ScriptedModelServer
) -> None:
    model_server.add(reply("Your order is on its", finish_reason="length"))
    async with hosted(temporal_client, [WARNING], model_server) as client:
        handle = await client.start(WARNING.name, "Where is my order?")
        result = await handle.result()
        trace = await build_trace(temporal_client, handle.id)
        [end] = [e async for e in handle.events(follow=False) if e.type == "run_finished"]
    assert result.output == "Your order is on its"
    [warning] = result.warnings
    assert "cut off" in warning and "max_tokens=5" in warning
    assert trace.warnings == [warning]
    assert end.warnings == [warning]  # type: ignore[union-attr]


async def test_an_empty_answer_completes_with_a_warning(
    temporal_client: Client, model_server: ScriptedModelServer
) -> None:
    model_server.add(reply(""))
    async with hosted(temporal_client, [WARNING], model_server) as client:
        result = await client.run(WARNING.name, "Hello?")
    assert result.warnings == ["the model's answer in turn 1 is empty"]


async def test_an_incomplete_answer_can_fail_the_run(
    temporal_client: Client, model_server: ScriptedModelServer
) -> None:
    model_server.add(reply("Your order is", finish_reason="length"))
    async with hosted(temporal_client, [STRICT], model_server) as client:
        with pytest.raises(RunFailed) as failed:
            await client.run(STRICT.name, "Where is my order?")
    assert failed.value.error_type == "IncompleteAnswer"
    assert "cut off" in failed.value.message
