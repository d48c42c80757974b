"""The transcript store goes away mid-run: a SQLite file locked by another process,
PostgreSQL restarted, a full disk. Runs wait it out (RATCHET_STORE_OUTAGE_SECONDS);
past that they fail with a typed error that `fork` goes on from; nothing written is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client

from ratchet import Agent, RunFailed, tool
from ratchet.errors import TranscriptStoreUnavailable
from ratchet.testing import ScriptedModelServer, call, reply, tool_calls
from ratchet.transcripts import PostgresTranscriptStore, SQLiteTranscriptStore

from .conftest import hosted


@tool
def lookup(order_id: int) -> str:
    """Look up an order."""
    return f"order {order_id} has shipped"


AGENT = Agent(
    "outage-agent",
    instructions="Look orders up.",
    model="openai:scripted",
    tools=[lookup],
)


@contextlib.contextmanager
def write_lock(path: Path, seconds: float) -> Iterator[threading.Thread]:
    """Another process's write transaction on the store's file for ``seconds`` (a
    backup, a migration): every write of the workers waits, then fails as locked."""
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")
    release = threading.Timer(seconds, holder.rollback)
    release.start()
    try:
        yield release
    finally:
        release.join()
        holder.close()


async def test_a_locked_sqlite_store_is_waited_out_and_no_answer_is_wasted(
    temporal_client: Client,
    model_server: ScriptedModelServer,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = SQLiteTranscriptStore(tmp_path / "t.sqlite")
    model_server.add(
        tool_calls(call("lookup", {"order_id": 7})),
        reply("Order 7 has shipped."),
    )
    caplog.set_level(logging.WARNING, logger="ratchet.worker")
    async with hosted(temporal_client, [AGENT], model_server, transcript_store=store) as agents:
        run = await agents.start("outage-agent", "Where is order 7?")
        await model_server.wait_for_requests_async(1, timeout=30)
        # The first answer is in hand; its write, and the next prompt's, meet the lock.
        with write_lock(store.path, 12):
            result = await asyncio.wait_for(run.result(), timeout=60)
    assert result.output == "Order 7 has shipped."
    model_server.verify()
    assert len(model_server.requests) == 2, "an answer was lost to the outage and asked again"
    assert any("waiting up to" in r.getMessage() for r in caplog.records), caplog.text
    assert any("is back after" in r.getMessage() for r in caplog.records), caplog.text
    await store.close()


async def test_past_the_outage_limit_the_run_fails_typed_and_fork_goes_on(
    temporal_client: Client,
    model_server: ScriptedModelServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RATCHET_STORE_OUTAGE_SECONDS", "1")
    store = SQLiteTranscriptStore(tmp_path / "t.sqlite")
    model_server.add(
        tool_calls(call("lookup", {"order_id": 8})),  # answered; the store cannot take it
        tool_calls(call("lookup", {"order_id": 8})),  # the fork asks turn 1 again
        reply("Order 8 has shipped."),
    )
    async with hosted(temporal_client, [AGENT], model_server, transcript_store=store) as agents:
        run = await agents.start("outage-agent", "Where is order 8?")
        await model_server.wait_for_requests_async(1, timeout=30)
        with write_lock(store.path, 14), pytest.raises(RunFailed) as failed:
            await asyncio.wait_for(run.result(), timeout=60)
        assert failed.value.error_type == "TranscriptStoreUnavailable"
        assert f"ratchet fork {run.id} --at" in failed.value.message
        assert "locked" in failed.value.message
        # The store is back: go on from the step that could not be recorded.
        forked = await agents.fork(run.id, at="turn1", store=store)
        assert (await asyncio.wait_for(forked.result(), timeout=60)).output == (
            "Order 8 has shipped."
        )
    model_server.verify()
    await store.close()


async def test_postgres_restarted_mid_run(
    temporal_client: Client, model_server: ScriptedModelServer, tmp_path: Path
) -> None:
    import pgserver

    # A short path keeps PostgreSQL's socket in the data directory, away from the
    # runtime directory other tests' servers share.
    pgdata = Path(tempfile.mkdtemp(prefix="pg-", dir="/tmp"))
    server = pgserver.get_server(pgdata, cleanup_mode="stop")
    store = PostgresTranscriptStore(server.get_uri())
    try:
        model_server.add(
            tool_calls(call("lookup", {"order_id": 9})),
            reply("Order 9 has shipped."),
        )
        async with hosted(temporal_client, [AGENT], model_server, transcript_store=store) as agents:
            run = await agents.start("outage-agent", "Where is order 9?")
            await model_server.wait_for_requests_async(1, timeout=30)
            # The server stops (its sessions are terminated) and comes back 4 s later.
            await asyncio.to_thread(server.cleanup)
            await asyncio.sleep(4)
            server = await asyncio.to_thread(_restart, pgdata)
            result = await asyncio.wait_for(run.result(), timeout=60)
        assert result.output == "Order 9 has shipped."
        model_server.verify()
        assert len(model_server.requests) == 2
        transcript = await run.transcript(store=store)
        assert [m.role for m in transcript] == ["system", "user", "assistant", "tool", "assistant"]
    finally:
        await store.close()
        server.cleanup()
        shutil.rmtree(pgdata, ignore_errors=True)


def _restart(pgdata: Path) -> Any:
    """Start the stopped server again (pg_ctl may refuse while the old one's files are
    still being released: that is the harness's fault injection, not what is tested)."""
    import pgserver

    for attempt in range(3):
        try:
            return pgserver.get_server(pgdata, cleanup_mode="stop")
        except subprocess.CalledProcessError:
            if attempt == 2:
                raise
            time.sleep(1)
    raise AssertionError("unreachable")


_FILL = """
import asyncio, json, sys
from ratchet.errors import TranscriptStoreUnavailable
from ratchet.transcripts import SQLiteTranscriptStore

async def fill() -> None:
    store = SQLiteTranscriptStore(sys.argv[1])
    written = 0
    try:
        for i in range(100_000):
            await store.put({f"m{i:06d}": json.dumps({"text": "x" * 2000})}, [])
            written = i + 1
    except TranscriptStoreUnavailable as e:
        print(json.dumps({"written": written, "error": str(e), "full": e.full}))

asyncio.run(fill())
"""


def _small_disk(tmp_path: Path) -> tuple[Path, list[str], contextlib.AbstractContextManager[None]]:
    """A 1 MiB filesystem (tmpfs, as root), else a 1 MB file-size limit on the process."""
    mount = tmp_path / "small-disk"
    mount.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True
    )
    if mounted.returncode == 0:

        @contextlib.contextmanager
        def unmount() -> Iterator[None]:
            try:
                yield
            finally:
                subprocess.run(["umount", str(mount)], check=False)

        return mount, [], unmount()
    limit = "import resource; resource.setrlimit(resource.RLIMIT_FSIZE, (1_000_000, 1_000_000));"
    return mount, ["-c", limit + _FILL], contextlib.nullcontext()


