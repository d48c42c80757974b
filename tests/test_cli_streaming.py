"""The CLI's view of streaming: replies print as they are written, once; tool calls show
as they start and finish; a cut-off attempt is noted; `--no-stream` prints whole lines.

A streamed reply keeps its own line breaks, while a whole message is printed on one
shortened line: the two-line answers below tell which way a reply reached the screen.
"""

from __future__ import annotations

import asyncio
import io
import os
import re
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest
from rich.console import Console
from temporalio.client import Client

from ratchet import Agent, AgentClient, Limits
from ratchet.cli import follow_run
from ratchet.cli._follow import _Progress
from ratchet.events import TokenDelta
from ratchet.streaming import CallKey, Delta, delta_store_for
from ratchet.testing import ScriptedModelServer, call, hang, reply, tool_calls
from ratchet.transcripts import SQLiteTranscriptStore

from .conftest import ROOT, hosted
from .scenarios import AGENT, lookup_order
from .test_cli import address, ratchet

ANSWER = "Order 1042 has shipped.\nIt arrives on Tuesday."
STREAMED = f"model     turn 2: answer {ANSWER}\n"
WHOLE = "model     turn 2: answer Order 1042 has shipped. It arrives on Tuesday.\n"
STARTED = "tool      lookup_order(order_id=1042) started\n"
FINISHED = 'tool      lookup_order result: {"id": 1042, "status": "shipped"}\n'
CUT_OFF = "(attempt 1 was cut off; attempt 2 starts over)"

CHATTY = Agent(
    "chatty-streams",
    instructions="You are a support agent.",
    model="openai:m",
    tools=[lookup_order],
    limits=Limits(model_retry_initial_seconds=0.1),
)


@pytest.fixture
def store(tmp_path: Path) -> SQLiteTranscriptStore:
    """The workers' transcript store; its delta store is where replies stream through."""
    return SQLiteTranscriptStore(tmp_path / "transcripts.sqlite")


@asynccontextmanager
async def streaming_worker(
    temporal_client: Client,
    agents: list[Agent],
    model_server: ScriptedModelServer,
    store: SQLiteTranscriptStore,
) -> AsyncIterator[AgentClient]:
    async with hosted(temporal_client, agents, model_server, transcript_store=store) as client:
        client.deltas = delta_store_for(store)  # read what the worker streams
        yield client


def console(terminal: bool) -> tuple[Console, io.StringIO]:
    buffer = io.StringIO()
    return Console(file=buffer, force_terminal=terminal, width=200, soft_wrap=True), buffer


def plain(text: str) -> str:
    """Terminal output without its control sequences (colours, cursor moves)."""
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)


def assert_in_order(text: str, *parts: str) -> None:
    at = 0
    for part in parts:
        found = text.find(part, at)
        assert found >= 0, f"{part!r} not found after position {at} in:\n{text}"
        at = found + len(part)


@pytest.mark.parametrize("terminal", [False, True], ids=["pipe", "terminal"])
async def test_a_streamed_reply_prints_once_between_tool_calls_as_they_run(
    temporal_client: Client,
    model_server: ScriptedModelServer,
    store: SQLiteTranscriptStore,
    terminal: bool,
) -> None:
    model_server.add(tool_calls(call("lookup_order", {"order_id": 1042})), reply(ANSWER))
    screen, buffer = console(terminal)
    async with streaming_worker(temporal_client, [AGENT], model_server, store) as client:
        handle = await client.start(AGENT.name, "Where is order 1042?")
        await follow_run(handle, screen)
    raw = buffer.getvalue()
    text = plain(raw)
    assert_in_order(
        text,
        "user      Where is order 1042?\n",
        "model     turn 1: call lookup_order(order_id=1042)\n",
        STARTED,
        FINISHED,
        STREAMED,
    )
    assert text.count("It arrives on Tuesday.") == 1, text  # not printed again once recorded
    assert WHOLE not in text
    # The live status line is hidden while the reply streams: the line comes out intact,
    # with nothing written between its pieces.
    assert STREAMED in raw, raw
    if terminal:
        assert re.search(r"\d\.\d s", text), "the live status line never showed"


