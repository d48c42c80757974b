"""The delta store contract, against every backend: a real SQLite file and a real
PostgreSQL server (pgserver). Writers and readers use separate store objects (separate
connections), as a worker and a subscriber on another machine do."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from temporalio.client import Client

from ratchet import Agent, ConfigError
from ratchet.events import TokenDelta
from ratchet.streaming import (
    CallKey,
    Delta,
    DeltaStore,
    PostgresDeltaStore,
    SQLiteDeltaStore,
    delta_store_for,
    delta_store_from_url,
)
from ratchet.testing import ScriptedModelServer, reply
from ratchet.transcripts import PostgresTranscriptStore, SQLiteTranscriptStore

from .conftest import hosted

KEY = CallKey("exec-1", "turn1-model")


@pytest.fixture(scope="module")
def postgres_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    import pgserver

    server = pgserver.get_server(tmp_path_factory.mktemp("pg"), cleanup_mode="delete")
    try:
        yield server.get_uri()
    finally:
        server.cleanup()


def _make(kind: str, where: str | Path) -> DeltaStore:
    if kind == "sqlite":
        return SQLiteDeltaStore(Path(where))
    return PostgresDeltaStore(str(where))


@pytest.fixture(params=["sqlite", "postgres"])
async def pair(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[DeltaStore, DeltaStore]]:
    """A writer and a reader on the same database, through different connections."""
    where: str | Path = (
        tmp_path / "d.sqlite"
        if request.param == "sqlite"
        else request.getfixturevalue("postgres_url")
    )
    writer, reader = _make(request.param, where), _make(request.param, where)
    # Each test uses its own call key on Postgres (one database for the module).
    yield writer, reader
    await writer.delete_run("run-1")
    await writer.close()
    await reader.close()


def pieces(*texts: str, start: int = 0) -> list[tuple[int, Delta]]:
    return [(start + i, Delta(text=t)) for i, t in enumerate(texts)]


async def test_deltas_read_back_in_order_after_a_cursor(
    pair: tuple[DeltaStore, DeltaStore],
) -> None:
    writer, reader = pair
    await writer.append("run-1", KEY, 1, pieces("a", "b", "c"))
    await writer.append("run-1", KEY, 2, pieces("x", "y"))
    await writer.append("run-1", KEY, 1, pieces("d", start=3))
    call_args = Delta("{", "tool_arguments", 0, "call_1", "lookup")
    await writer.append("run-1", CallKey("exec-1", "turn2-model"), 1, [(0, call_args)])

    every = await reader.read(KEY)
    assert [(d.attempt, d.offset, d.delta.text) for d in every] == [
        (1, 0, "a"), (1, 1, "b"), (1, 2, "c"), (1, 3, "d"), (2, 0, "x"), (2, 1, "y"),
    ]  # fmt: skip
    assert [d.delta.text for d in await reader.read(KEY, (1, 1))] == ["c", "d", "x", "y"]
    assert [d.delta.text for d in await reader.read(KEY, (1, 3))] == ["x", "y"]
    assert [d.delta.text for d in await reader.read(KEY, (2, 1))] == []
    assert [d.delta.text for d in await reader.read(KEY, limit=2)] == ["a", "b"]
    [tool_piece] = await reader.read(CallKey("exec-1", "turn2-model"))
    assert tool_piece.delta == call_args
    assert abs(tool_piece.created - time.time()) < 60


async def test_writing_an_offset_again_keeps_the_first(pair: tuple[DeltaStore, DeltaStore]) -> None:
    writer, reader = pair
    await writer.append("run-1", KEY, 1, pieces("first"))
    await writer.append("run-1", KEY, 1, pieces("second"))
    assert [d.delta.text for d in await reader.read(KEY)] == ["first"]


async def test_a_write_wakes_a_waiting_reader(pair: tuple[DeltaStore, DeltaStore]) -> None:
    writer, reader = pair
    since = await reader.version()
    # Nothing written: the wait lasts its whole time and the version stays.
    started = time.monotonic()
    assert await reader.wait_changed(since, 0.3) == since
    assert time.monotonic() - started >= 0.25

    async def write_soon() -> None:
        await asyncio.sleep(0.2)
        await writer.append("run-1", KEY, 1, pieces("hello"))

    writing = asyncio.create_task(write_soon())
    started = time.monotonic()
    after = await reader.wait_changed(since, 10.0)
    waited = time.monotonic() - started
    await writing
    assert after != since
    assert waited < 5.0, f"the reader was not woken by the write ({waited:.1f} s)"
    assert [d.delta.text for d in await reader.read(KEY)] == ["hello"]
    # A write between version() and the wait makes the wait return at once.
    since = await reader.version()
    await writer.append("run-1", KEY, 1, pieces("again", start=1))
    started = time.monotonic()
    assert await reader.wait_changed(since, 10.0) != since
    assert time.monotonic() - started < 5.0


async def test_expired_and_finished_runs_deltas_are_deleted(
    pair: tuple[DeltaStore, DeltaStore],
) -> None:
    writer, reader = pair
    other = CallKey("exec-2", "turn1-model")
    await writer.append("run-1", KEY, 1, pieces("a", "b"))
    await writer.append("run-2", other, 1, pieces("c"))
    assert await writer.delete_older_than(time.time() - 3600) == 0
    assert len(await reader.read(KEY)) == 2
    assert await writer.delete_run("run-2") == 1
    assert await reader.read(other) == []
    assert await writer.delete_older_than(time.time() + 1) == 2
    assert await reader.read(KEY) == []


async def test_writers_prune_past_the_retention(tmp_path: Path) -> None:
    store = SQLiteDeltaStore(tmp_path / "d.sqlite", retention=timedelta(seconds=1))
    await store.append("run-1", KEY, 1, pieces("old"))
    await asyncio.sleep(1.2)
    assert await store.prune_if_due() == 1
    await store.append("run-1", KEY, 1, pieces("new", start=1))
    await asyncio.sleep(1.2)
    # At most once a minute: the second call does not scan the table again.
    assert await store.prune_if_due() == 0
    assert [d.delta.text for d in await store.read(KEY)] == ["new"]
    await store.close()
    with pytest.raises(ValueError, match="retention must be positive"):
        SQLiteDeltaStore(tmp_path / "e.sqlite", retention=timedelta(0))


def test_the_delta_store_lives_beside_the_transcripts(
    tmp_path: Path, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    sqlite_deltas = delta_store_for(SQLiteTranscriptStore(tmp_path / "t.sqlite"))
    assert isinstance(sqlite_deltas, SQLiteDeltaStore)
    assert sqlite_deltas.path == tmp_path / "t-deltas.sqlite"
    # One store per database per process, whichever way it is named.
    assert delta_store_from_url(f"sqlite:///{tmp_path / 't.sqlite'}") is sqlite_deltas
    pg = delta_store_for(PostgresTranscriptStore(postgres_url))
    assert isinstance(pg, PostgresDeltaStore) and pg.dsn == postgres_url
    with pytest.raises(ConfigError, match="bad transcript store URL"):
        delta_store_from_url("mysql://x")
    monkeypatch.setenv("RATCHET_STREAM_RETENTION_SECONDS", "soon")
    with pytest.raises(ConfigError, match="RATCHET_STREAM_RETENTION_SECONDS='soon'"):
        delta_store_from_url(f"sqlite:///{tmp_path / 'other.sqlite'}")
    monkeypatch.setenv("RATCHET_STREAM_RETENTION_SECONDS", "90")
    short = delta_store_from_url(f"sqlite:///{tmp_path / 'other.sqlite'}")
    assert short is not None and short.retention == timedelta(seconds=90)


async def test_a_run_streams_through_postgres_to_a_subscriber_on_its_own_connection(
    temporal_client: Client, model_server: ScriptedModelServer, postgres_url: str
) -> None:
    """The worker writes to PostgreSQL; the subscriber reads with its own store object
    (its own connections), as a client on another machine does, woken by NOTIFY."""
    model_server.add(reply("Streamed through PostgreSQL, piece by piece."))
    agent = Agent("pg-streamer", instructions="Be brief.", model="openai:gpt-4o-mini")
    subscriber_deltas = PostgresDeltaStore(postgres_url)
    store = PostgresTranscriptStore(postgres_url)
    try:
        async with hosted(temporal_client, [agent], model_server, transcript_store=store) as client:
            client.deltas = subscriber_deltas
            handle = await client.start("pg-streamer", "Hi")
            events = [e async for e in handle.events()]
    finally:
        await subscriber_deltas.close()
        await store.close()
    text = "".join(e.text for e in events if isinstance(e, TokenDelta))
    assert text == "Streamed through PostgreSQL, piece by piece."
    assert len([e for e in events if isinstance(e, TokenDelta)]) > 1
