"""Streaming, end to end: a real dev server, real workers, the real openai client over
HTTP against the scripted server's SSE, and the real SQLite delta store.

Each test checks what a client sees (token events, their order and offsets, resumes,
several subscribers, another process, retries after kill -9, cancellation) and what
the history keeps (the final message once, no delta)."""

from __future__ import annotations

import asyncio
import itertools
import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from temporalio.client import Client

from ratchet import Agent, AgentClient, Limits, RunCancelled
from ratchet.events import (
    MessageRecorded,
    ModelCallFinished,
    RunEvent,
    RunEventAdapter,
    TokenDelta,
    TokensSuperseded,
    cursor,
)
from ratchet.streaming import delta_store_for, delta_store_from_url
from ratchet.testing import ScriptedModelServer, call, reply, reply_json, tool_calls

from .conftest import ROOT, _test_store, hosted
from .scenarios import lookup_order
from .workers import WorkerProcess

ANSWER = "Order 1042 shipped on Monday and should arrive by Thursday at the latest."


def tokens(events: list[RunEvent], kind: str = "text") -> list[TokenDelta]:
    return [e for e in events if isinstance(e, TokenDelta) and e.kind == kind]


def streamer(name: str = "streamer", **options: object) -> Agent:
    return Agent(
        name,
        instructions="Be brief.",
        model="openai:gpt-4o-mini",
        tools=[lookup_order],
        **options,  # type: ignore[arg-type]
    )


async def test_tokens_arrive_in_order_before_the_recorded_reply(
    temporal_client: Client, model_server: ScriptedModelServer
) -> None:
    model_server.add(
        tool_calls(call("lookup_order", {"order_id": 1042}), chunk_chars=4),
        reply(ANSWER, chunk_chars=5),
    )
    async with hosted(temporal_client, [streamer()], model_server) as client:
        client.deltas = delta_store_for(_test_store())
        handle = await client.start("streamer", "Where is 1042?")
        events = [e async for e in handle.events()]
    finished = [e for e in events if isinstance(e, ModelCallFinished)]
    assert len(finished) == 2 and all(f.wire and f.wire.stream for f in finished)
    # The answer: every piece, in order, offsets 0..n-1, each before the recorded reply.
    answer = tokens(events)
    assert [t.offset for t in answer] == list(range(len(answer)))
    assert len(answer) == len(ANSWER) // 5 + 1
    assert {(t.call_id, t.attempt, t.seq) for t in answer} == {
        (finished[1].call_id, 1, _started_seq(events, finished[1].call_id))
    }
    assert "".join(t.text for t in answer) == ANSWER == finished[1].response.content  # type: ignore[union-attr]
    reply_message = next(
        e for e in events if isinstance(e, MessageRecorded) and e.message.content == ANSWER
    )
    assert events.index(answer[-1]) < events.index(reply_message)
    # The tool call streamed its arguments, with its id and name.
    arguments = tokens(events, "tool_arguments")
    assert arguments and {(t.tool_call_index, t.tool_name) for t in arguments} == {
        (0, "lookup_order")
    }
    recorded_call = finished[0].response.tool_calls[0]  # type: ignore[union-attr,index]
    assert {t.tool_call_id for t in arguments} == {recorded_call.id}
    assert "".join(t.text for t in arguments) == recorded_call.arguments
    # Live only: reading the same run from its history yields no token.
    assert not [e async for e in handle.events(follow=False) if isinstance(e, TokenDelta)]


def _started_seq(events: list[RunEvent], call_id: str) -> int:
    return next(e.seq for e in events if e.type == "model_call_started" and e.call_id == call_id)


async def test_a_subscriber_resumes_from_its_cursor_and_two_subscribers_agree(
    temporal_client: Client, model_server: ScriptedModelServer
) -> None:
    model_server.add(reply(ANSWER, chunk_chars=3, chunk_delay=0.03))
    async with hosted(temporal_client, [streamer()], model_server) as client:
        client.deltas = delta_store_for(_test_store())
        handle = await client.start("streamer", "Where is 1042?")
        first_part: list[RunEvent] = []

        async def until_ten_tokens() -> None:
            async for event in handle.events():
                first_part.append(event)
                if len(tokens(first_part)) == 10:
                    return  # disconnects mid-reply

        async def everything() -> list[RunEvent]:
            return [e async for e in handle.events()]

        whole, _ = await asyncio.gather(everything(), until_ten_tokens())
        rest = [e async for e in handle.events(after=cursor(first_part[-1]))]
    assert tokens(first_part)[-1].offset == 9
    assert cursor(first_part[-1]) == f"{first_part[-1].seq}:1:9"
    resumed = first_part + rest
    # Nothing lost, nothing twice: the resumed stream equals the uninterrupted one.
    assert dumped(resumed) == dumped(whole)
    assert "".join(t.text for t in tokens(whole)) == ANSWER
    # The second subscriber read the same pieces while they were written.
    assert len(tokens(whole)) == len(ANSWER) // 3 + (1 if len(ANSWER) % 3 else 0)


