"""The transcript store contract, run against every backend: a real SQLite file and a
real PostgreSQL server (from the PyPI package pgserver, started by the test on a
Unix socket in a temporary directory)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from temporalio.client import Client

from ratchet import Agent, ConfigError, TranscriptEntryMissing
from ratchet.messages import Message, ToolCall, message_hash
from ratchet.testing import ScriptedModelServer, call, reply, tool_calls
from ratchet.transcripts import (
    PostgresTranscriptStore,
    SQLiteTranscriptStore,
    TranscriptStore,
    load_prompt,
    save_messages,
    store_from_url,
)

from .conftest import hosted
from .scenarios import lookup_order


@pytest.fixture(scope="module")
def postgres_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    import pgserver

    server = pgserver.get_server(tmp_path_factory.mktemp("pg"), cleanup_mode="delete")
    try:
        yield server.get_uri()
    finally:
        server.cleanup()


@pytest.fixture(params=["sqlite", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[TranscriptStore]:
    if request.param == "sqlite":
        s: TranscriptStore = SQLiteTranscriptStore(tmp_path / "t.sqlite")
    else:
        s = PostgresTranscriptStore(request.getfixturevalue("postgres_url"))
    yield s
    await s.close()


def conversation(tag: str) -> list[Message]:
    call_ = ToolCall(id="c1", name="lookup", arguments='{"id": 1}')
    return [
        Message.system("be brief"),
        Message.user(f"question {tag}", pinned=True),
        Message.assistant(None, [call_]),
        Message.tool(call_, f"result {tag}"),
        Message.assistant(f"answer {tag}"),
    ]


async def test_a_chain_round_trips_and_writes_are_idempotent(store: TranscriptStore) -> None:
    messages = conversation("a")
    head = await save_messages(store, None, messages[:3])
    # Writing the same messages again (a retried activity) changes nothing.
    assert await save_messages(store, None, messages[:3]) == head
    head2 = await save_messages(store, head, messages[3:])
    assert await load_prompt(store, head2, [], run_id="r") == messages
    # A reference plus new messages, inline or by hash.
    tool_hash = message_hash(messages[3])
    rebuilt = await load_prompt(store, head, [tool_hash, messages[4]], run_id="r")
    assert rebuilt == messages
    stats = await store.stats()
    assert stats.messages == 5 and stats.nodes == 5 and stats.bytes > 100


async def test_shared_prefixes_are_stored_once(store: TranscriptStore) -> None:
    a, b = conversation("a"), conversation("b")
    await save_messages(store, None, a)
    await save_messages(store, None, b)
    # The system message and the tool call are shared: 5 + 3 distinct messages; the
    # chains share their first node.
    stats = await store.stats()
    assert (stats.messages, stats.nodes) == (8, 9)


async def test_concurrent_writers_agree(store: TranscriptStore) -> None:
    messages = conversation("c")
    heads = await asyncio.gather(*(save_messages(store, None, messages) for _ in range(8)))
    assert len(set(heads)) == 1
    assert await load_prompt(store, heads[0], [], run_id="r") == messages


async def test_a_missing_entry_is_named(store: TranscriptStore) -> None:
    with pytest.raises(TranscriptEntryMissing) as info:
        await load_prompt(store, "f" * 64, [], run_id="run-7")
    assert info.value.run_id == "run-7" and info.value.entry == "f" * 64
    assert "run run-7" in str(info.value) and "chain node" in str(info.value)
    with pytest.raises(TranscriptEntryMissing) as info:
        await load_prompt(store, None, ["e" * 64], run_id="run-7")
    assert info.value.kind == "message"


async def test_a_run_on_a_worker_with_the_postgres_store(
    temporal_client: Client, model_server: ScriptedModelServer, postgres_url: str
) -> None:
    agent = Agent("pg", instructions="Support.", model="openai:m", tools=[lookup_order])
    model_server.add(
        tool_calls(call("lookup_order", {"order_id": 5})),
        reply("Shipped.", expect=lambda r: len(r.messages) == 4),
    )
    store = store_from_url(postgres_url)
    assert isinstance(store, PostgresTranscriptStore)
    async with hosted(temporal_client, [agent], model_server, transcript_store=store) as client:
        result = await client.run("pg", "Where is order 5?")
    assert result.output == "Shipped."
    assert (await store.stats()).messages >= 5
    await store.close()


def test_store_urls(tmp_path: Path) -> None:
    store = store_from_url(f"sqlite:///{tmp_path / 'x' / 't.sqlite'}")  # sqlite:////abs/path
    assert isinstance(store, SQLiteTranscriptStore)
    assert store.path == tmp_path / "x" / "t.sqlite" and store.path.exists()
    with pytest.raises(ConfigError, match="bad transcript store URL"):
        store_from_url("redis://x")


def test_workers_opening_a_new_sqlite_file_together(tmp_path: Path) -> None:
    """Several connections (worker processes starting together) open one new file.

    Switching a new file to WAL can fail at once with "database is locked" when another
    connection is doing the same; every opener must wait its turn instead.
    """
    failures: list[Exception] = []
    for n in range(100):
        path = tmp_path / f"t{n}.sqlite"
        start = threading.Barrier(4)

        def open_store(path: Path = path, start: threading.Barrier = start) -> None:
            start.wait()
            try:
                SQLiteTranscriptStore(path)
            except Exception as e:
                failures.append(e)

        threads = [threading.Thread(target=open_store) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert failures == []
