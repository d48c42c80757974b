"""End to end with the real embedded model: llama-server + SmolLM2-135M, the demo agent,
the default `local` provider, a real dev server and a real SQLite shop database."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import BaseModel
from temporalio.client import Client

from examples.support import agent, db
from examples.support.agent import order_status
from ratchet import Agent, AgentClient, Limits, create_worker
from ratchet.events import ModelCallFinished, OutputChecked, TokenDelta
from ratchet.local import LlamaServer, ensure_llama_server, smollm2_model_path
from ratchet.local._proc import free_port
from ratchet.streaming import delta_store_for
from ratchet.transcripts import SQLiteTranscriptStore

# On a fresh machine the first test builds llama-server (5-8 minutes on 2 cores).
pytestmark = pytest.mark.timeout(1800)


@pytest.fixture(scope="module")
def local_llm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaServer]:
    # Built once and cached under the user's cache dir; the first build prints progress.
    binary = ensure_llama_server(on_progress=print)
    log = tmp_path_factory.mktemp("llm") / "llama-server.log"
    server = LlamaServer(binary, smollm2_model_path(), free_port(), log)
    server.start()
    yield server
    server.stop()


@pytest.mark.parametrize(
    ("prompt", "tool", "order_id", "table_check"),
    [
        ("Where is order 1042?", "order_status", 1042, None),
        ("Please refund order 1043.", "refund_order", 1043, 1),
    ],
)
async def test_demo_agent_with_the_local_model(
    temporal_client: Client,
    local_llm: LlamaServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    prompt: str,
    tool: str,
    order_id: int,
    table_check: int | None,
) -> None:
    monkeypatch.setenv("RATCHET_LOCAL_LLM_URL", local_llm.base_url)  # the default provider
    monkeypatch.setenv("SUPPORT_DB", str(tmp_path / "shop.sqlite"))
    queue = f"local-{uuid.uuid4().hex[:6]}"
    async with create_worker(temporal_client, [agent], task_queue=queue):
        handle = await AgentClient(temporal_client, task_queue=queue).start("support", prompt)
        result = await handle.result()
        transcript = await handle.transcript()
    calls = [c for m in transcript if m.tool_calls for c in m.tool_calls]
    assert calls, f"the model made no tool call: {transcript}"
    assert calls[0].name == tool
    assert json.loads(calls[0].arguments) == {"order_id": order_id}
    tool_results = [m for m in transcript if m.role == "tool"]
    assert tool_results and not tool_results[0].is_error, tool_results
    assert result.output.strip(), "empty final answer"
    assert result.usage.input_tokens > 0 and result.usage.output_tokens > 0
    if table_check is not None:
        assert db.refunds_for(order_id) == table_check


async def test_the_local_models_answer_streams(
    temporal_client: Client,
    local_llm: LlamaServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The real model streams through llama-server's SSE: the subscriber gets the answer
    as token events before the run records it, and they add up to the recorded answer."""
    monkeypatch.setenv("RATCHET_LOCAL_LLM_URL", local_llm.base_url)
    monkeypatch.setenv("SUPPORT_DB", str(tmp_path / "shop.sqlite"))
    queue = f"local-stream-{uuid.uuid4().hex[:6]}"
    store = SQLiteTranscriptStore(tmp_path / "transcripts.sqlite")
    deltas = delta_store_for(store)
    async with create_worker(temporal_client, [agent], task_queue=queue, transcript_store=store):
        client = AgentClient(temporal_client, task_queue=queue, deltas=deltas)
        handle = await client.start("support", "Where is order 1042?")
        events = [e async for e in handle.events()]
        result = await handle.result()
    tokens = [e for e in events if isinstance(e, TokenDelta)]
    last_call = [e for e in events if isinstance(e, ModelCallFinished)][-1]
    answer_tokens = [t for t in tokens if t.call_id == last_call.call_id and t.kind == "text"]
    assert len(answer_tokens) > 1, f"the answer did not stream: {tokens}"
    assert [t.offset for t in answer_tokens] == sorted(t.offset for t in answer_tokens)
    assert "".join(t.text for t in answer_tokens) == result.output
    # Each piece reached the subscriber before the recorded reply.
    finished_at = events.index(last_call)
    assert all(events.index(t) < finished_at for t in answer_tokens)
    assert last_call.wire is not None and last_call.wire.stream
    assert last_call.request_body is not None and last_call.request_body["stream"] is True
    assert last_call.usage.output_tokens > 0, "llama-server sent no usage chunk"


class Shipment(BaseModel):
    """Whether an order has shipped."""

    order_id: int
    shipped: bool


async def test_the_local_model_returns_a_pydantic_model(
    temporal_client: Client,
    local_llm: LlamaServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Structured output on the embedded model: json_schema mode turns the output type into
    the envelope's answer option, so constrained decoding yields a valid Shipment after
    the tool call, and the run returns it typed."""
    monkeypatch.setenv("RATCHET_LOCAL_LLM_URL", local_llm.base_url)
    monkeypatch.setenv("SUPPORT_DB", str(tmp_path / "shop.sqlite"))
    shipments = Agent(
        "shipments",
        instructions="You are the support agent of an online shop. Use a tool, then answer.",
        model="local",
        tools=[order_status],
        output_type=Shipment,
        limits=Limits(max_turns=4),
        max_tokens=200,
        temperature=0.0,
    )
    queue = f"local-typed-{uuid.uuid4().hex[:6]}"
    async with create_worker(temporal_client, [shipments], task_queue=queue):
        client = AgentClient(temporal_client, task_queue=queue)
        handle = await client.start("shipments", "Has order 1042 shipped?")
        result = await handle.result(Shipment)
        events = [e async for e in handle.events(follow=False)]
    assert isinstance(result.output, Shipment)
    # Order 1042 is "shipped" in the demo database: the model read the tool's result.
    assert result.output == Shipment(order_id=1042, shipped=True), result.text
    calls = [e for e in events if isinstance(e, ModelCallFinished)]
    assert calls[0].response is not None and calls[0].response.tool_calls, calls[0].response
    answer = calls[-1]
    assert answer.wire is not None and answer.wire.structured
    assert answer.request_body is not None
    schema = answer.request_body["response_format"]["json_schema"]["schema"]
    assert schema["anyOf"][-1]["properties"]["answer"]["required"] == ["order_id", "shipped"]
    checks = [(e.check, e.accepted) for e in events if isinstance(e, OutputChecked)]
    assert checks[-2:] == [("schema", True), ("Shipment", True)]