def dumped(events: list[RunEvent]) -> list[object]:
    return [RunEventAdapter.dump_python(e, mode="json") for e in events]


async def test_a_subscriber_in_another_process_gets_the_tokens(
    temporal_client: Client, model_server: ScriptedModelServer, tmp_path: Path
) -> None:
    from ratchet.transcripts import SQLiteTranscriptStore

    store_url = f"sqlite:///{tmp_path / 'transcripts.sqlite'}"
    store = SQLiteTranscriptStore(tmp_path / "transcripts.sqlite")
    model_server.add(reply(ANSWER, chunk_chars=2, chunk_delay=0.05))
    address = temporal_client.service_client.config.target_host
    async with hosted(
        temporal_client, [streamer()], model_server, transcript_store=store
    ) as client:
        client.deltas = delta_store_from_url(store_url)
        handle = await client.start("streamer", "Where is 1042?")
        other = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.stream_subscriber",
            address,
            handle.id,
            store_url,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        here = [e async for e in handle.events()]
        out, err = await asyncio.wait_for(other.communicate(), timeout=60)
    assert other.returncode == 0, err.decode()
    lines = out.decode().splitlines()
    assert lines[0] == "ready"
    there = [RunEventAdapter.validate_json(line) for line in lines[1:]]
    assert dumped(tokens(there)) == dumped(tokens(here))
    assert "".join(t.text for t in tokens(there)) == ANSWER
    # It connected while the reply was being written (a 2 s stream), and still got it all.
    assert tokens(there)[0].offset == 0


async def test_kill9_mid_stream_the_retry_streams_again_and_supersedes_the_first(
    temporal_env: object,
    model_server: ScriptedModelServer,
    tmp_path: Path,
    workers: list[WorkerProcess],
) -> None:
    """The worker dies while the model streams; the next attempt, on another worker,
    streams again. The first attempt's pieces are marked superseded, its text never
    reaches the history, and the final reply is recorded once."""
    address = temporal_env.client.service_client.config.target_host  # type: ignore[attr-defined]
    queue = f"stream-kill-{uuid.uuid4().hex[:8]}"
    doomed = "PARTIAL-FIRST-ATTEMPT text that the dying worker was streaming when killed"
    model_server.add(
        reply(doomed, chunk_chars=4, stall_after_chunks=5),  # attempt 1: stalls, then dies
        reply(ANSWER, chunk_chars=4),  # attempt 2
    )
    workers.append(WorkerProcess(address, queue, model_server, tmp_path))
    client = AgentClient(
        temporal_env.client,  # type: ignore[attr-defined]
        task_queue=queue,
        deltas=delta_store_from_url(f"sqlite:///{tmp_path / 'transcripts.sqlite'}"),
    )
    handle = await client.start("crashy", "Where is 1042?")
    seen: list[RunEvent] = []

    async def follow() -> None:
        async for event in handle.events():
            seen.append(event)

    following = asyncio.create_task(follow())
    for _ in range(300):
        if len(tokens(seen)) >= 5:
            break
        await asyncio.sleep(0.05)
    assert len(tokens(seen)) == 5, f"the first attempt did not stream: {seen}"
    workers[0].kill9()
    workers.append(WorkerProcess(address, queue, model_server, tmp_path))
    await asyncio.wait_for(following, timeout=60)
    result = await handle.result()

    assert result.output == ANSWER
    first = [t for t in tokens(seen) if t.attempt == 1]
    second = [t for t in tokens(seen) if t.attempt == 2]
    assert "".join(t.text for t in first) == doomed[:20]
    assert [t.offset for t in second] == list(range(len(second)))
    assert "".join(t.text for t in second) == ANSWER
    [superseded] = [e for e in seen if isinstance(e, TokensSuperseded)]
    assert (superseded.attempt, superseded.by_attempt) == (1, 2)
    assert seen.index(first[-1]) < seen.index(superseded) < seen.index(second[0])
    # The history: the reply once, the first attempt's text nowhere.
    history = json.dumps((await handle._handle.fetch_history()).to_json_dict())
    assert "PARTIAL-FIRST-ATTEMPT" not in history
    replies = [
        e async for e in handle.events(follow=False)
        if isinstance(e, MessageRecorded) and e.message.content == ANSWER
    ]  # fmt: skip
    assert len(replies) == 1
    [finished] = [e for e in seen if isinstance(e, ModelCallFinished)]
    assert finished.attempts == 2


