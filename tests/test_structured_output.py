"""Structured output end to end: a real Temporal server, the real openai client over HTTP,
the scripted model answering in native mode (the final_result tool) and in json_schema
mode (the envelope's answer), repairs, output validators, and the typed result."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import BaseModel
from temporalio.client import Client

from ratchet import (
    Agent,
    AgentClient,
    ConfigError,
    Limits,
    OpenAICompatible,
    OutputRejected,
    OutputValidationError,
    RunFailed,
    tool,
)
from ratchet._final_answer import ACCEPTED, NOT_RUN
from ratchet.events import ModelCallStarted, OutputChecked, RunFinished
from ratchet.output import OUTPUT_TOOL
from ratchet.testing import (
    RecordedRequest,
    ScriptedModelServer,
    call,
    reply,
    reply_json,
    tool_calls,
)
from ratchet.trace import build_trace, render_trace

from .conftest import API_KEY, hosted
from .test_cli import address
from .test_cli_streaming import ratchet_with_input
from .test_wire_requests import _assert_bodies_rebuilt, _run

FAST = Limits(model_retry_initial_seconds=0.1, model_retry_max_seconds=0.5, max_turns=6)


class Shipment(BaseModel):
    order_id: int
    shipped: bool


@tool
def lookup_order(order_id: int) -> dict[str, object]:
    """Look up an order.

    Args:
        order_id: the order number.
    """
    return {"id": order_id, "status": "shipped"}


def shipping_agent(name: str = "shipping", **kw: Any) -> Agent:
    kw.setdefault("limits", FAST)
    return Agent(
        name,
        instructions="Report an order's shipment.",
        model="openai:gpt-test",
        tools=[lookup_order],
        output_type=kw.pop("output_type", Shipment),
        **kw,
    )


def final(arguments: Any) -> Any:
    return call(OUTPUT_TOOL, arguments)


def last_message(role: str, *parts: str):  # type: ignore[no-untyped-def]
    """An expectation: the request's last message has this role and contains the parts."""

    def check(req: RecordedRequest) -> None:
        last = req.messages[-1]
        assert last["role"] == role, last
        for part in parts:
            assert part in last["content"], last["content"]

    return check


async def test_native_final_result_tool_gives_a_typed_output(
    temporal_client: Client, model_server: ScriptedModelServer
) -> None:
    model_server.add(
        tool_calls(call("lookup_order", {"order_id": 7})),
        tool_calls(final({"order_id": 7, "shipped": True})),
    )
    async with hosted(temporal_client, [shipping_agent()], model_server) as client:
        handle = await client.start("shipping", "Where is order 7?")
        typed = await handle.result(Shipment)
        plain = await handle.result()
        events = [e async for e in handle.events(follow=False)]
    model_server.verify()
    assert typed.output == Shipment(order_id=7, shipped=True)
    assert typed.turns == 2 and typed.tool_calls == 1
    # Without a type: the answer's JSON and its parsed value.
    assert json.loads(plain.output) == {"order_id": 7, "shipped": True}
    assert plain.data == {"order_id": 7, "shipped": True} and plain.output_type == "Shipment"
    # The model was offered the final-answer tool with the type's schema, and had to call
    # some tool.
    first = model_server.requests[0].body
    assert [t["function"]["name"] for t in first["tools"]] == ["lookup_order", OUTPUT_TOOL]
    assert first["tools"][1]["function"]["parameters"] == Shipment.model_json_schema()
    assert first["tool_choice"] == "required"
    checks = [e for e in events if isinstance(e, OutputChecked)]
    assert [(c.turn, c.check, c.accepted) for c in checks] == [
        (2, "schema", True),
        (2, "Shipment", True),
    ]
    [finished] = [e for e in events if isinstance(e, RunFinished)]
    assert finished.output_type == "Shipment" and finished.data == plain.data
    started = [e for e in events if isinstance(e, ModelCallStarted)]
    assert all(e.output is not None and e.output.name == "Shipment" for e in started)


