"""ScriptedModelServer as a streaming endpoint: paced chunks, stalls, hang-ups, refusal.

Driven by the real openai client over real HTTP, like test_scripted_server.py.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import statistics
import threading
import time
from collections.abc import Callable
from typing import Any

import openai
import pytest

from ratchet.testing import ScriptedModelServer, Step, call, hang, reply, reply_json, tool_calls

from .test_scripted_server import USER, _aclient, _client


def _timed_chunks(stream: Any) -> list[tuple[float, Any]]:
    """Every chunk of ``stream`` with its ``time.monotonic()`` of arrival."""
    return [(time.monotonic(), chunk) for chunk in stream]


def _gaps(arrivals: list[float]) -> list[float]:
    return [later - earlier for earlier, later in itertools.pairwise(arrivals)]


def _paced(arrivals: list[float], since: float, delay: float, chunk_delay: float) -> bool:
    """Whether chunk ``k`` arrived no sooner than ``delay + k * chunk_delay`` after ``since``.

    Gaps between arrivals would not do: a client that reads late gets two
    chunks at once, however far apart the server sent them.
    """
    slack = 0.002  # clock and timer granularity
    return all(at - since >= delay + k * chunk_delay - slack for k, at in enumerate(arrivals))


def _text(chunks: list[Any]) -> list[str]:
    return [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]


def _eventually(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


# --------------------------------------------------------------------------- #
# A fixed token rate
# --------------------------------------------------------------------------- #


def test_chunks_are_paced_and_the_role_chunk_goes_after_delay() -> None:
    step = reply("abcdefgh", delay=0.2, chunk_delay=0.3, chunk_chars=4)
    with ScriptedModelServer([step]) as server, _client(server) as client:
        asked = time.monotonic()
        timed = _timed_chunks(client.chat.completions.create(model="m", messages=USER, stream=True))
    arrivals = [at for at, _ in timed]
    chunks = [chunk for _, chunk in timed]
    assert chunks[0].choices[0].delta.role == "assistant"
    assert 0.2 <= arrivals[0] - asked < 0.45  # after `delay`, not after a chunk_delay too
    assert _text(chunks) == ["abcd", "efgh"]
    assert len(chunks) == 4  # role, two pieces, finish
    assert _paced(arrivals, asked, 0.2, 0.3), [at - asked for at in arrivals]
    [request] = server.requests
    assert (request.chunks_sent, request.client_disconnected) == (4, False)
    server.verify()


def test_a_fast_token_rate_is_kept() -> None:
    """Short gaps stay short: each chunk leaves as it is written."""
    step = reply("x" * 40, chunk_delay=0.01, chunk_chars=1)
    with ScriptedModelServer([step]) as server, _client(server) as client:
        asked = time.monotonic()
        timed = _timed_chunks(client.chat.completions.create(model="m", messages=USER, stream=True))
    arrivals = [at for at, _ in timed]
    assert len(arrivals) == 42  # role, 40 pieces, finish
    assert _paced(arrivals, asked, 0.0, 0.01)
    gaps = _gaps(arrivals)
    assert statistics.median(gaps) < 0.03, gaps  # 40 ms would be a delayed ACK
    server.verify()


def test_each_chunk_notes_when_it_left() -> None:
    """``chunk_times``: one ``time.monotonic()`` per chunk sent, paced, before the client has it."""
    step = reply("abcdefghijkl", delay=0.1, chunk_delay=0.05, chunk_chars=4)
    with ScriptedModelServer([step]) as server, _client(server) as client:
        asked = time.monotonic()
        timed = _timed_chunks(client.chat.completions.create(model="m", messages=USER, stream=True))
    [request] = server.requests
    sent = request.chunk_times
    assert len(sent) == request.chunks_sent == len(timed) == 5  # role, 3 pieces, finish
    assert asked + 0.1 <= sent[0]  # after the delay
    assert all(gap >= 0.05 - 0.002 for gap in _gaps(list(sent))), _gaps(list(sent))
    # Noted just after it was written: the client has each chunk about then (it may
    # read it a moment before the server's thread notes the time), within the gap.
    assert all(-0.01 < at - left < 0.05 for (at, _), left in zip(timed, sent, strict=True))
    server.verify()


def test_tool_call_arguments_stream_at_the_rate_with_the_usage_chunk() -> None:
    arguments = {"query": "abcdefghij"}
    step = tool_calls(call("search", arguments), chunk_delay=0.05, chunk_chars=5)
    with ScriptedModelServer([step]) as server, _client(server) as client:
        asked = time.monotonic()
        timed = _timed_chunks(
            client.chat.completions.create(
                model="m", messages=USER, stream=True, stream_options={"include_usage": True}
            )
        )
    chunks = [chunk for _, chunk in timed]
    pieces = [
        delta.function.arguments
        for c in chunks
        if c.choices
        for delta in c.choices[0].delta.tool_calls or []
        if delta.function and delta.function.arguments
    ]
    wire = json.dumps(arguments)
    assert pieces == [wire[i : i + 5] for i in range(0, len(wire), 5)]
    assert json.loads("".join(pieces)) == arguments
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.total_tokens > 0
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"
    assert _paced([at for at, _ in timed], asked, 0.0, 0.05)
    # role, tool header, 5 argument pieces, finish, usage
    assert len(chunks) == server.requests[0].chunks_sent == 9
    server.verify()


def test_plain_requests_are_not_paced() -> None:
    with (
        ScriptedModelServer([reply_json({"a": 1}, chunk_delay=5, chunk_chars=1)]) as server,
        _client(server) as client,
    ):
        asked = time.monotonic()
        answer = client.chat.completions.create(model="m", messages=USER)
        assert time.monotonic() - asked < 2
    assert answer.choices[0].message.content == '{"a": 1}'
    assert server.requests[0].chunks_sent == 0
    server.verify()


# --------------------------------------------------------------------------- #
# Stalls
# --------------------------------------------------------------------------- #


def test_a_stall_sends_some_chunks_then_nothing_until_the_client_hangs_up() -> None:
    step = reply("x" * 40, chunk_chars=4, stall_after_chunks=2)
    with ScriptedModelServer([step]) as server, _client(server, timeout=0.5) as client:
        received: list[Any] = []
        stream = client.chat.completions.create(model="m", messages=USER, stream=True)
        with pytest.raises(openai.APITimeoutError):  # nothing more comes
            for chunk in stream:
                received.append(chunk)
        gone = server.wait_for_disconnect(timeout=5)
    assert _text(received) == ["xxxx", "xxxx"]
    assert len(received) == 3  # the role chunk and two more
    assert gone.index == 0 and gone.stream
    assert (gone.chunks_sent, gone.client_disconnected) == (3, True)
    assert server.requests[0] == gone
    server.verify()


def test_a_stall_that_runs_out_closes_the_stream_unfinished() -> None:
    step = reply("x" * 40, chunk_chars=4, stall_after_chunks=0, stall_seconds=0.3)
    with ScriptedModelServer([step]) as server, _client(server, timeout=10) as client:
        received: list[Any] = []
        asked = time.monotonic()
        stream = client.chat.completions.create(model="m", messages=USER, stream=True)
        with pytest.raises(openai.APIConnectionError) as info:
            for chunk in stream:
                received.append(chunk)
        assert not isinstance(info.value, openai.APITimeoutError)
        assert 0.3 <= time.monotonic() - asked < 5
    assert [c.choices[0].delta.role for c in received] == ["assistant"]
    request = server.requests[0]
    # The server ended it: not the client's hang-up.
    assert (request.chunks_sent, request.client_disconnected) == (1, False)
    server.verify()


def test_a_stall_past_the_last_chunk_withholds_only_done() -> None:
    step = reply("abc", stall_after_chunks=10, stall_seconds=0.3)
    with ScriptedModelServer([step]) as server, _client(server) as client:
        received: list[Any] = []
        stream = client.chat.completions.create(
            model="m", messages=USER, stream=True, stream_options={"include_usage": True}
        )
        with pytest.raises(openai.APIConnectionError):
            for chunk in stream:
                received.append(chunk)
    assert _text(received) == ["abc"]
    assert received[-1].usage is not None  # role, content, finish, usage: all but [DONE]
    assert server.requests[0].chunks_sent == len(received) == 4
    server.verify()


def test_a_stall_step_answering_a_plain_request_hangs() -> None:
    step = reply("never", stall_after_chunks=1, stall_seconds=0.2)
    with (
        ScriptedModelServer([step]) as server,
        _client(server, timeout=10) as client,
        pytest.raises(openai.APIConnectionError) as info,
    ):
        client.chat.completions.create(model="m", messages=USER)
    assert not isinstance(info.value, openai.APITimeoutError)
    assert server.requests[0].status is None
    server.verify()


@pytest.mark.parametrize(
    "step",
    [
        reply("abcdef", chunk_chars=1, stall_after_chunks=2),
        reply("abcdef", chunk_chars=1, chunk_delay=30),
    ],
    ids=["stalled", "paced"],
)
def test_stop_releases_a_held_stream_promptly(step: Step) -> None:
    failures: list[BaseException] = []
    server = ScriptedModelServer([step]).start()

    def read() -> None:
        with _client(server, timeout=60) as client:
            try:
                list(client.chat.completions.create(model="m", messages=USER, stream=True))
            except openai.APIConnectionError as exc:
                failures.append(exc)

    reader = threading.Thread(target=read)
    reader.start()
    _eventually(lambda: bool(server.requests) and server.requests[0].chunks_sent >= 1)
    stopping = time.monotonic()
    server.stop()
    reader.join(timeout=5)
    assert not reader.is_alive()
    assert time.monotonic() - stopping < 2
    assert len(failures) == 1  # cut off, not finished
    assert not server.requests[0].client_disconnected  # the server stopped it


# --------------------------------------------------------------------------- #
# Hang-ups
# --------------------------------------------------------------------------- #


def test_a_client_closing_a_paced_stream_is_recorded() -> None:
    step = reply("y" * 60, chunk_delay=0.05, chunk_chars=2)  # 32 chunks
    with ScriptedModelServer([step]) as server, _client(server) as client:
        stream = client.chat.completions.create(model="m", messages=USER, stream=True)
        for _, _chunk in zip(range(3), stream, strict=False):
            pass
        stream.close()
        gone = server.wait_for_disconnect(timeout=5)
    assert gone.client_disconnected
    assert 3 <= gone.chunks_sent < 32
    server.verify()


def test_a_completed_stream_is_not_a_disconnect() -> None:
    steps = [reply("done and dusted", chunk_delay=0.01), reply("plain")]
    with ScriptedModelServer(steps) as server:
        with _client(server) as client:
            chunks = list(client.chat.completions.create(model="m", messages=USER, stream=True))
            # The pooled connection is used again, then closed with the client.
            client.chat.completions.create(model="m", messages=USER)
        with pytest.raises(TimeoutError, match=r"#1 stream: HTTP 200, 4 chunk\(s\) sent"):
            server.wait_for_disconnect(timeout=0.5)
    streamed, plain = server.requests
    assert (streamed.chunks_sent, streamed.client_disconnected) == (len(chunks), False)
    assert (plain.chunks_sent, plain.client_disconnected) == (0, False)
    server.verify()


def test_hang_ups_during_a_hang_and_a_delay_are_recorded_in_order() -> None:
    steps = [hang(), reply("late", delay=30)]
    with ScriptedModelServer(steps) as server, _client(server, timeout=0.3) as client:
        for _ in steps:
            with pytest.raises(openai.APITimeoutError):
                client.chat.completions.create(model="m", messages=USER)
        first = server.wait_for_disconnect(timeout=5)
        second = server.wait_for_disconnect(timeout=5, n=2)
    assert [first.index, second.index] == [0, 1]
    assert all(r.client_disconnected and r.chunks_sent == 0 for r in (first, second))
    server.verify()


async def test_cancelling_a_streaming_task_is_seen_by_the_server() -> None:
    step = reply("z" * 40, chunk_chars=4, stall_after_chunks=2)
    with ScriptedModelServer([step]) as server:
        async with _aclient(server) as client:
            received = 0
            two_received = asyncio.Event()

            async def consume() -> None:
                nonlocal received
                stream = await client.chat.completions.create(model="m", messages=USER, stream=True)
                async for _chunk in stream:
                    received += 1
                    if received == 3:
                        two_received.set()

            task = asyncio.create_task(consume())
            await asyncio.wait_for(two_received.wait(), 5)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            gone = await server.wait_for_disconnect_async(timeout=5)
    assert (gone.chunks_sent, gone.client_disconnected) == (3, True)
    server.verify()


# --------------------------------------------------------------------------- #
# A server that does not stream
# --------------------------------------------------------------------------- #


def test_a_server_without_streaming_refuses_stream_without_consuming_a_step() -> None:
    with (
        ScriptedModelServer([reply("plain answer")], streaming=False) as server,
        _client(server) as client,
    ):
        with pytest.raises(openai.BadRequestError) as info:
            client.chat.completions.create(model="m", messages=USER, stream=True)
        assert server.remaining == 1
        answer = client.chat.completions.create(model="m", messages=USER)
    assert answer.choices[0].message.content == "plain answer"
    assert info.value.code == "unsupported_parameter"
    assert info.value.param == "stream"
    assert info.value.body == {
        "message": "Unrecognized request argument supplied: stream",
        "type": "invalid_request_error",
        "param": "stream",
        "code": "unsupported_parameter",
    }
    refused, retried = server.requests
    assert refused.stream and refused.rejected_stream and refused.status == 400
    assert refused.step is None
    assert not retried.stream and not retried.rejected_stream and retried.status == 200
    server.verify()  # a refused stream is not a script failure


def test_a_server_without_streaming_checks_the_api_key_first() -> None:
    with (
        ScriptedModelServer(streaming=False, expected_api_key="right") as server,
        _client(server, api_key="wrong") as client,
        pytest.raises(openai.AuthenticationError),
    ):
        client.chat.completions.create(model="m", messages=USER, stream=True)
    assert not server.requests[0].rejected_stream


# --------------------------------------------------------------------------- #
# The step options
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: reply("x", chunk_delay=-0.1), "chunk_delay must be >= 0"),
        (lambda: reply("x", chunk_chars=0), "chunk_chars must be >= 1"),
        (lambda: reply("x", stall_after_chunks=-1), "stall_after_chunks must be >= 0"),
        (lambda: reply("x", stall_seconds=1), "needs stall_after_chunks too"),
        (lambda: Step(kind="hang", chunk_delay=0.1), "not to hang steps"),
        (lambda: Step(kind="error", status=500, stall_after_chunks=1), "not to error steps"),
    ],
)
def test_invalid_streaming_options_say_why(build: Callable[[], Step], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build()


def test_streaming_options_show_in_descriptions() -> None:
    step = tool_calls(call("f", {}), chunk_delay=0.02, stall_after_chunks=2, stall_seconds=1.5)
    assert step.describe() == (
        "tool_calls(f, chunk_delay=0.02, stall_after_chunks=2, stall_seconds=1.5)"
    )
    assert reply("hi").describe() == "reply('hi')"
