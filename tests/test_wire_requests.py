"""Every model call's exact request body can be rebuilt from the run's history.

The history keeps the logical prompt once (linear history) and, with each model
response, how the provider rendered it (``ModelResponse.wire``). The run's events
(``ModelCallFinished.request_body``) rebuild the body with
``ratchet.models.render_wire_request``; these tests compare it with the one the
scripted server received over HTTP, key for key.
"""

from __future__ import annotations

import uuid

import pytest
from temporalio.client import Client

from ratchet import Agent, AgentClient, Limits, OpenAICompatible, create_worker, tool
from ratchet.events import ModelCallFinished
from ratchet.models import WireFormat, render_wire_request
from ratchet.testing import ScriptedModelServer, call, reply, reply_json, tool_calls

from .conftest import API_KEY, _test_store

FAST = Limits(model_retry_initial_seconds=0.1, model_retry_max_seconds=0.5, max_turns=6)


@tool
def lookup_order(order_id: int) -> dict[str, object]:
    """Look up an order.

    Args:
        order_id: the order number.
    """
    return {"id": order_id, "status": "shipped"}


async def _run(
    client: Client, agent: Agent, provider: OpenAICompatible, prompt: str
) -> tuple[str, str]:
    """Run ``agent`` to its end on a fresh worker; return the run id and its output."""
    queue = f"test-{uuid.uuid4().hex[:8]}"
    worker = create_worker(
        client,
        [agent],
        task_queue=queue,
        providers={"openai": provider},
        transcript_store=_test_store(),
    )
    async with worker:
        handle = await AgentClient(client, task_queue=queue).start(agent.name, prompt)
        result = await handle.result()
    return handle.id, result.output


async def _assert_bodies_rebuilt(
    client: Client, run_id: str, server: ScriptedModelServer
) -> list[WireFormat]:
    """Each model call's request body, as the run's events give it, is the one sent."""
    events = [e async for e in AgentClient(client).get(run_id).events(follow=False)]
    finished = [e for e in events if isinstance(e, ModelCallFinished)]
    received = [r.body for r in server.requests]
    assert len(finished) == len(received)
    for n, (call_event, body) in enumerate(zip(finished, received, strict=True)):
        assert call_event.request_body == body, f"model call {n}: the rebuilt body differs"
    return [e.wire for e in finished if e.wire is not None]


async def test_native_mode_bodies_are_rebuilt_exactly(
    temporal_client: Client, model_server: ScriptedModelServer
) -> None:
    agent = Agent(
        "wire-native",
        instructions="You are a support agent.",
        model="openai:gpt-test",
        tools=[lookup_order],
        temperature=0.3,
        max_tokens=200,
        limits=FAST,
    )
    model_server.add(
        tool_calls(call("lookup_order", {"order_id": 1042})),
        reply("Order 1042 has shipped."),
    )
    provider = OpenAICompatible(base_url=model_server.base_url, api_key=API_KEY)
    run_id, output = await _run(temporal_client, agent, provider, "Where is order 1042?")
    assert output == "Order 1042 has shipped."
    wires = await _assert_bodies_rebuilt(temporal_client, run_id, model_server)
    assert [w.tool_mode for w in wires] == ["native", "native"]
    # The body really carries what the rebuild has to get right.
    second = model_server.requests[1].body
    assert second["temperature"] == 0.3 and second["max_tokens"] == 200
    assert [t["function"]["name"] for t in second["tools"]] == ["lookup_order"]
    assert [m["role"] for m in second["messages"]] == ["system", "user", "assistant", "tool"]


async def test_json_schema_mode_bodies_are_rebuilt_exactly(
    temporal_client: Client, model_server: ScriptedModelServer
) -> None:
    """The JSON envelope turns (first call, repair after a tool error) and the answer-only
    turn after a tool result are each rendered differently from the logical messages."""
    agent = Agent(
        "wire-json",
        instructions="You are a support agent.",
        model="openai:gpt-test",
        tools=[lookup_order],
        tool_mode="json_schema",
        max_tokens=300,
        limits=FAST,
    )
    model_server.add(
        # Invalid arguments: the tool error goes back to the model, in envelope mode.
        reply_json({"tool": "lookup_order", "arguments": {"order_id": "soon"}}),
        reply_json({"tool": "lookup_order", "arguments": {"order_id": 7}}),
        reply("Order 7 has shipped."),
    )
    provider = OpenAICompatible(
        base_url=model_server.base_url,
        api_key=API_KEY,
        model_name="served-model",
        answer_after_tool=True,
    )
    run_id, output = await _run(temporal_client, agent, provider, "Where is order 7?")
    assert output == "Order 7 has shipped."
    wires = await _assert_bodies_rebuilt(temporal_client, run_id, model_server)
    assert [(w.model, w.tool_mode, w.answer_only) for w in wires] == [
        ("served-model", "json_schema", False),
        ("served-model", "json_schema", False),
        ("served-model", "json_schema", True),
    ]
    first, repair, answer = (r.body for r in model_server.requests)
    assert "tools" not in first and first["response_format"]["type"] == "json_schema"
    assert "Tools:" in first["messages"][0]["content"]
    assert [m["role"] for m in repair["messages"]] == ["system", "user", "assistant", "user"]
    assert "response_format" not in answer and "tools" not in answer
    assert "returned:" in answer["messages"][-1]["content"]


def test_render_refuses_an_unknown_revision() -> None:
    """A history written by a newer ratchet must not be shown with today's rendering."""
    wire = WireFormat(model="m", revision=99)
    with pytest.raises(ValueError, match="revision 99"):
        render_wire_request([], [], temperature=None, max_tokens=None, wire=wire)