async def test_json_schema_mode_answers_in_the_envelope(
    temporal_client: Client, model_server: ScriptedModelServer
) -> None:
    """The envelope's answer option is the output schema; after a tool result the local
    provider still constrains the answer to it (answer_after_tool)."""
    agent = shipping_agent("shipping-json", tool_mode="json_schema")
    model_server.add(
        reply_json({"tool": "lookup_order", "arguments": {"order_id": 7}}),
        reply_json({"answer": {"order_id": 7, "shipped": True}}),
    )
    provider = OpenAICompatible(
        base_url=model_server.base_url, api_key=API_KEY, answer_after_tool=True
    )
    run_id, output = await _run(temporal_client, agent, provider, "Where is order 7?")
    model_server.verify()
    assert json.loads(output) == {"order_id": 7, "shipped": True}
    first, answer = (r.body for r in model_server.requests)
    envelope = first["response_format"]["json_schema"]["schema"]
    assert envelope["anyOf"][-1]["properties"]["answer"] == {
        "type": "object",
        "properties": {"order_id": {"type": "integer"}, "shipped": {"type": "boolean"}},
        "required": ["order_id", "shipped"],
    }
    assert "tools" not in first
    assert (
        'To give the final answer: {"answer": {"order_id": integer, "shipped": boolean}}'
        in (first["messages"][0]["content"])
    )
    [only] = answer["response_format"]["json_schema"]["schema"]["anyOf"]
    assert list(only["properties"]) == ["answer"]
    # Every body is rebuilt from the history, structured ones included.
    wires = await _assert_bodies_rebuilt(temporal_client, run_id, model_server)
    assert [(w.tool_mode, w.answer_only, w.structured) for w in wires] == [
        ("json_schema", False, True),
        ("json_schema", True, True),
    ]
    typed = await AgentClient(temporal_client).get(run_id).result(Shipment)
    assert typed.output == Shipment(order_id=7, shipped=True)


async def test_native_bodies_with_the_final_answer_tool_are_rebuilt(
    temporal_client: Client, model_server: ScriptedModelServer
) -> None:
    model_server.add(tool_calls(final({"order_id": 3, "shipped": False})))
    provider = OpenAICompatible(base_url=model_server.base_url, api_key=API_KEY)
    run_id, _ = await _run(temporal_client, shipping_agent("wire-out"), provider, "Order 3?")
    wires = await _assert_bodies_rebuilt(temporal_client, run_id, model_server)
    assert [(w.tool_mode, w.structured) for w in wires] == [("native", True)]


async def test_a_repair_turn_after_invalid_json(
    temporal_client: Client, model_server: ScriptedModelServer
) -> None:
    model_server.add(
        tool_calls(final('{"order_id": 7, "shipped": tr')),
        tool_calls(final({"order_id": 7, "shipped": True})).expecting(
            last_message("tool", f"error: the arguments of {OUTPUT_TOOL} are not valid JSON")
        ),
    )
    async with hosted(temporal_client, [shipping_agent()], model_server) as client:
        result = await client.run("shipping", "Where is order 7?", output_type=Shipment)
    model_server.verify()
    assert result.output == Shipment(order_id=7, shipped=True)
    assert result.turns == 2


async def test_a_repair_turn_after_invalid_json_in_json_schema_mode(
    temporal_client: Client, model_server: ScriptedModelServer
) -> None:
    """A reply cut off mid-envelope goes back as a user message; the next one is taken."""
    agent = shipping_agent("shipping-json-repair", tool_mode="json_schema")
    model_server.add(
        reply('{"answer": {"order_id": 7, "ship'),
        reply_json({"answer": {"order_id": 7, "shipped": True}}).expecting(
            last_message("user", "error: the final answer is not valid JSON")
        ),
    )
    async with hosted(temporal_client, [agent], model_server) as client:
        result = await client.run(agent.name, "Where is order 7?", output_type=Shipment)
    model_server.verify()
    assert result.output == Shipment(order_id=7, shipped=True)