async def test_no_stream_prints_each_reply_whole_once_recorded(
    temporal_client: Client, model_server: ScriptedModelServer, store: SQLiteTranscriptStore
) -> None:
    model_server.add(tool_calls(call("lookup_order", {"order_id": 1042})), reply(ANSWER))
    screen, buffer = console(False)
    async with streaming_worker(temporal_client, [AGENT], model_server, store) as client:
        handle = await client.start(AGENT.name, "Where is order 1042?")
        await follow_run(handle, screen, stream=False)
    text = buffer.getvalue()
    assert_in_order(text, STARTED, FINISHED, WHOLE)
    assert STREAMED not in text


async def test_a_cut_off_attempt_is_noted_and_the_retry_streams_on_a_new_line(
    temporal_client: Client, model_server: ScriptedModelServer, store: SQLiteTranscriptStore
) -> None:
    # Attempt 1 streams "Order 10" and dies (the server closes the connection); attempt 2
    # answers whole. The scripted server answers attempt 1 with no bytes, so its pieces
    # are written to the delta store here, as the worker would have.
    model_server.add(hang(2.0), reply("Order 1042 has shipped."))
    screen, buffer = console(False)
    async with streaming_worker(temporal_client, [AGENT], model_server, store) as client:
        handle = await client.start(AGENT.name, "Where is order 1042?")
        following = asyncio.create_task(follow_run(handle, screen))
        await model_server.wait_for_requests_async(1)
        await write_first_attempt(temporal_client, store, handle.id, ["Order ", "10"])
        await asyncio.wait_for(following, 30)
    text = buffer.getvalue()
    assert_in_order(
        text,
        "model     turn 1: answer Order 10\n",
        CUT_OFF + "\n",
        "model     turn 1: answer Order 1042 has shipped.\n",
    )
    assert text.count("Order 1042 has shipped.") == 1, text


async def write_first_attempt(
    temporal_client: Client, store: SQLiteTranscriptStore, run_id: str, pieces: list[str]
) -> None:
    """Write attempt 1's pieces of the first model call, as a streaming provider would."""
    execution = (await temporal_client.get_workflow_handle(run_id).describe()).run_id
    deltas = delta_store_for(store)
    assert deltas is not None
    key = CallKey(execution=execution, call_id="turn1-model")
    await deltas.append(run_id, key, 1, [(i, Delta(p)) for i, p in enumerate(pieces)])


async def test_ratchet_run_streams_and_no_stream_prints_whole_messages(
    temporal_client: Client, model_server: ScriptedModelServer, store: SQLiteTranscriptStore
) -> None:
    model_server.add(
        tool_calls(call("lookup_order", {"order_id": 1042})),
        reply(ANSWER),
        tool_calls(call("lookup_order", {"order_id": 1042})),
        reply(ANSWER),
    )
    env = {"RATCHET_TRANSCRIPT_STORE": f"sqlite:///{store.path}"}
    async with streaming_worker(temporal_client, [AGENT], model_server, store) as client:
        common = ["--address", address(temporal_client), "--task-queue", client.task_queue]
        streamed = await ratchet("run", AGENT.name, "Where is order 1042?", *common, env=env)
        whole = await ratchet(
            "run", AGENT.name, "Where is order 1042?", "--no-stream", *common, env=env
        )
    assert streamed.returncode == 0, streamed.stderr
    assert_in_order(streamed.stdout, STARTED, FINISHED, STREAMED, f"answer: {ANSWER}\n")
    assert WHOLE not in streamed.stdout
    assert whole.returncode == 0, whole.stderr
    assert_in_order(whole.stdout, STARTED, FINISHED, WHOLE, f"answer: {ANSWER}\n")
    assert STREAMED not in whole.stdout


