"""The AG-UI endpoint over real HTTP: a thread is a chat run, each AG-UI run one turn of
it; the stream parses into the ``ag-ui-protocol`` package's own event models."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest
from ag_ui.core import Event, EventType
from pydantic import TypeAdapter
from temporalio.client import Client

from ratchet.http import AuthSettings, KeyStore, create_app
from ratchet.testing import ScriptedModelServer, call, error, reply, tool_calls

from .conftest import hosted
from .http_kit import agents, read_sse, serve

ANSWER = "Order 1042 shipped on Monday and should arrive by Thursday."
EVENTS: TypeAdapter[Any] = TypeAdapter(Event)


@pytest.fixture
async def operator(
    temporal_client: Client, model_server: ScriptedModelServer, tmp_path: Path
) -> AsyncIterator[httpx.AsyncClient]:
    store = KeyStore(tmp_path / "keys.sqlite")
    key = store.create("frontend", "operator")[1]
    async with hosted(temporal_client, agents(), model_server) as client:
        app = create_app(client, agents=agents(), auth=AuthSettings(keys=store))
        with serve(app) as served:
            async with served.client(key) as http:
                yield http
    store.close()


def user(text: str, n: int) -> dict[str, Any]:
    return {"id": f"u{n}", "role": "user", "content": text}


async def agui(
    http: httpx.AsyncClient, agent: str, thread: str, run: str, messages: list[Any]
) -> list[Any]:
    body = {"threadId": thread, "runId": run, "messages": messages, "state": {}, "tools": []}
    async with http.stream("POST", f"/v1/agui/{agent}", json=body) as response:
        assert response.status_code == 200, await response.aread()
        assert response.headers["content-type"].startswith("text/event-stream")
        return [EVENTS.validate_python(json.loads(e.data)) async for e in read_sse(response)]


def of_type(events: list[Any], kind: EventType) -> list[Any]:
    return [e for e in events if e.type == kind]


async def test_a_thread_streams_tool_calls_and_text_turn_by_turn(
    operator: httpx.AsyncClient, model_server: ScriptedModelServer
) -> None:
    model_server.add(
        tool_calls(call("lookup_order", {"order_id": 1042}), chunk_chars=4),
        reply(ANSWER, chunk_chars=5, chunk_delay=0.01),
        reply("Order 1043 too."),
    )
    first_turn = [user("Where is order 1042?", 1)]
    first = await agui(operator, "helper", "thread-1", "run-1", first_turn)

    assert first[0].type == EventType.RUN_STARTED
    assert (first[0].thread_id, first[0].run_id) == ("thread-1", "run-1")
    assert first[-1].type == EventType.RUN_FINISHED and first[-1].result == ANSWER
    [start] = of_type(first, EventType.TOOL_CALL_START)
    [args] = of_type(first, EventType.TOOL_CALL_ARGS)
    [end] = of_type(first, EventType.TOOL_CALL_END)
    [result] = of_type(first, EventType.TOOL_CALL_RESULT)
    assert start.tool_call_name == "lookup_order"
    assert json.loads(args.delta) == {"order_id": 1042}
    assert start.tool_call_id == args.tool_call_id == end.tool_call_id == result.tool_call_id
    assert json.loads(result.content) == {"id": 1042, "status": "shipped"}
    assert first.index(end) < first.index(result)
    # The answer streamed in pieces, inside one message, and adds up to the recorded reply.
    [opened] = of_type(first, EventType.TEXT_MESSAGE_START)
    pieces = of_type(first, EventType.TEXT_MESSAGE_CONTENT)
    [closed] = of_type(first, EventType.TEXT_MESSAGE_END)
    assert len(pieces) > 1
    assert {p.message_id for p in pieces} == {opened.message_id} == {closed.message_id}
    assert first.index(opened) < first.index(pieces[0]) < first.index(closed)
    assert "".join(p.delta for p in pieces) == ANSWER
    assert of_type(first, EventType.STEP_STARTED) and of_type(first, EventType.STEP_FINISHED)
    # The run's state after each model call: the tool turn, then the answer.
    states = [e.snapshot for e in of_type(first, EventType.STATE_SNAPSHOT)]
    assert [s["turn"] for s in states] == [1, 2]
    assert states[-1]["output_tokens"] > states[0]["output_tokens"] > 0
    assert states[-1]["waiting_approval"] == []

    second_turn = [
        *first_turn,
        {"id": "a1", "role": "assistant", "content": ANSWER},
        user("And order 1043?", 2),
    ]
    second = await agui(operator, "helper", "thread-1", "run-2", second_turn)
    assert second[0].type == EventType.RUN_STARTED
    assert second[-1].type == EventType.RUN_FINISHED and second[-1].result == "Order 1043 too."
    # Only this turn's work: the first turn's tool call is not replayed.
    assert not of_type(second, EventType.TOOL_CALL_START)
    # The model saw the whole chat: the thread is one run.
    assert model_server.requests[-1].messages[-1]["content"] == "And order 1043?"
    assert len(model_server.requests[-1].messages) == 6


async def test_a_failing_run_ends_with_run_error_and_threads_keep_their_agent(
    operator: httpx.AsyncClient, model_server: ScriptedModelServer
) -> None:
    model_server.add(error(401), reply("hello"))
    failed = await agui(operator, "helper", "thread-err", "r1", [user("hi", 1)])
    assert failed[-1].type == EventType.RUN_ERROR
    assert failed[-1].code == "ModelAuthError"

    await agui(operator, "guarded", "thread-g", "r1", [user("hi", 1)])
    body = {"threadId": "thread-g", "runId": "r2", "messages": [user("hi", 2)]}
    wrong_agent = await operator.post("/v1/agui/helper", json=body)
    no_text = await operator.post(
        "/v1/agui/helper", json={**body, "threadId": "t-new", "messages": []}
    )
    assert wrong_agent.status_code == 409 and "guarded" in wrong_agent.json()["detail"]
    assert no_text.status_code == 400 and no_text.json()["error_type"] == "ConfigError"