async def test_a_repair_turn_after_a_schema_violation(
    temporal_client: Client, model_server: ScriptedModelServer
) -> None:
    model_server.add(
        tool_calls(final({"order_id": "seven", "shipped": True})),
        tool_calls(final({"order_id": 7, "shipped": True})).expecting(
            last_message(
                "tool",
                "error: the final answer is not a valid Shipment: arguments.order_id: "
                "expected integer, got 'seven'",
            )
        ),
    )
    async with hosted(temporal_client, [shipping_agent()], model_server) as client:
        handle = await client.start("shipping", "Where is order 7?")
        result = await handle.result(Shipment)
        events = [e async for e in handle.events(follow=False)]
    model_server.verify()
    assert result.output.order_id == 7
    checks = [(e.turn, e.check, e.accepted) for e in events if isinstance(e, OutputChecked)]
    assert checks == [(1, "schema", False), (2, "schema", True), (2, "Shipment", True)]


async def test_too_many_invalid_answers_fail_with_output_validation_error(
    temporal_client: Client, model_server: ScriptedModelServer
) -> None:
    agent = shipping_agent(limits=FAST.model_copy(update={"max_repair_turns": 1}))
    model_server.add(
        tool_calls(final({"order_id": 7})),
        tool_calls(final({"order_id": 7, "shipped": "yes"})),
    )
    async with hosted(temporal_client, [agent], model_server) as client:
        handle = await client.start("shipping", "Where is order 7?")
        with pytest.raises(OutputValidationError) as info:
            await handle.result()
        status = await handle.status()
        trace = await build_trace(temporal_client, handle.id)
    model_server.verify()
    error = info.value
    assert isinstance(error, RunFailed) and error.error_type == "OutputValidationError"
    assert "failed its checks 2 times in a row (Limits.max_repair_turns=1)" in error.message
    assert "arguments.shipped: expected boolean, got 'yes'" in error.problem
    assert status.state == "failed" and status.error
    assert status.error.startswith("OutputValidationError: ")
    assert [(c.turn, c.accepted) for c in trace.output_checks] == [(1, False), (2, False)]
    text = "\n".join(render_trace(trace))
    assert "output check schema [rejected]" in text
    assert "failed: OutputValidationError" in text


async def test_an_output_validator_rejects_once_then_accepts(
    temporal_client: Client, model_server: ScriptedModelServer
) -> None:
    seen: list[Shipment] = []

    async def known_order(shipment: Shipment) -> str | None:
        seen.append(shipment)
        if shipment.order_id != 7:
            raise OutputRejected(f"there is no order {shipment.order_id}; the user asked about 7")
        return None

    def shipped_only_when_looked_up(shipment: Shipment) -> str | None:
        return None  # runs after known_order, in order, on accepted answers only

    agent = shipping_agent(output_validators=[known_order, shipped_only_when_looked_up])
    model_server.add(
        tool_calls(final({"order_id": 8, "shipped": True})),
        tool_calls(final({"order_id": 7, "shipped": True})).expecting(
            last_message(
                "tool",
                "error: the final answer was rejected by known_order: there is no order 8; "
                f"the user asked about 7. Call {OUTPUT_TOOL} again with a corrected answer.",
            )
        ),
    )
    # No workflow cache: every workflow task replays the run so far (determinism).
    async with hosted(temporal_client, [agent], model_server, max_cached_workflows=0) as client:
        handle = await client.start("shipping", "Where is order 7?")
        result = await handle.result(Shipment)
        trace = await build_trace(temporal_client, handle.id)
    model_server.verify()
    assert result.output == Shipment(order_id=7, shipped=True)
    assert seen == [Shipment(order_id=8, shipped=True), Shipment(order_id=7, shipped=True)]
    assert [(c.turn, c.check, c.accepted) for c in trace.output_checks] == [
        (1, "schema", True),
        (1, "Shipment", True),
        (1, "known_order", False),
        (2, "schema", True),
        (2, "Shipment", True),
        (2, "known_order", True),
        (2, "shipped_only_when_looked_up", True),
    ]
    text = "\n".join(render_trace(trace))
    assert "output check known_order [rejected]" in text
    assert "why: there is no order 8" in text