def test_a_full_disk_gives_a_clear_error_and_keeps_what_was_written(tmp_path: Path) -> None:
    disk, limited, mounted = _small_disk(tmp_path)
    path = disk / "t.sqlite"
    with mounted:
        args = limited or ["-c", _FILL]
        out = subprocess.run(
            [sys.executable, *args, str(path)], capture_output=True, text=True, timeout=120
        )
        assert out.stdout.strip(), f"the store never reported the disk: {out.stderr}"
        report = __import__("json").loads(out.stdout)
        assert report["written"] > 50, report
        assert "is unavailable" in report["error"], report
        if not limited:  # a real full filesystem: SQLite says so
            assert report["full"] and "disk under it is full" in report["error"], report
        db = sqlite3.connect(path)
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        kept = db.execute("SELECT count(*) FROM ratchet_messages").fetchone()[0]
        db.close()
    assert kept == report["written"], "a write the store acknowledged was lost"


async def test_an_unavailable_store_is_typed(tmp_path: Path) -> None:
    store = SQLiteTranscriptStore(tmp_path / "t.sqlite")
    with write_lock(store.path, 11), pytest.raises(TranscriptStoreUnavailable, match="locked"):
        await store.put({"m": "{}"}, [])
    await store.close()
    pg = PostgresTranscriptStore(f"postgresql://nobody@/none?host={tmp_path}")
    with pytest.raises(TranscriptStoreUnavailable, match="is unavailable"):
        await pg.messages(["x"])
