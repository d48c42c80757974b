"""How token deltas could travel from a model activity to subscribers: a measurement spike.

Issue 14 streams model tokens to clients while a run's Temporal history stays linear
(deltas never enter it). This script measures the candidate transports in one invocation,
on loopback, with its own servers (a Temporal dev server and a pgserver PostgreSQL):

- ``queue``: an in-process ``asyncio.Queue``: the floor;
- ``sqlite``: one row per delta in a WAL-mode SQLite table keyed by (run id, call id,
  attempt, offset); subscribers tail it, waking on ``PRAGMA data_version`` (see
  :func:`tail_sqlite`);
- ``postgres``: the same table in PostgreSQL, each insert followed by ``pg_notify``;
  subscribers ``LISTEN`` and read the new rows when notified;
- ``wfstreams``: ``temporalio.contrib.workflow_streams`` as pydantic-ai ships it
  (publish from the activity, 100 ms batches, subscribers poll with a 100 ms cooldown);
- ``wfstreams-eager``: the same library at its fastest: a flush per delta, no cooldown.

The producer is always a Temporal activity emitting N small deltas at a fixed rate. Every
transport but ``queue`` has two subscribers: an asyncio task in the worker's process and a
second Python process. A run of the same workflow with no deltas (``off``) is the history
baseline: the events and bytes a transport adds are its history minus that one.

    python -m bench.stream_transport [--deltas 200] [--rate 100] [--poll-ms 5]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import itertools
import json
import math
import os
import re
import resource
import sqlite3
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, cast

from bench import procstat
from temporalio import activity, workflow
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHandle
from temporalio.contrib.workflow_streams import (
    WorkflowStream,
    WorkflowStreamClient,
    WorkflowStreamItem,
)
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

ROOT = Path(__file__).resolve().parent.parent
TASK_QUEUE = "stream-transport"
TOPIC = "tokens"
CHANNEL = "ratchet_deltas"
TRANSPORTS = ("off", "queue", "sqlite", "postgres", "wfstreams", "wfstreams-eager")
# As bench/run.py: the dev server's single shard otherwise delays workflow tasks by up to
# 50 ms, which a production cluster with many shards rarely does.
SERVER_ARGS = ["--dynamic-config-value", "history.transferProcessorMaxPollRPS=1000"]
CASE_TIMEOUT_S = 40.0

Delta = dict[str, Any]
"""One delta as it travels: {"o": offset, "t": time.monotonic() at emission, "x": text}."""
Emit = Callable[[Delta], Awaitable[None]]
Sink = Callable[[activity.Info], AbstractAsyncContextManager[Emit]]
Receipt = tuple[int, float, float]
"""(offset, emitted at, received at), both times from CLOCK_MONOTONIC, which is
system-wide on Linux, so a subscriber in another process can be compared."""


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def receipt(delta: Delta, now: float) -> Receipt:
    return (int(delta["o"]), float(delta["t"]), now)


# -- the producer: one activity, the transport chosen by the driver -------------------


@dataclass
class Case:
    """What one run's activity does; looked up by the key the workflow passes it, so
    every transport runs the same workflow with same-sized arguments."""

    transport: str
    deltas: int
    rate: float
    sink: Sink
    go: asyncio.Event = field(default_factory=asyncio.Event)
    write_s: list[float] = field(default_factory=list)


CASES: dict[str, Case] = {}


@activity.defn
async def produce_deltas(key: str) -> int:
    case = CASES[key]
    # Subscribers attach before the first delta, so no latency includes a backlog.
    await case.go.wait()
    async with case.sink(activity.info()) as emit:
        start = time.monotonic()
        for offset in range(case.deltas):
            delay = start + offset / case.rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            before = time.perf_counter()
            await emit({"o": offset, "t": time.monotonic(), "x": f"tok{offset} "})
            case.write_s.append(time.perf_counter() - before)
    return case.deltas


@workflow.defn
class StreamBench:
    @workflow.init
    def __init__(self, key: str) -> None:
        # Registers the stream's publish signal, poll update and queries; by itself it
        # adds no event, so the non-wfstreams transports run the same workflow.
        self.stream = WorkflowStream()

    @workflow.run
    async def run(self, key: str) -> int:
        return await workflow.execute_activity(
            produce_deltas, key, start_to_close_timeout=timedelta(seconds=60)
        )


@asynccontextmanager
async def no_sink(info: activity.Info) -> AsyncIterator[Emit]:
    async def emit(delta: Delta) -> None:
        return None

    yield emit


def queue_sink(queues: list[asyncio.Queue[Delta]]) -> Sink:
    @asynccontextmanager
    async def sink(info: activity.Info) -> AsyncIterator[Emit]:
        async def emit(delta: Delta) -> None:
            for queue in queues:
                queue.put_nowait(delta)

        yield emit

    return sink


def wfstreams_sink(eager: bool) -> Sink:
    """Publishing as pydantic-ai's event_stream_handler does: a stream client pinned to
    the run that scheduled the activity, its background flusher batching publishes."""

    @asynccontextmanager
    async def sink(info: activity.Info) -> AsyncIterator[Emit]:
        client = activity.client()
        assert info.workflow_id is not None
        handle = client.get_workflow_handle(info.workflow_id, run_id=info.workflow_run_id)
        stream = WorkflowStreamClient(
            handle, client=client, batch_interval=timedelta(milliseconds=100)
        )
        topic = stream.topic(TOPIC)

        async def emit(delta: Delta) -> None:
            topic.publish(delta, force_flush=eager)

        async with stream:
            yield emit
            if eager:
                # Workaround: on Python 3.11, asyncio.wait_for returns normally when its
                # awaitable completes as the task is cancelled (fixed in 3.12), so the
                # flusher cancelled by __aexit__ right after a force_flush can swallow the
                # cancellation and __aexit__ waits forever (seen here: the activity hung).
                # Flush first and let the flusher go idle before leaving.
                await stream.flush()
                await asyncio.sleep(0.05)

    return sink


# -- SQLite ---------------------------------------------------------------------------

SQLITE_SCHEMA = """CREATE TABLE IF NOT EXISTS ratchet_deltas (
    run_id TEXT NOT NULL, call_id INTEGER NOT NULL, attempt INTEGER NOT NULL,
    pos INTEGER NOT NULL, body TEXT NOT NULL, created REAL NOT NULL,
    PRIMARY KEY (run_id, call_id, attempt, pos)) WITHOUT ROWID"""
# A row-value cursor, so resuming after (call, attempt, offset) needs no other column.
TAIL_SQL = """SELECT call_id, attempt, pos, body FROM ratchet_deltas
    WHERE run_id = {p} AND (call_id, attempt, pos) > ({p}, {p}, {p})
    ORDER BY call_id, attempt, pos"""


def open_sqlite(path: str) -> sqlite3.Connection:
    # The transcript store's settings: WAL (readers never wait for the writer) and
    # synchronous=NORMAL (no fsync per commit; a lost delta is re-streamed by the retry).
    db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=10.0)
    db.execute("PRAGMA busy_timeout=10000")
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute(SQLITE_SCHEMA)
    return db


def sqlite_sink(path: str) -> Sink:
    @asynccontextmanager
    async def sink(info: activity.Info) -> AsyncIterator[Emit]:
        db = open_sqlite(path)
        where = (info.workflow_run_id, int(info.activity_id), info.attempt)

        def write(delta: Delta) -> None:
            db.execute(
                "INSERT OR IGNORE INTO ratchet_deltas VALUES (?, ?, ?, ?, ?, ?)",
                (*where, delta["o"], json.dumps(delta), time.time()),
            )

        async def emit(delta: Delta) -> None:
            # As SQLiteTranscriptStore does: writes leave the event loop.
            await asyncio.to_thread(write, delta)

        try:
            yield emit
        finally:
            db.close()

    return sink


async def tail_sqlite(
    path: str, run_id: str, deltas: int, poll_s: float, ready: Callable[[], None]
) -> list[Receipt]:
    """Polls ``PRAGMA data_version``, which changes when another connection commits and
    reads no table page, so the rows are queried only after a commit. SQLite has no
    cross-process wakeup; the interval (``--poll-ms``) trades latency for idle CPU."""
    db = open_sqlite(path)
    got: list[Receipt] = []
    cursor: tuple[int, int, int] = (0, 0, -1)
    version = None
    ready()
    try:
        while len(got) < deltas:
            (now_version,) = db.execute("PRAGMA data_version").fetchone()
            if now_version != version:
                version = now_version
                rows = db.execute(TAIL_SQL.format(p="?"), (run_id, *cursor)).fetchall()
                now = time.monotonic()
                for call_id, attempt, pos, body in rows:
                    got.append(receipt(json.loads(body), now))
                    cursor = (call_id, attempt, pos)
                if rows:
                    continue
            await asyncio.sleep(poll_s)
    finally:
        db.close()
    return got


# -- PostgreSQL -----------------------------------------------------------------------

PG_SCHEMA = """CREATE TABLE IF NOT EXISTS ratchet_deltas (
    run_id text NOT NULL, call_id integer NOT NULL, attempt integer NOT NULL,
    pos integer NOT NULL, body text NOT NULL, created timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (run_id, call_id, attempt, pos))"""
# The notification is sent at commit, so a woken subscriber always finds the row.
PG_INSERT = """WITH added AS (
    INSERT INTO ratchet_deltas (run_id, call_id, attempt, pos, body)
    VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING RETURNING run_id)
    SELECT pg_notify(%s, run_id) FROM added"""


def postgres_sink(dsn: str) -> Sink:
    import psycopg

    @asynccontextmanager
    async def sink(info: activity.Info) -> AsyncIterator[Emit]:
        conn = await psycopg.AsyncConnection.connect(dsn, autocommit=True)
        # Deltas are ephemeral: no WAL flush wait per commit (a crash loses the last
        # few, and the retried attempt streams again).
        await conn.execute("SET synchronous_commit = off")
        where = (info.workflow_run_id, int(info.activity_id), info.attempt)

        async def emit(delta: Delta) -> None:
            await conn.execute(PG_INSERT, (*where, delta["o"], json.dumps(delta), CHANNEL))

        try:
            yield emit
        finally:
            await conn.close()

    return sink


async def tail_postgres(
    dsn: str, run_id: str, deltas: int, ready: Callable[[], None]
) -> list[Receipt]:
    """LISTEN on one connection, read on another: psycopg's ``notifies()`` holds its
    connection while it waits. A notification only says "look"; the table is the truth,
    so a subscriber resumes from its cursor and several wakeups cost one read."""
    import psycopg

    listener = await psycopg.AsyncConnection.connect(dsn, autocommit=True)
    reader = await psycopg.AsyncConnection.connect(dsn, autocommit=True)
    wake = asyncio.Event()

    async def listen() -> None:
        async for note in listener.notifies():
            if note.payload == run_id:
                wake.set()

    await listener.execute(f"LISTEN {CHANNEL}")
    listening = asyncio.create_task(listen())
    got: list[Receipt] = []
    cursor: tuple[int, int, int] = (0, 0, -1)
    ready()
    try:
        while len(got) < deltas:
            wake.clear()
            rows = await (
                await reader.execute(TAIL_SQL.format(p="%s"), (run_id, *cursor))
            ).fetchall()
            now = time.monotonic()
            for call_id, attempt, pos, body in rows:
                got.append(receipt(json.loads(body), now))
                cursor = (call_id, attempt, pos)
            if len(got) < deltas and not rows:
                await wake.wait()
    finally:
        listening.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await listening
        await listener.close()
        await reader.close()
    return got


# -- workflow_streams -----------------------------------------------------------------


async def tail_wfstreams(
    client: Client,
    workflow_id: str,
    run_id: str,
    deltas: int,
    cooldown_s: float,
    ready: Callable[[], None],
) -> list[Receipt]:
    handle = client.get_workflow_handle(workflow_id, run_id=run_id)
    stream = WorkflowStreamClient(handle, client=client)
    # A query answered means the workflow runs and its worker serves the stream.
    await stream.get_offset()
    ready()
    got: list[Receipt] = []
    items = stream.subscribe([TOPIC], poll_cooldown=timedelta(seconds=cooldown_s))
    async with contextlib.aclosing(cast(AsyncGenerator[WorkflowStreamItem[Any]], items)):
        async for item in items:
            got.append(receipt(item.data, time.monotonic()))
            if len(got) >= deltas:
                break
    return got


# -- subscribers, in this process or another ------------------------------------------


@dataclass
class Where:
    """Everything a subscriber needs to find one run's deltas (JSON for a subprocess)."""

    transport: str
    deltas: int
    workflow_id: str
    run_id: str
    sqlite: str
    dsn: str
    target: str
    poll_ms: float