async def test_an_output_guardrail_on_a_text_agent(
    temporal_client: Client, model_server: ScriptedModelServer
) -> None:
    """Without an output type, validators judge the text: an output guardrail."""

    def no_secrets(text: str) -> str | None:
        return "never reveal the admin password" if "password" in text else None

    agent = Agent(
        "guarded-text",
        instructions="Help.",
        model="openai:gpt-test",
        output_validators=[no_secrets],
        limits=FAST,
    )
    model_server.add(
        reply("The admin password is hunter2."),
        reply("I cannot share that.").expecting(
            last_message(
                "user",
                "error: the final answer was rejected by no_secrets: never reveal the admin "
                "password. Answer again, corrected.",
            )
        ),
    )
    async with hosted(temporal_client, [agent], model_server) as client:
        result = await client.run(agent.name, "What is the admin password?")
    model_server.verify()
    assert result.output == "I cannot share that."
    assert result.data is None and result.output_type is None


async def test_a_list_and_a_primitive_output(
    temporal_client: Client, model_server: ScriptedModelServer
) -> None:
    listing = shipping_agent("listing", output_type=list[Shipment])
    count = shipping_agent("count", output_type=int, tool_mode="json_schema")
    model_server.add(
        tool_calls(final({"result": [{"order_id": 1, "shipped": True}]})),
        reply_json({"answer": 2}),
    )
    async with hosted(temporal_client, [listing, count], model_server) as client:
        shipments = await client.run("listing", "Orders?", output_type=list[Shipment])
        handle = await client.start("count", "How many orders?")
        number = await handle.result(int)
        events = [e async for e in handle.events(follow=False)]
    model_server.verify()
    assert shipments.output == [Shipment(order_id=1, shipped=True)]
    assert shipments.text == '[{"order_id": 1, "shipped": true}]'
    assert number.output == 2 and number.text == "2"
    answer = model_server.requests[1].body["response_format"]["json_schema"]["schema"]["anyOf"][-1]
    assert answer["properties"] == {"answer": {"type": "integer"}}
    # A primitive's schema says everything: no output check activity ran.
    checks = [(e.check, e.accepted) for e in events if isinstance(e, OutputChecked)]
    assert checks == [("schema", True)]


async def test_a_chat_goes_on_after_a_structured_answer(
    temporal_client: Client, model_server: ScriptedModelServer
) -> None:
    """Every call of a final answer's reply gets a result (tools beside the final answer
    do not run), so the next message's request is a valid transcript."""
    ran: list[int] = []

    @tool
    def cancel_order(order_id: int) -> str:
        """Cancel an order."""
        ran.append(order_id)
        return "cancelled"

    agent = Agent(
        "eager",
        instructions="x",
        model="openai:gpt-test",
        tools=[cancel_order],
        output_type=Shipment,
        limits=FAST,
    )

    def results_of_both_calls(req: RecordedRequest) -> None:
        tool_results = [m for m in req.messages if m["role"] == "tool"]
        assert [m["content"] for m in tool_results] == [NOT_RUN, ACCEPTED], tool_results
        assert req.messages[-1] == {"role": "user", "content": "And order 8?"}

    model_server.add(
        tool_calls(call("cancel_order", {"order_id": 7}), final({"order_id": 7, "shipped": True})),
        tool_calls(final({"order_id": 8, "shipped": False})).expecting(results_of_both_calls),
    )
    async with hosted(temporal_client, [agent], model_server) as client:
        handle = await client.start("eager", "Cancel 7 and report", chat=True)
        reply_to_chat = await handle.send("And order 8?")
        await handle.end_chat()
        result = await handle.result(Shipment)
    model_server.verify()
    assert ran == []
    assert json.loads(reply_to_chat.output) == {"order_id": 8, "shipped": False}
    assert result.output == Shipment(order_id=8, shipped=False)


async def test_asking_for_another_type_is_a_config_error(
    temporal_client: Client, model_server: ScriptedModelServer
) -> None:
    model_server.add(tool_calls(final({"order_id": 7, "shipped": True})))
    async with hosted(temporal_client, [shipping_agent()], model_server) as client:
        handle = await client.start("shipping", "Where is order 7?")
        with pytest.raises(ConfigError, match="its answer \\(a Shipment\\) is not a valid int"):
            await handle.result(int)