async def test_cancelling_mid_stream_closes_the_provider_connection(
    temporal_client: Client, model_server: ScriptedModelServer
) -> None:
    model_server.add(reply(ANSWER, chunk_chars=4, stall_after_chunks=3, stall_seconds=60))
    async with hosted(temporal_client, [streamer()], model_server) as client:
        client.deltas = delta_store_for(_test_store())
        handle = await client.start("streamer", "Where is 1042?")
        seen: list[RunEvent] = []
        async for event in handle.events():
            seen.append(event)
            if len(tokens(seen)) == 3:
                break
        await handle.cancel()
        disconnected = await model_server.wait_for_disconnect_async(timeout=20)
        with pytest.raises(RunCancelled):
            await handle.result()
    assert disconnected.client_disconnected and disconnected.chunks_sent == 4
    assert "".join(t.text for t in tokens(seen)) == ANSWER[:12]


async def test_an_endpoint_that_rejects_streaming_gets_plain_calls_and_a_warning(
    temporal_client: Client,
) -> None:
    with ScriptedModelServer(streaming=False) as server:
        server.add(tool_calls(call("lookup_order", {"order_id": 1042})), reply(ANSWER))
        async with hosted(temporal_client, [streamer()], server) as client:
            client.deltas = delta_store_for(_test_store())
            handle = await client.start("streamer", "Where is 1042?")
            events = [e async for e in handle.events()]
            result = await handle.result()
        requests = server.requests
    assert result.output == ANSWER
    assert not [e for e in events if isinstance(e, TokenDelta)]
    # One refused stream, then plain calls only: the endpoint is remembered.
    assert [r.rejected_stream for r in requests] == [True, False, False]
    assert [r.body.get("stream") for r in requests] == [True, None, None]
    first, second = [e for e in events if isinstance(e, ModelCallFinished)]
    assert first.wire is not None and not first.wire.stream
    assert first.request_body is not None and "stream" not in first.request_body
    assert len(first.warnings) == 1 and "rejected streaming" in first.warnings[0]
    assert "HTTP 400" in first.warnings[0]
    assert second.warnings and "rejected streaming earlier" in second.warnings[0]


async def test_stream_false_makes_plain_calls(
    temporal_client: Client, model_server: ScriptedModelServer
) -> None:
    model_server.add(reply(ANSWER))
    async with hosted(temporal_client, [streamer(stream=False)], model_server) as client:
        client.deltas = delta_store_for(_test_store())
        handle = await client.start("streamer", "Where is 1042?")
        events = [e async for e in handle.events()]
    assert not [e for e in events if isinstance(e, TokenDelta)]
    assert [r.body.get("stream") for r in model_server.requests] == [None]
    [finished] = [e for e in events if isinstance(e, ModelCallFinished)]
    assert finished.wire is not None and not finished.wire.stream and not finished.warnings


async def test_stream_text_yields_the_reply_as_it_grows(
    temporal_client: Client, model_server: ScriptedModelServer
) -> None:
    model_server.add(
        tool_calls(call("lookup_order", {"order_id": 1042})),
        reply(ANSWER, chunk_chars=10, chunk_delay=0.02),
    )
    async with hosted(temporal_client, [streamer()], model_server) as client:
        client.deltas = delta_store_for(_test_store())
        handle = await client.start("streamer", "Where is 1042?")
        growing, pieces = await asyncio.gather(
            _collect(handle.stream_text()), _collect(handle.stream_text(delta=True))
        )
    assert growing[-1] == ANSWER
    assert len(growing) == len(ANSWER) // 10 + 1
    assert all(later.startswith(earlier) for earlier, later in itertools.pairwise(growing))
    assert "".join(pieces) == ANSWER