async def test_ratchet_chat_streams_replies_and_shows_tool_calls(
    temporal_client: Client, model_server: ScriptedModelServer, store: SQLiteTranscriptStore
) -> None:
    # The first reply's attempt 1 is cut off after "Hel": only a streaming chat shows it.
    model_server.add(
        hang(2.0),
        reply("Hello there."),
        tool_calls(call("lookup_order", {"order_id": 7})),
        reply("Order 7 shipped."),
    )
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "COLUMNS": "200",
        "RATCHET_TRANSCRIPT_STORE": f"sqlite:///{store.path}",
    }
    async with streaming_worker(temporal_client, [CHATTY], model_server, store) as client:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "ratchet.cli",
            "chat",
            CHATTY.name,
            "--id",
            "chat-streams-1",
            "--address",
            address(temporal_client),
            "--task-queue",
            client.task_queue,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
            cwd=ROOT,
        )
        assert proc.stdin is not None and proc.stdout is not None
        try:
            proc.stdin.write(b"hi\n")
            await proc.stdin.drain()
            await model_server.wait_for_requests_async(1)
            await write_first_attempt(temporal_client, store, "chat-streams-1", ["Hel"])
            first = await asyncio.wait_for(proc.stdout.readuntil(b"Hello there.\n"), 30)
            proc.stdin.write(b"and order 7?\n")
            proc.stdin.write(b"/exit\n")
            await proc.stdin.drain()
            rest, err = await asyncio.wait_for(proc.communicate(), 30)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    assert proc.returncode == 0, err
    first_text = first.decode()
    assert_in_order(
        first_text, "chatty-streams> Hel\n", CUT_OFF + "\n", "chatty-streams> Hello there.\n"
    )
    text = rest.decode()
    assert_in_order(
        text,
        "tool      lookup_order(order_id=7) started\n",
        'tool      lookup_order result: {"id": 7, "status": "shipped"}\n',
        "chatty-streams> Order 7 shipped.\n",
        "chat ended",
    )
    assert text.count("Order 7 shipped.") == 1, text


async def test_chat_without_streaming_prints_whole_replies(
    temporal_client: Client, model_server: ScriptedModelServer, store: SQLiteTranscriptStore
) -> None:
    model_server.add(hang(2.0), reply("Hello there."))
    env = {"RATCHET_TRANSCRIPT_STORE": f"sqlite:///{store.path}"}
    async with streaming_worker(temporal_client, [CHATTY], model_server, store) as client:
        chatting = asyncio.create_task(
            ratchet_with_input(
                b"hi\n/exit\n",
                "chat",
                CHATTY.name,
                "--id",
                "chat-whole-1",
                "--no-stream",
                "--address",
                address(temporal_client),
                "--task-queue",
                client.task_queue,
                env=env,
            )
        )
        await model_server.wait_for_requests_async(1)
        await write_first_attempt(temporal_client, store, "chat-whole-1", ["Hel"])
        code, out, err = await asyncio.wait_for(chatting, 60)
    assert code == 0, err
    assert "chatty-streams> Hello there.\n" in out
    assert "Hel\n" not in out and "cut off" not in out


async def ratchet_with_input(stdin: bytes, *args: str, env: dict[str, str]) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "ratchet.cli",
        *args,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200", **env},
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(stdin), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def test_the_live_line_names_the_tool_whose_call_the_model_is_writing() -> None:
    now = datetime.now(UTC)
    progress = _Progress()
    progress.saw(
        TokenDelta(
            seq=3,
            at=now,
            call_id="turn1-model",
            turn=1,
            attempt=1,
            offset=0,
            kind="tool_arguments",
            text='{"order_id": ',
            tool_call_index=0,
            tool_call_id="call_1",
            tool_name="lookup_order",
        )
    )
    assert "model writing a call to lookup_order" in progress.line()