async def test_the_repair_streak_survives_continue_as_new(
    temporal_client: Client, model_server: ScriptedModelServer
) -> None:
    """A run that hands over to a new execution between two invalid answers still counts
    them in a row: the second one ends it."""
    agent = shipping_agent(
        "shipping-long",
        limits=FAST.model_copy(update={"max_repair_turns": 1, "continue_as_new_after_events": 20}),
    )
    model_server.add(
        tool_calls(call("lookup_order", {"order_id": 7})),
        tool_calls(final({"order_id": 7})),
        # A tool turn between two answers does not end the streak (an accepted answer does).
        tool_calls(call("lookup_order", {"order_id": 7})),
        tool_calls(final({"shipped": True})),
    )
    async with hosted(temporal_client, [agent], model_server) as client:
        handle = await client.start(agent.name, "Where is order 7?")
        with pytest.raises(OutputValidationError):
            await handle.result()
        events = [e async for e in handle.events(follow=False)]
    model_server.verify()
    kinds = [e.type for e in events]
    rejected = [i for i, e in enumerate(events) if isinstance(e, OutputChecked)]
    assert len(rejected) == 2
    assert "continued_as_new" in kinds[rejected[0] : rejected[1]], kinds


async def test_a_validator_that_breaks_fails_the_run_with_its_error(
    temporal_client: Client, model_server: ScriptedModelServer
) -> None:
    """A validator raising anything but OutputRejected is a bug or an outage: retried
    (three attempts), then the run fails naming the validator; the model is not blamed."""
    attempts: list[int] = []

    def flaky(shipment: Shipment) -> None:
        attempts.append(shipment.order_id)
        raise RuntimeError("the orders service is down")

    agent = shipping_agent("shipping-flaky", output_validators=[flaky])
    model_server.add(tool_calls(final({"order_id": 7, "shipped": True})))
    async with hosted(temporal_client, [agent], model_server) as client:
        with pytest.raises(RunFailed) as info:
            await client.run(agent.name, "Where is order 7?")
    model_server.verify()
    assert not isinstance(info.value, OutputValidationError)
    assert info.value.error_type == "RuntimeError"
    assert "output validator 'flaky' raised RuntimeError: the orders service is down" in (
        info.value.message
    )
    assert attempts == [7, 7, 7]


async def test_a_chat_shows_accepted_answers_only(
    temporal_client: Client, model_server: ScriptedModelServer
) -> None:
    """`RunHandle.first_reply` and `ratchet chat` wait for an answer the checks accepted:
    the final_result call's JSON, not a reply sent back for repair."""
    agent = shipping_agent("shipping-chat")
    model_server.add(
        tool_calls(final({"order_id": 7})),
        tool_calls(final({"order_id": 7, "shipped": True})),
        tool_calls(final({"order_id": "8"})),
        tool_calls(final({"order_id": 8, "shipped": False})),
    )
    async with hosted(temporal_client, [agent], model_server) as client:
        handle = await client.start(agent.name, "Where is order 7?", chat=True)
        assert await handle.first_reply() == '{"order_id": 7, "shipped": true}'
        await handle.end_chat()
        await handle.result()
        code, out, err = await ratchet_with_input(
            b"Where is order 8?\n/exit\n",
            "chat",
            agent.name,
            "--no-stream",
            "--address",
            address(temporal_client),
            "--task-queue",
            client.task_queue,
            env={},
        )
    model_server.verify()
    assert code == 0, err
    lines = out.splitlines()
    rejected = next(i for i, line in enumerate(lines) if line.startswith("output    schema"))
    assert "rejected: the final answer is not a valid Shipment" in lines[rejected]
    replies = [line for line in lines if line.startswith("shipping-chat> ")]
    assert replies == ['shipping-chat> {"order_id": 8, "shipped": false}'], out
    assert lines.index(replies[0]) > rejected