async def _collect(texts: object) -> list[str]:
    return [t async for t in texts]  # type: ignore[attr-defined]


async def test_history_is_the_same_size_with_streaming_on_and_off(
    temporal_client: Client, model_server: ScriptedModelServer
) -> None:
    """Deltas never enter the history: a streamed run's history has the same events,
    and the same bytes up to the few of the ``stream`` flags."""
    sizes: dict[bool, tuple[list[str], int]] = {}
    for stream in (True, False):
        model_server.add(
            tool_calls(call("lookup_order", {"order_id": 1042}, id="call_fixed")),
            reply(ANSWER * 5, chunk_chars=3),
        )
        agent = streamer(f"streamer-{'on' if stream else 'off'}", stream=stream)
        async with hosted(temporal_client, [agent], model_server) as client:
            handle = await client.start(agent.name, "Where is 1042?")
            await handle.result()
            history = await handle._handle.fetch_history()
        kinds = [e.event_type for e in history.events]
        sizes[stream] = ([str(k) for k in kinds], len(history.to_json()))
    assert sizes[True][0] == sizes[False][0]
    on, off = sizes[True][1], sizes[False][1]
    assert abs(on - off) <= off * 0.01, f"streaming on: {on} bytes, off: {off} bytes"


async def test_a_reply_cut_off_mid_stream_is_retried_never_recorded_half(
    temporal_client: Client, model_server: ScriptedModelServer
) -> None:
    """A reply cut off mid-stream (no finish reason) is retried, never recorded half."""
    model_server.add(
        reply("CUT-OFF reply", chunk_chars=4, stall_after_chunks=2, stall_seconds=0.2),
        reply(ANSWER),
    )
    agent = streamer(limits=Limits(model_retry_initial_seconds=0.1))
    async with hosted(temporal_client, [agent], model_server) as client:
        client.deltas = delta_store_for(_test_store())
        handle = await client.start("streamer", "Where is 1042?")
        events = [e async for e in handle.events()]
        result = await handle.result()
        history = json.dumps((await handle._handle.fetch_history()).to_json_dict())
    assert result.output == ANSWER
    [finished] = [e for e in events if isinstance(e, ModelCallFinished)]
    assert finished.attempts == 2
    [failed] = [e for e in events if e.type == "model_call_attempt_failed"]
    assert failed.error_type == "ModelConnectionError"  # type: ignore[union-attr]
    assert "CUT-OFF" not in history


async def test_json_schema_mode_streams_the_answer_text_not_the_envelope(
    temporal_client: Client, model_server: ScriptedModelServer
) -> None:
    """Models without native tools answer in a JSON envelope; subscribers get the
    answer's text as it is decoded, and a tool envelope streams no text."""
    answer = 'He said "ship it" \\ then left.\nNext line: caf\u00e9 \U0001f600'
    model_server.add(
        reply_json({"tool": "lookup_order", "arguments": {"order_id": 1042}}, chunk_chars=3),
        reply_json({"answer": answer}, chunk_chars=3),
    )
    agent = streamer(tool_mode="json_schema")
    async with hosted(temporal_client, [agent], model_server) as client:
        client.deltas = delta_store_for(_test_store())
        handle = await client.start("streamer", "Where is 1042?")
        events = [e async for e in handle.events()]
        result = await handle.result()
    assert result.output == answer
    first, second = [e for e in events if isinstance(e, ModelCallFinished)]
    assert not [t for t in tokens(events) if t.call_id == first.call_id]
    streamed = [t for t in tokens(events) if t.call_id == second.call_id]
    assert len(streamed) > 5
    assert "".join(t.text for t in streamed) == answer


async def test_a_failing_delta_store_costs_the_tokens_not_the_events(
    temporal_client: Client, model_server: ScriptedModelServer, tmp_path: Path
) -> None:
    from ratchet.streaming import SQLiteDeltaStore

    broken = SQLiteDeltaStore(tmp_path / "broken.sqlite")
    await broken.close()  # every read now raises
    model_server.add(reply(ANSWER, chunk_chars=4, chunk_delay=0.02))
    async with hosted(temporal_client, [streamer()], model_server) as client:
        client.deltas = broken
        handle = await client.start("streamer", "Where is 1042?")
        events = [e async for e in handle.events()]
    assert not tokens(events)
    assert events[-1].type == "run_finished"
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert any(isinstance(e, MessageRecorded) and e.message.content == ANSWER for e in events)