async def tail(
    where: Where,
    ready: Callable[[], None],
    client: Client | None = None,
    queue: asyncio.Queue[Delta] | None = None,
) -> list[Receipt]:
    if where.transport == "queue":
        assert queue is not None
        ready()
        got: list[Receipt] = []
        while len(got) < where.deltas:
            got.append(receipt(await queue.get(), time.monotonic()))
        return got
    if where.transport == "sqlite":
        return await tail_sqlite(
            where.sqlite, where.run_id, where.deltas, where.poll_ms / 1000, ready
        )
    if where.transport == "postgres":
        return await tail_postgres(where.dsn, where.run_id, where.deltas, ready)
    if client is None:
        client = await Client.connect(where.target)
    cooldown = 0.0 if where.transport == "wfstreams-eager" else 0.1
    return await tail_wfstreams(
        client, where.workflow_id, where.run_id, where.deltas, cooldown, ready
    )


@dataclass
class Subscribed:
    place: str
    receipts: list[Receipt]
    cpu_s: float | None = None
    wall_s: float | None = None
    error: str | None = None


class TaskSubscriber:
    def __init__(self, where: Where, client: Client, queue: asyncio.Queue[Delta] | None) -> None:
        self.attached = asyncio.Event()
        self.task = asyncio.create_task(tail(where, self.attached.set, client, queue))

    async def ready(self) -> None:
        await self.attached.wait()

    async def result(self) -> Subscribed:
        try:
            return Subscribed("task", await self.task)
        except Exception as exc:
            return Subscribed("task", [], error=repr(exc))


