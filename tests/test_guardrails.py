"""Input guardrails end to end: code and model checks run in an activity before the first
model call; a trip ends the run with GuardrailTripped; every verdict is an event and a
trace line."""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.client import Client

from ratchet import (
    Agent,
    ConfigError,
    GuardrailTripped,
    InputRejected,
    Limits,
    ModelGuardrail,
)
from ratchet.events import GuardrailChecked, ModelCallStarted
from ratchet.http import AuthSettings, KeyStore, create_app
from ratchet.testing import ScriptedModelServer, reply, reply_json
from ratchet.trace import build_trace, render_trace

from .conftest import hosted
from .http_kit import keys_of_every_role, serve

FAST = Limits(model_retry_initial_seconds=0.1, model_retry_max_seconds=0.5, max_turns=4)


def no_card_numbers(text: str) -> str | None:
    if any(word.isdigit() and len(word) >= 12 for word in text.split()):
        return "please do not send card numbers"
    return None


async def not_shouting(text: str) -> None:
    if text.isupper():
        raise InputRejected("no need to shout")


def agent(name: str, *rails: object) -> Agent:
    return Agent(
        name,
        instructions="Help with orders.",
        model="openai:test",
        limits=FAST,
        input_guardrails=rails,  # type: ignore[arg-type]
    )


async def test_passing_checks_are_recorded_and_the_run_goes_on(
    temporal_client: Client, model_server: ScriptedModelServer
) -> None:
    model_server.add(reply("Order 7 shipped."))
    a = agent("guarded-ok", no_card_numbers, not_shouting)
    async with hosted(temporal_client, [a], model_server) as client:
        handle = await client.start("guarded-ok", "Where is order 7?")
        result = await handle.result()
        events = [e async for e in handle.events(follow=False)]
        trace = await build_trace(temporal_client, handle.id)
    model_server.verify()
    assert result.output == "Order 7 shipped."
    checks = [e for e in events if isinstance(e, GuardrailChecked)]
    assert [(c.guardrail, c.passed, c.turn) for c in checks] == [
        ("no_card_numbers", True, 1),
        ("not_shouting", True, 1),
    ]
    # The checks come before the first model call.
    first_model = next(e for e in events if isinstance(e, ModelCallStarted))
    assert all(c.seq < first_model.seq for c in checks)
    assert "  input guardrail no_card_numbers [passed]" in "\n".join(render_trace(trace))


async def test_a_tripped_check_stops_the_run_before_any_model_call(
    temporal_client: Client, model_server: ScriptedModelServer
) -> None:
    a = agent("guarded-trip", not_shouting, no_card_numbers)
    async with hosted(temporal_client, [a], model_server) as client:
        handle = await client.start("guarded-trip", "my card is 4111111111111111")
        with pytest.raises(GuardrailTripped) as caught:
            await handle.result()
        events = [e async for e in handle.events(follow=False)]
        trace = await build_trace(temporal_client, handle.id)
    assert model_server.requests == []  # no model saw the message
    err = caught.value
    assert err.error_type == "GuardrailTripped" and err.guardrail == "no_card_numbers"
    assert err.reason == "please do not send card numbers"
    checks = [(e.guardrail, e.passed, e.message) for e in events if isinstance(e, GuardrailChecked)]
    assert checks == [
        ("not_shouting", True, ""),
        ("no_card_numbers", False, "please do not send card numbers"),
    ]
    text = "\n".join(render_trace(trace))
    assert "input guardrail no_card_numbers [tripped]" in text
    assert "why: please do not send card numbers" in text
    assert "GuardrailTripped" in text


async def test_a_raised_rejection_trips_too(
    temporal_client: Client, model_server: ScriptedModelServer
) -> None:
    a = agent("guarded-raise", not_shouting)
    async with hosted(temporal_client, [a], model_server) as client:
        with pytest.raises(GuardrailTripped, match="no need to shout"):
            await client.run("guarded-raise", "WHERE IS MY ORDER")


async def test_a_model_guardrail_asks_for_a_verdict(
    temporal_client: Client, model_server: ScriptedModelServer
) -> None:
    topic = ModelGuardrail(
        name="on_topic", model="openai:cheap", instructions="Only questions about orders."
    )
    a = agent("guarded-model", topic)
    model_server.add(
        reply_json({"allowed": True}),
        reply("Order 7 shipped."),
        reply_json({"allowed": False, "reason": "I can only help with orders."}),
    )
    async with hosted(temporal_client, [a], model_server) as client:
        result = await client.run("guarded-model", "Where is order 7?")
        with pytest.raises(GuardrailTripped) as caught:
            await client.run("guarded-model", "Write me a poem.")
    model_server.verify()
    assert result.output == "Order 7 shipped."
    # The guardrail's call counts in the run's usage (two calls' worth).
    assert result.usage.total_tokens > 0
    ask = model_server.requests[0]
    assert ask.body["model"] == "cheap"
    assert "Only questions about orders." in ask.messages[0]["content"]
    assert '"allowed"' in ask.messages[0]["content"]
    assert ask.messages[-1] == {"role": "user", "content": "Where is order 7?"}
    assert caught.value.reason == "I can only help with orders."


async def test_chat_messages_are_each_checked(
    temporal_client: Client, model_server: ScriptedModelServer
) -> None:
    model_server.add(reply("Hello!"))
    a = agent("guarded-chat", no_card_numbers)
    async with hosted(temporal_client, [a], model_server) as client:
        handle = await client.start("guarded-chat", "hi", chat=True)
        await handle.first_reply()
        # The message ends the run; its sender is told why, not only that it ended.
        with pytest.raises(GuardrailTripped, match="no_card_numbers"):
            await handle.send("card 4111111111111111")
        with pytest.raises(GuardrailTripped):
            await handle.result()
    assert len(model_server.requests) == 1


async def test_a_chat_message_stopped_by_a_guardrail_is_a_409_over_http(
    temporal_client: Client, model_server: ScriptedModelServer, tmp_path: Path
) -> None:
    model_server.add(reply("Hello!"))
    a = agent("guarded-http", no_card_numbers)
    store = KeyStore(tmp_path / "keys.sqlite")
    keys = keys_of_every_role(store)
    async with hosted(temporal_client, [a], model_server) as client:
        app = create_app(client, agents=[a], auth=AuthSettings(keys=store))
        with serve(app) as served:
            async with served.client(keys["operator"]) as http:
                started = await http.post(
                    "/v1/runs", json={"agent": "guarded-http", "prompt": "hi", "chat": True}
                )
                handle = client.get(started.json()["id"])
                await handle.first_reply()
                sent = await http.post(
                    f"/v1/runs/{handle.id}/messages", json={"text": "card 4111111111111111"}
                )
    store.close()
    assert sent.status_code == 409, sent.text
    assert sent.json()["error_type"] == "GuardrailTripped"
    assert "please do not send card numbers" in sent.json()["detail"]


def test_guardrail_definitions_are_checked() -> None:
    with pytest.raises(ConfigError, match="not a named function"):
        agent("bad", lambda text: None)
    with pytest.raises(ConfigError, match="two input guardrails are named 'no_card_numbers'"):
        agent("bad", no_card_numbers, no_card_numbers)
    with pytest.raises(ConfigError, match="bad model string"):
        ModelGuardrail(name="x", model="nope", instructions="x")
    spec = agent("ok", no_card_numbers, not_shouting).spec()
    assert spec.input_guardrails == ["no_card_numbers", "not_shouting"]
