"""Tests for ratchet.testing.ScriptedModelServer, driven by the real openai client."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from openai.types.chat import ChatCompletionFunctionToolParam, ChatCompletionMessageParam

from ratchet.testing import (
    RecordedRequest,
    ScriptedModelServer,
    ScriptedUsage,
    Step,
    call,
    content_filtered,
    context_too_long,
    error,
    hang,
    reply,
    reply_json,
    tool_calls,
)

USER: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hi"}]


def _client(server: ScriptedModelServer, **kwargs: Any) -> openai.OpenAI:
    kwargs.setdefault("api_key", "test")
    kwargs.setdefault("max_retries", 0)
    return openai.OpenAI(base_url=server.base_url, **kwargs)


def _aclient(server: ScriptedModelServer, **kwargs: Any) -> openai.AsyncOpenAI:
    kwargs.setdefault("api_key", "test")
    kwargs.setdefault("max_retries", 0)
    return openai.AsyncOpenAI(base_url=server.base_url, **kwargs)


@pytest.fixture
def server() -> Iterator[ScriptedModelServer]:
    """An empty running server; tests add their script with ``add``."""
    with ScriptedModelServer() as s:
        yield s


# --------------------------------------------------------------------------- #
# Happy paths
# --------------------------------------------------------------------------- #


def test_reply_sync() -> None:
    with ScriptedModelServer([reply("Hello there")]) as server, _client(server) as client:
        completion = client.chat.completions.create(model="gpt-test", messages=USER)

        assert server.base_url.startswith("http://127.0.0.1:")
        assert server.base_url.endswith("/v1")
        choice = completion.choices[0]
        assert choice.message.content == "Hello there"
        assert choice.message.role == "assistant"
        assert choice.message.tool_calls is None
        assert choice.finish_reason == "stop"
        assert completion.object == "chat.completion"
        assert completion.model == "gpt-test"
        assert completion.usage is not None
        assert completion.usage.prompt_tokens > 0
        assert completion.usage.completion_tokens > 0
        assert completion.usage.total_tokens == (
            completion.usage.prompt_tokens + completion.usage.completion_tokens
        )

        (request,) = server.requests
        assert request.index == 0
        assert request.path == "/v1/chat/completions"
        assert request.messages == USER
        assert request.model == "gpt-test"
        assert request.headers["authorization"] == "Bearer test"
        assert request.api_key == "test"
        assert request.step == reply("Hello there")
        assert request.status == 200
        assert request.received_at <= time.time()
        assert server.remaining == 0
        server.verify()


async def test_reply_async() -> None:
    with ScriptedModelServer([reply("one"), reply("two")]) as server:
        async with _aclient(server) as client:
            first = await client.chat.completions.create(model="m", messages=USER)
            second = await client.chat.completions.create(model="m", messages=USER)
        assert [first.choices[0].message.content, second.choices[0].message.content] == [
            "one",
            "two",
        ]
        server.verify()


def test_explicit_usage_is_reported() -> None:
    usage = ScriptedUsage(
        prompt_tokens=100, completion_tokens=7, cached_tokens=40, reasoning_tokens=3
    )
    with ScriptedModelServer([reply("x", usage=usage)]) as server, _client(server) as client:
        completion = client.chat.completions.create(model="m", messages=USER)
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (100, 7)
    assert completion.usage.total_tokens == 107
    assert completion.usage.prompt_tokens_details is not None
    assert completion.usage.prompt_tokens_details.cached_tokens == 40
    assert completion.usage.completion_tokens_details is not None
    assert completion.usage.completion_tokens_details.reasoning_tokens == 3


def test_tool_calls_with_parsed_arguments() -> None:
    script = [
        tool_calls(
            call("get_weather", {"city": "Oslo", "days": 2}),
            call("get_time", {"tz": "Europe/Oslo"}, id="call_custom"),
            text="Let me check.",
        ),
        tool_calls(call("get_weather", {"city": "Bergen"})),
    ]
    tools: list[ChatCompletionFunctionToolParam] = [
        {
            "type": "function",
            "function": {"name": "get_weather", "parameters": {"type": "object"}},
        }
    ]
    with ScriptedModelServer(script) as server, _client(server) as client:
        first = client.chat.completions.create(model="m", messages=USER, tools=tools)
        second = client.chat.completions.create(model="m", messages=USER)

    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content == "Let me check."
    calls = choice.message.tool_calls
    assert calls is not None
    assert [c.id for c in calls] == ["call_1", "call_custom"]
    assert [c.type for c in calls] == ["function", "function"]
    assert [c.function.name for c in calls] == ["get_weather", "get_time"]  # type: ignore[union-attr]
    assert json.loads(calls[0].function.arguments) == {"city": "Oslo", "days": 2}  # type: ignore[union-attr]
    # Default ids keep counting across responses so they stay unique per server.
    second_calls = second.choices[0].message.tool_calls
    assert second_calls is not None
    assert second_calls[0].id == "call_2"
    assert second.choices[0].message.content is None
    assert server.requests[0].tool_names == ["get_weather"]
    server.verify()


def test_malformed_arguments_pass_through_verbatim() -> None:
    with (
        ScriptedModelServer([tool_calls(call("refund", '{"order_id": 10'))]) as server,
        _client(server) as client,
    ):
        completion = client.chat.completions.create(model="m", messages=USER)
    calls = completion.choices[0].message.tool_calls
    assert calls is not None
    assert calls[0].function.arguments == '{"order_id": 10'  # type: ignore[union-attr]
    server.verify()


def test_reply_json() -> None:
    payload = {"answer": 42, "items": ["a", "b"]}
    with ScriptedModelServer([reply_json(payload)]) as server, _client(server) as client:
        completion = client.chat.completions.create(model="m", messages=USER)
    content = completion.choices[0].message.content
    assert content is not None
    assert json.loads(content) == payload


def test_content_filtered_and_length() -> None:
    script = [content_filtered(), reply("trunc", finish_reason="length")]
    with ScriptedModelServer(script) as server, _client(server) as client:
        filtered = client.chat.completions.create(model="m", messages=USER)
        truncated = client.chat.completions.create(model="m", messages=USER)
    assert filtered.choices[0].finish_reason == "content_filter"
    assert filtered.choices[0].message.content is None
    assert truncated.choices[0].finish_reason == "length"
    server.verify()


def test_delay() -> None:
    with ScriptedModelServer([reply("slow", delay=0.3)]) as server, _client(server) as client:
        started = time.monotonic()
        client.chat.completions.create(model="m", messages=USER)
        assert time.monotonic() - started >= 0.3


def test_add_while_running(server: ScriptedModelServer) -> None:
    with _client(server) as client:
        server.add(reply("first"))
        assert server.remaining == 1
        first = client.chat.completions.create(model="m", messages=USER)
        assert first.choices[0].message.content == "first"
        server.add(reply("second"), reply("third"))
        contents = [
            client.chat.completions.create(model="m", messages=USER).choices[0].message.content
            for _ in range(2)
        ]
    assert contents == ["second", "third"]
    server.verify()


def test_models_and_health(server: ScriptedModelServer) -> None:
    with _client(server) as client:
        models = client.models.list()
        assert [m.id for m in models.data] == ["scripted-model"]
    url = server.base_url.removesuffix("/v1") + "/health"
    with urllib.request.urlopen(url, timeout=5) as response:
        assert response.status == 200
        assert json.loads(response.read()) == {"status": "ok"}
    # Neither endpoint is a chat completion, so nothing is recorded or consumed.
    assert server.requests == []
    server.verify()


# --------------------------------------------------------------------------- #
# Errors
# --------------------------------------------------------------------------- #


def test_rate_limit_with_retry_after_header() -> None:
    with (
        ScriptedModelServer([error(429, headers={"Retry-After": "1"})]) as server,
        _client(server) as client,
        pytest.raises(openai.RateLimitError) as info,
    ):
        client.chat.completions.create(model="m", messages=USER)
    assert info.value.status_code == 429
    assert info.value.response.headers["retry-after"] == "1"
    assert info.value.code == "rate_limit_exceeded"
    assert info.value.type == "requests"
    assert server.requests[0].status == 429
    server.verify()


@pytest.mark.parametrize(
    ("status", "exc_type"),
    [
        (401, openai.AuthenticationError),
        (400, openai.BadRequestError),
        (500, openai.InternalServerError),
        (503, openai.InternalServerError),
    ],
)
def test_error_statuses(status: int, exc_type: type[openai.APIStatusError]) -> None:
    with (
        ScriptedModelServer([error(status, message="boom", code="c")]) as server,
        _client(server) as client,
        pytest.raises(exc_type) as info,
    ):
        client.chat.completions.create(model="m", messages=USER)
    assert info.value.status_code == status
    assert info.value.body == {
        "message": "boom",
        "type": info.value.type,
        "param": None,
        "code": "c",
    }
    server.verify()


def test_client_retries_consume_steps() -> None:
    # retry-after-ms keeps the client's backoff short.
    fast = {"retry-after-ms": "10"}
    script = [error(503, headers=fast), error(429, headers=fast), reply("finally")]
    with ScriptedModelServer(script) as server, _client(server, max_retries=2) as client:
        completion = client.chat.completions.create(model="m", messages=USER)
    assert completion.choices[0].message.content == "finally"
    assert [r.status for r in server.requests] == [503, 429, 200]
    assert server.requests[2].headers["x-stainless-retry-count"] == "2"
    server.verify()


def test_context_too_long() -> None:
    with (
        ScriptedModelServer([context_too_long()]) as server,
        _client(server) as client,
        pytest.raises(openai.BadRequestError) as info,
    ):
        client.chat.completions.create(model="m", messages=USER)
    assert info.value.code == "context_length_exceeded"
    assert info.value.param == "messages"
    assert "maximum context length" in info.value.message
    server.verify()


def test_expected_api_key_rejects_without_consuming_a_step() -> None:
    with ScriptedModelServer([reply("ok")], expected_api_key="sk-right") as server:
        with _client(server, api_key="sk-wrong-key") as bad:
            with pytest.raises(openai.AuthenticationError) as info:
                bad.chat.completions.create(model="m", messages=USER)
            assert info.value.code == "invalid_api_key"
            assert "sk-wrong-key" not in info.value.message  # masked like the real API
            with pytest.raises(openai.AuthenticationError):
                bad.models.list()
        assert server.remaining == 1
        with _client(server, api_key="sk-right") as good:
            completion = good.chat.completions.create(model="m", messages=USER)
        assert completion.choices[0].message.content == "ok"
        assert [r.api_key for r in server.requests] == ["sk-wrong-key", "sk-right"]
        assert [r.status for r in server.requests] == [401, 200]
        # Rejecting a bad key is the server doing its job, not a script failure.
        server.verify()


# --------------------------------------------------------------------------- #
# Hanging and in-flight calls
# --------------------------------------------------------------------------- #


def test_hang_until_client_timeout() -> None:
    with ScriptedModelServer([hang()]) as server, _client(server, timeout=0.3) as client:
        started = time.monotonic()
        with pytest.raises(openai.APITimeoutError):
            client.chat.completions.create(model="m", messages=USER)
        assert time.monotonic() - started < 5
        assert server.requests[0].status is None
        stop_started = time.monotonic()
        server.stop()
        assert time.monotonic() - stop_started < 2  # stop() releases the hanging handler
    server.verify()


def test_hang_with_seconds_closes_connection() -> None:
    with (
        ScriptedModelServer([hang(0.2)]) as server,
        _client(server, timeout=10) as client,
        pytest.raises(openai.APIConnectionError) as info,
    ):
        client.chat.completions.create(model="m", messages=USER)
        assert not isinstance(info.value, openai.APITimeoutError)


def test_wait_for_requests_while_call_in_flight() -> None:
    errors: list[BaseException] = []
    server = ScriptedModelServer([hang()]).start()
    client = _client(server, timeout=30)

    def worker() -> None:
        try:
            client.chat.completions.create(model="m", messages=USER)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=worker)
    thread.start()
    try:
        request = server.wait_for_requests(1, timeout=5)
        assert request.step is not None
        assert request.step.kind == "hang"
        assert thread.is_alive()  # the call is still in flight
    finally:
        server.stop()  # like killing the model mid-call
        thread.join(timeout=5)
        client.close()
    assert not thread.is_alive()
    assert len(errors) == 1
    assert isinstance(errors[0], openai.APIConnectionError)


def test_wait_for_requests_timeout(server: ScriptedModelServer) -> None:
    with pytest.raises(TimeoutError, match=r"expected at least 1 chat-completion request\(s\)"):
        server.wait_for_requests(1, timeout=0.1)


async def test_wait_for_requests_async() -> None:
    with ScriptedModelServer([hang()]) as server:
        async with _aclient(server, timeout=30) as client:
            task = asyncio.create_task(client.chat.completions.create(model="m", messages=USER))
            request = await server.wait_for_requests_async(1, timeout=5)
            assert request.messages == USER
            assert not task.done()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task


# --------------------------------------------------------------------------- #
# Failing loudly
# --------------------------------------------------------------------------- #


def test_unexpected_extra_call() -> None:
    with ScriptedModelServer([reply("only")]) as server, _client(server) as client:
        client.chat.completions.create(model="m", messages=USER)
        with pytest.raises(openai.BadRequestError) as info:
            client.chat.completions.create(model="m", messages=USER)
    assert "ScriptedModelServer: unexpected call #2; the script had 1 steps" in info.value.message
    assert info.value.code == "unexpected_call"
    assert server.requests[1].error is not None
    with pytest.raises(AssertionError, match=r"unexpected call #2; the script had 1 steps"):
        server.verify()


def test_unexpected_call_is_not_retried_by_client() -> None:
    with (
        ScriptedModelServer() as server,
        _client(server, max_retries=3) as client,
        pytest.raises(openai.BadRequestError),
    ):
        client.chat.completions.create(model="m", messages=USER)
    assert len(server.requests) == 1


def test_unconsumed_steps() -> None:
    script = [reply("used"), tool_calls(call("lookup", {})), reply("never")]
    with ScriptedModelServer(script) as server, _client(server) as client:
        client.chat.completions.create(model="m", messages=USER)
    assert server.remaining == 2
    with pytest.raises(AssertionError, match=r"2 unconsumed step\(s\): tool_calls\(lookup\)"):
        server.verify()


def test_stop_does_not_raise_and_is_idempotent() -> None:
    server = ScriptedModelServer([reply("never")])
    server.stop()  # never started
    server = ScriptedModelServer([reply("never")]).start()
    server.stop()
    server.stop()
    with pytest.raises(AssertionError):
        server.verify()


def test_expect_failure() -> None:
    def last_is_tool_result(request: RecordedRequest) -> None:
        assert request.messages[-1]["role"] == "tool", "expected a tool result"

    with (
        ScriptedModelServer([reply("x", expect=last_is_tool_result)]) as server,
        _client(server, max_retries=2) as client,
        pytest.raises(openai.BadRequestError) as info,
    ):
        client.chat.completions.create(model="m", messages=USER)
    assert "expected a tool result" in info.value.message
    assert info.value.code == "expectation_failed"
    assert len(server.requests) == 1  # not retried
    with pytest.raises(AssertionError, match="expected a tool result") as verify_info:
        server.verify()
    # The original assertion is chained, so its traceback shows in the report.
    assert isinstance(verify_info.value.__cause__, AssertionError)


def test_expect_pass_and_boolean_expectations() -> None:
    script = [
        reply("a", expect=lambda r: r.messages[-1]["content"] == "hi"),
        reply("b").expecting(lambda r: r.model == "other"),
    ]
    with ScriptedModelServer(script) as server, _client(server) as client:
        client.chat.completions.create(model="m", messages=USER)
        with pytest.raises(openai.BadRequestError, match="expectation returned False"):
            client.chat.completions.create(model="m", messages=USER)
    with pytest.raises(AssertionError, match=r"call #2 \(reply\('b'\)\)"):
        server.verify()


def test_unknown_url_is_404_and_fails_verify(server: ScriptedModelServer) -> None:
    with _client(server) as client, pytest.raises(openai.NotFoundError):
        client.responses.create(model="m", input="hi")
    with pytest.raises(AssertionError, match="unknown request URL: POST /v1/responses"):
        server.verify()


def test_invalid_body_is_400(server: ScriptedModelServer) -> None:
    request = urllib.request.Request(
        server.base_url + "/chat/completions",
        data=b"not json",
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(request, timeout=5)
    assert info.value.code == 400
    body = json.loads(info.value.read())
    info.value.close()
    assert body["error"]["code"] == "invalid_body"
    with pytest.raises(AssertionError, match="not a JSON object"):
        server.verify()


def test_step_validation() -> None:
    with pytest.raises(ValueError, match="at least one call"):
        tool_calls()
    with pytest.raises(ValueError, match=r"400\.\.599"):
        error(200)
    with pytest.raises(TypeError):
        ScriptedModelServer().add("reply")  # type: ignore[arg-type]
    with pytest.raises(RuntimeError, match="not started"):
        _ = ScriptedModelServer().base_url


# --------------------------------------------------------------------------- #
# Handler mode
# --------------------------------------------------------------------------- #


def _echo(request: RecordedRequest) -> Step:
    return reply(f"echo: {request.messages[-1]['content']}")


async def test_handler_mode_concurrent() -> None:
    with ScriptedModelServer([reply("scripted first")], handler=_echo) as server:
        async with _aclient(server) as client:
            first = await client.chat.completions.create(model="m", messages=USER)
            results = await asyncio.gather(
                *(
                    client.chat.completions.create(
                        model="m",
                        messages=[{"role": "user", "content": f"run-{i}"}],
                    )
                    for i in range(20)
                )
            )
    assert first.choices[0].message.content == "scripted first"
    assert [r.choices[0].message.content for r in results] == [f"echo: run-{i}" for i in range(20)]
    assert len(server.requests) == 21
    assert [r.index for r in server.requests] == list(range(21))
    server.verify()


def test_handler_failure_is_reported() -> None:
    def broken(request: RecordedRequest) -> Step:
        raise RuntimeError("handler bug")

    with (
        ScriptedModelServer(handler=broken) as server,
        _client(server) as client,
        pytest.raises(openai.BadRequestError, match="handler bug"),
    ):
        client.chat.completions.create(model="m", messages=USER)
    with pytest.raises(AssertionError, match="handler failed on call #1"):
        server.verify()


# --------------------------------------------------------------------------- #
# Streaming
# --------------------------------------------------------------------------- #


def test_stream_reply() -> None:
    text = "A streamed answer that spans several chunks."
    with ScriptedModelServer([reply(text)]) as server, _client(server) as client:
        stream = client.chat.completions.create(
            model="m",
            messages=USER,
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = list(stream)
    assert len(chunks) > 3
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert content == text
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens > 0
    assert server.requests[0].stream
    server.verify()


async def test_stream_tool_calls_async() -> None:
    script = [tool_calls(call("search", {"query": "temporal durable execution"}), call("noop", {}))]
    with ScriptedModelServer(script) as server:
        async with _aclient(server) as client:
            stream = await client.chat.completions.create(
                model="m",
                messages=USER,
                stream=True,
            )
            chunks = [chunk async for chunk in stream]
    calls: dict[int, dict[str, str]] = {}
    finish = None
    for chunk in chunks:
        assert chunk.usage is None
        choice = chunk.choices[0]
        finish = choice.finish_reason or finish
        for delta in choice.delta.tool_calls or []:
            entry = calls.setdefault(delta.index, {"id": "", "name": "", "arguments": ""})
            if delta.id:
                entry["id"] = delta.id
            if delta.function and delta.function.name:
                entry["name"] = delta.function.name
            if delta.function and delta.function.arguments:
                entry["arguments"] += delta.function.arguments
    assert finish == "tool_calls"
    assert [c["name"] for c in calls.values()] == ["search", "noop"]
    assert [c["id"] for c in calls.values()] == ["call_1", "call_2"]
    assert json.loads(calls[0]["arguments"]) == {"query": "temporal durable execution"}
    assert json.loads(calls[1]["arguments"]) == {}
    server.verify()


def test_stream_error_step_is_plain_http_error() -> None:
    with (
        ScriptedModelServer([error(429)]) as server,
        _client(server) as client,
        pytest.raises(openai.RateLimitError),
    ):
        client.chat.completions.create(model="m", messages=USER, stream=True)


# --------------------------------------------------------------------------- #
# Other processes
# --------------------------------------------------------------------------- #


def test_reachable_from_subprocess() -> None:
    code = (
        "import sys, openai\n"
        "c = openai.OpenAI(base_url=sys.argv[1], api_key='test', max_retries=0)\n"
        "r = c.chat.completions.create(model='m', messages=[{'role': 'user', 'content': 'x'}])\n"
        "print(r.choices[0].message.content)\n"
    )
    with ScriptedModelServer([reply("from afar")]) as server:
        result = subprocess.run(
            [sys.executable, "-c", code, server.base_url],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        assert result.stdout.strip() == "from afar"
        server.verify()