class ProcessSubscriber:
    def __init__(self, where: Where) -> None:
        self.where = where
        self.proc: asyncio.subprocess.Process | None = None

    async def ready(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.stream_transport",
            "--subscribe",
            json.dumps(asdict(self.where)),
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
        )
        assert self.proc.stdout is not None
        line = await self.proc.stdout.readline()
        if line.strip() != b"READY":
            raise RuntimeError(f"subscriber process said {line!r}")

    async def result(self) -> Subscribed:
        assert self.proc is not None and self.proc.stdout is not None
        try:
            line = await self.proc.stdout.readline()
            await self.proc.wait()
            out = json.loads(line)
        except Exception as exc:
            return Subscribed("process", [], error=repr(exc))
        return Subscribed(
            "process", [tuple(r) for r in out["receipts"]], out["cpu_s"], out["wall_s"]
        )

    def kill(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()


async def subscriber_process(where_json: str) -> None:
    """The other process: attach, say READY, tail, print receipts and CPU as JSON."""
    where = Where(**json.loads(where_json))
    started: list[float] = []

    def ready() -> None:
        started.extend((cpu_s(), time.monotonic()))
        print("READY", flush=True)

    got = await tail(where, ready)
    out = {
        "receipts": got,
        "cpu_s": cpu_s() - started[0],
        "wall_s": time.monotonic() - started[1],
    }
    print(json.dumps(out), flush=True)


# -- the history -----------------------------------------------------------------------

_DELTA_TEXT = re.compile(rb"tok(\d+) ")
_BASE64 = re.compile(rb"[A-Za-z0-9+/]{16,}={0,2}")


def deltas_in(blob: bytes, depth: int = 3) -> set[int]:
    """Offsets of the deltas whose text is in ``blob``, also inside base64 (as
    workflow_streams nests each item's payload in its signal's JSON)."""
    found = {int(m.group(1)) for m in _DELTA_TEXT.finditer(blob)}
    if depth > 0:
        for m in _BASE64.finditer(blob):
            with contextlib.suppress(ValueError):
                found |= deltas_in(base64.b64decode(m.group(0), validate=True), depth - 1)
    return found


# -- the driver ------------------------------------------------------------------------


@dataclass
class Outcome:
    transport: str
    subscribers: list[Subscribed]
    write_s: list[float]
    history_events: int
    history_bytes: int
    event_types: dict[str, int]
    deltas_in_history: int
    worker_cpu_s: float
    server_cpu_s: float


class Bench:
    def __init__(self, args: argparse.Namespace, scratch: Path) -> None:
        self.args = args
        self.scratch = scratch
        self.sqlite = str(scratch / "deltas.sqlite")
        self.env: WorkflowEnvironment | None = None
        self.pg: Any = None
        self.dsn = ""
        self.server_pid: int | None = None

    @property
    def client(self) -> Client:
        assert self.env is not None
        return self.env.client

    async def setup(self) -> None:
        from pgserver.postgres_server import get_server

        before = {pid for pid, _ in procstat.children(os.getpid())}
        binary = Path(sys.executable).parent / "temporal"
        pg_task = asyncio.create_task(
            asyncio.to_thread(get_server, self.scratch / "pg", cleanup_mode="delete")
        )
        self.env = await WorkflowEnvironment.start_local(
            dev_server_existing_path=str(binary),
            ui=False,
            dev_server_log_level="error",
            dev_server_extra_args=[] if self.args.server_defaults else SERVER_ARGS,
        )
        spawned = [
            pid
            for pid, comm in procstat.children(os.getpid())
            if pid not in before and "temporal" in comm
        ]
        self.server_pid = spawned[0] if spawned else None
        self.pg = await pg_task
        self.dsn = str(self.pg.get_uri())
        import psycopg

        async with await psycopg.AsyncConnection.connect(self.dsn, autocommit=True) as conn:
            await conn.execute(PG_SCHEMA)
        open_sqlite(self.sqlite).close()

    async def teardown(self) -> None:
        if self.env is not None:
            with contextlib.suppress(Exception):
                await self.env.shutdown()
        if self.pg is not None:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(self.pg.cleanup)

    def server_cpu(self) -> float:
        if self.server_pid is None:
            return 0.0
        try:
            return procstat.cpu_seconds(self.server_pid)
        except OSError:
            return 0.0

    def sink(self, transport: str, queues: list[asyncio.Queue[Delta]]) -> Sink:
        if transport == "queue":
            return queue_sink(queues)
        if transport == "sqlite":
            return sqlite_sink(self.sqlite)
        if transport == "postgres":
            return postgres_sink(self.dsn)
        if transport.startswith("wfstreams"):
            return wfstreams_sink(eager=transport == "wfstreams-eager")
        return no_sink

    async def run_case(self, transport: str) -> Outcome:
        key = uuid.uuid4().hex
        queue: asyncio.Queue[Delta] = asyncio.Queue()
        case = Case(transport, self.args.deltas, self.args.rate, self.sink(transport, [queue]))
        CASES[key] = case
        handle: WorkflowHandle[Any, int] = await self.client.start_workflow(
            StreamBench.run, key, id=f"stream-{key}", task_queue=TASK_QUEUE
        )
        assert handle.result_run_id is not None
        where = Where(
            transport=transport,
            deltas=case.deltas,
            workflow_id=handle.id,
            run_id=handle.result_run_id,
            sqlite=self.sqlite,
            dsn=self.dsn,
            target=str(self.client.service_client.config.target_host),
            poll_ms=self.args.poll_ms,
        )
        subscribers: list[TaskSubscriber | ProcessSubscriber] = []
        if transport != "off":
            subscribers.append(
                TaskSubscriber(where, self.client, queue if transport == "queue" else None)
            )
        if transport not in ("off", "queue"):
            subscribers.append(ProcessSubscriber(where))
        try:
            async with asyncio.timeout(CASE_TIMEOUT_S):
                await asyncio.gather(*(s.ready() for s in subscribers))
                await asyncio.sleep(0.2)
                worker_cpu, server_cpu = cpu_s(), self.server_cpu()
                case.go.set()
                await handle.result()
                results = [await s.result() for s in subscribers]
                worker_cpu, server_cpu = cpu_s() - worker_cpu, self.server_cpu() - server_cpu
        except TimeoutError:
            if os.environ.get("STREAM_DEBUG"):
                h = await handle.fetch_history()
                for e in h.events:
                    print(e.event_id, EventType.Name(e.event_type), file=sys.stderr)
                print(case.write_s[-3:], len(case.write_s), file=sys.stderr)
                for s in subscribers:
                    if isinstance(s, TaskSubscriber):
                        print(s.task, file=sys.stderr)
            raise
        finally:
            for s in subscribers:
                if isinstance(s, ProcessSubscriber):
                    s.kill()
                else:
                    s.task.cancel()
        history = await handle.fetch_history()
        raw = b"".join(event.SerializeToString() for event in history.events)
        types: dict[str, int] = {}
        for event in history.events:
            name = EventType.Name(event.event_type).removeprefix("EVENT_TYPE_")
            types[name] = types.get(name, 0) + 1
        return Outcome(
            transport=transport,
            subscribers=results,
            write_s=case.write_s,
            history_events=len(history.events),
            history_bytes=sum(event.ByteSize() for event in history.events),
            event_types=types,
            deltas_in_history=len(deltas_in(raw)),
            worker_cpu_s=worker_cpu,
            server_cpu_s=server_cpu,
        )

    async def run(self) -> list[Outcome]:
        outcomes = []
        async with Worker(
            self.client,
            task_queue=TASK_QUEUE,
            workflows=[StreamBench],
            activities=[produce_deltas],
            # The sandbox would only add workflow-task time to the wfstreams cases.
            workflow_runner=UnsandboxedWorkflowRunner(),
        ):
            for transport in self.args.transports:
                print(f"  {transport} ...", file=sys.stderr, flush=True)
                outcomes.append(await self.run_case(transport))
        return outcomes


# -- report ----------------------------------------------------------------------------


def pct(values: list[float], q: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def latencies(sub: Subscribed) -> list[float]:
    return [(recv - sent) * 1000 for _, sent, recv in sub.receipts]


def gaps(sub: Subscribed) -> list[float]:
    times = [recv for _, _, recv in sub.receipts]
    return [(b - a) * 1000 for a, b in itertools.pairwise(times)]


def in_order(sub: Subscribed, deltas: int) -> bool:
    return [offset for offset, _, _ in sub.receipts] == list(range(deltas))


def report(outcomes: list[Outcome], args: argparse.Namespace) -> str:
    n = args.deltas
    floor = next((o for o in outcomes if o.transport == "queue"), None)
    floor_lat = latencies(floor.subscribers[0]) if floor and floor.subscribers else []
    f50, f95 = pct(floor_lat, 0.5), pct(floor_lat, 0.95)
    off = next((o for o in outcomes if o.transport == "off"), None)
    lines = [
        f"{n} deltas at {args.rate:g}/s from a Temporal activity; latency = received - "
        "emitted (CLOCK_MONOTONIC); ratios against the in-process asyncio.Queue.",
        "",
        "| transport | subscriber | got | p50 ms | p95 ms | p50 x queue | p95 x queue "
        "| gap p50/p95 ms | subscriber CPU % |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for o in outcomes:
        for sub in o.subscribers:
            lat = latencies(sub)
            p50, p95 = pct(lat, 0.5), pct(lat, 0.95)
            g = gaps(sub)
            cpu = (
                f"{100 * sub.cpu_s / sub.wall_s:.1f}"
                if sub.cpu_s is not None and sub.wall_s
                else "-"
            )
            got = f"{len(sub.receipts)}/{n}" + ("" if in_order(sub, n) else " (order!)")
            if sub.error:
                got += f" {sub.error}"
            lines.append(
                f"| {o.transport} | {sub.place} | {got} | {p50:.2f} | {p95:.2f} "
                f"| {p50 / f50:.0f} | {p95 / f95:.0f} | {pct(g, 0.5):.1f}/{pct(g, 0.95):.1f} "
                f"| {cpu} |"
            )
    lines += [
        "",
        "| transport | history events | history bytes | added events/delta "
        "| added bytes/delta | deltas found in it | events added | write p50/p95 µs "
        "| worker CPU ms/1k | server CPU ms/1k |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for o in outcomes:
        added_events = o.history_events - off.history_events if off else 0
        added_bytes = o.history_bytes - off.history_bytes if off else 0
        added_types = {
            name: count - (off.event_types.get(name, 0) if off else 0)
            for name, count in o.event_types.items()
        }
        added = ", ".join(f"{k} {v:+d}" for k, v in sorted(added_types.items()) if v) or "none"
        writes = [s * 1e6 for s in o.write_s]
        lines.append(
            f"| {o.transport} | {o.history_events} | {o.history_bytes} "
            f"| {added_events / n:.3f} | {added_bytes / n:.1f} | {o.deltas_in_history} | {added} "
            f"| {pct(writes, 0.5):.0f}/{pct(writes, 0.95):.0f} "
            f"| {o.worker_cpu_s * 1000 / n * 1000:.0f} | {o.server_cpu_s * 1000 / n * 1000:.0f} |"
        )
    return "\n".join(lines)


async def main(args: argparse.Namespace) -> list[Outcome]:
    with tempfile.TemporaryDirectory(prefix="stream-transport-") as scratch:
        bench = Bench(args, Path(scratch))
        try:
            async with asyncio.timeout(170):
                await bench.setup()
                outcomes = await bench.run()
        finally:
            await bench.teardown()
    print(report(outcomes, args))
    return outcomes


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.stream_transport")
    parser.add_argument("--deltas", type=int, default=200)
    parser.add_argument("--rate", type=float, default=100.0, help="deltas per second")
    parser.add_argument("--poll-ms", type=float, default=5.0, help="SQLite tail interval")
    parser.add_argument(
        "--transports",
        type=lambda s: s.split(","),
        default=list(TRANSPORTS),
        help="comma-separated subset of " + ",".join(TRANSPORTS) + " (keep off first)",
    )
    parser.add_argument("--server-defaults", action="store_true")
    parser.add_argument("--json", help="write every outcome to this file")
    parser.add_argument("--subscribe", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


if __name__ == "__main__":
    parsed = parse()
    if parsed.subscribe:
        asyncio.run(subscriber_process(parsed.subscribe))
    else:
        outcomes = asyncio.run(main(parsed))
        if parsed.json:
            Path(parsed.json).write_text(json.dumps([asdict(o) for o in outcomes], indent=1))
