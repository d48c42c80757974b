"""Network faults between a worker and the Temporal server, and between a worker and its
model provider, injected with ratchet.testing.FaultProxy on loopback.

The three behaviours issue 21 asks for:
- a blackholed provider: its calls time out and are retried; the run completes;
- a worker cut off from the server for 30 s resumes its run with no step duplicated;
- heartbeats lost past their timeout: the server retries the call on another worker,
  and the first attempt's late result is rejected, never applied twice.
And that runs complete under latency, resets and half-open connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import sqlite3
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client
from temporalio.runtime import (
    LogForwardingConfig,
    LoggingConfig,
    Runtime,
    TelemetryConfig,
    TelemetryFilter,
)
from temporalio.testing import WorkflowEnvironment

from ratchet import Agent, AgentClient, Limits, ToolContext, tool
from ratchet.models import OpenAICompatible
from ratchet.testing import (
    SCRIPTED_API_KEY,
    FaultProxy,
    ScriptedModelServer,
    call,
    reply,
    tool_calls,
)

from .conftest import hosted

QUICK = dict(model_retry_initial_seconds=0.1, model_retry_max_seconds=0.5)


class Ledger:
    """A side effect with an idempotency key (a refund table), and a log of every attempt."""

    def __init__(self, path: Path) -> None:
        self.path = path
        with contextlib.closing(sqlite3.connect(path)) as db, db:
            db.executescript(
                "CREATE TABLE refunds (key TEXT PRIMARY KEY, order_id INTEGER);"
                "CREATE TABLE attempts (key TEXT, attempt INTEGER, at REAL);"
            )

    def apply(self, key: str, order_id: int, attempt: int) -> None:
        with contextlib.closing(sqlite3.connect(self.path, timeout=10)) as db, db:
            db.execute("INSERT OR IGNORE INTO refunds VALUES (?, ?)", (key, order_id))
            db.execute("INSERT INTO attempts VALUES (?, ?, ?)", (key, attempt, time.time()))

    def refunds(self) -> list[tuple[str, int]]:
        with contextlib.closing(sqlite3.connect(self.path)) as db:
            return db.execute("SELECT key, order_id FROM refunds").fetchall()

    def attempts(self) -> list[tuple[str, int, float]]:
        with contextlib.closing(sqlite3.connect(self.path)) as db:
            return db.execute("SELECT key, attempt, at FROM attempts ORDER BY rowid").fetchall()


class CoreLog(logging.Handler):
    """The Temporal core's warnings of one client (its Runtime forwards them here)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []
        self.logger = logging.getLogger(f"tests.core.{uuid.uuid4().hex[:6]}")
        self.logger.setLevel(logging.DEBUG)
        self.logger.propagate = False
        self.logger.addHandler(self)

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())

    async def wait_for(self, text: str, within: float) -> str:
        deadline = time.monotonic() + within
        while True:
            found = [m for m in self.messages if text in m]
            if found:
                return found[0]
            if time.monotonic() > deadline:
                raise TimeoutError(f"no core log line with {text!r}; got {self.messages}")
            await asyncio.sleep(0.1)

    def runtime(self) -> Runtime:
        return Runtime(
            telemetry=TelemetryConfig(
                logging=LoggingConfig(
                    filter=TelemetryFilter(core_level="WARN", other_level="ERROR"),
                    forwarding=LogForwardingConfig(logger=self.logger),
                )
            )
        )


@contextlib.asynccontextmanager
async def client_through_proxy(
    env: WorkflowEnvironment, log: CoreLog | None = None
) -> AsyncIterator[tuple[FaultProxy, Client]]:
    """A FaultProxy in front of the Temporal server, and a client connected through it."""
    direct = env.client
    with FaultProxy(direct.service_client.config.target_host, name="temporal") as proxy:
        client = await Client.connect(
            proxy.address,
            namespace=direct.namespace,
            data_converter=direct.data_converter,
            runtime=log.runtime() if log is not None else None,
        )
        yield proxy, client


def history_events(events: list[Any], kind: int) -> list[Any]:
    return [e for e in events if e.event_type == kind]


async def activity_record(client: Client, run_id: str, activity_id: str) -> tuple[int, list[int]]:
    """(ActivityTaskCompleted events, attempts started) for one activity of a run."""
    events = [e async for e in client.get_workflow_handle(run_id).fetch_history_events()]
    scheduled = {
        e.event_id
        for e in history_events(events, EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED)
        if e.activity_task_scheduled_event_attributes.activity_id == activity_id
    }
    completed = [
        e
        for e in history_events(events, EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED)
        if e.activity_task_completed_event_attributes.scheduled_event_id in scheduled
    ]
    started = [
        e.activity_task_started_event_attributes.attempt
        for e in history_events(events, EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED)
        if e.activity_task_started_event_attributes.scheduled_event_id in scheduled
    ]
    return len(completed), started


def refund_tool(
    ledger: Ledger,
    hold_first: threading.Event,
    first_started: threading.Event,
    max_attempts: int = 3,
) -> Any:
    """A side-effecting refund whose first attempt applies, then works until released."""

    @tool(side_effects=True, timeout=60, max_attempts=max_attempts)
    def refund(order_id: int, ctx: ToolContext) -> str:
        """Refund an order."""
        ledger.apply(ctx.idempotency_key, order_id, ctx.attempt)
        if ctx.attempt == 1:
            first_started.set()
            hold_first.wait(60)
        return f"refunded order {order_id} (attempt {ctx.attempt})"

    return refund


async def wait_until(event: threading.Event, within: float, what: str) -> None:
    if not await asyncio.to_thread(event.wait, within):
        raise TimeoutError(f"timed out waiting for {what}")


async def completed_activity(client: Client, run_id: str, activity_id: str) -> bool:
    completed, _ = await activity_record(client, run_id, activity_id)
    return completed > 0


async def poll(predicate: Any, within: float, what: str) -> None:
    """Await ``predicate()`` (a coroutine function) until it is true."""
    deadline = time.monotonic() + within
    while not await predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


# --- the proxy itself, against a plain HTTP endpoint -----------------------------------------


@pytest.fixture
def health_link(model_server: ScriptedModelServer) -> Iterator[FaultProxy]:
    with FaultProxy(f"127.0.0.1:{model_server.port}", name="model") as link:
        yield link


def get_health(link: FaultProxy, timeout: float = 2.0) -> float:
    """One ``GET /health`` on a new connection through ``link``; returns its seconds."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", link.port), timeout=timeout) as s:
        s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        answer = b""
        while chunk := s.recv(4096):
            answer += chunk
    assert answer.startswith(b"HTTP/1.") and b'"ok"' in answer, answer
    return time.monotonic() - started


def read_health(s: socket.socket) -> bytes:
    """A whole ``/health`` answer from a kept-alive connection (it may come in pieces)."""
    answer = b""
    while b'"ok"' not in answer:
        chunk = s.recv(4096)
        assert chunk, answer
        answer += chunk
    return answer


def test_proxy_forwards_and_delays(health_link: FaultProxy) -> None:
    assert get_health(health_link) < 1.0
    health_link.latency(0.15)
    assert get_health(health_link) >= 0.3  # a round trip: 0.15 s each way
    health_link.heal()
    assert get_health(health_link) < 1.0
    deadline = time.monotonic() + 2
    while health_link.counts.open and time.monotonic() < deadline:
        time.sleep(0.01)  # the last close is still on its way through
    counts = health_link.counts
    assert counts.connections == 3 and counts.delayed_chunks >= 2 and counts.open == 0, counts


def test_proxy_blackhole_holds_then_delivers(health_link: FaultProxy) -> None:
    health_link.blackhole(0.5)
    with pytest.raises(TimeoutError):
        get_health(health_link, timeout=0.2)  # gives up: this request is dropped on heal
    assert 0.1 < get_health(health_link) < 3.0  # waits out the rest, then goes through
    time.sleep(0.1)
    counts = health_link.counts
    assert counts.blackholes == 1 and counts.blackholed_connections == 2, counts
    assert counts.dropped_connections == 1 and counts.bytes_dropped > 0, counts
    assert not health_link.is_blackholed


def test_proxy_blackhole_until_heal_stalls_open_connections(
    health_link: FaultProxy, model_server: ScriptedModelServer
) -> None:
    with socket.create_connection(("127.0.0.1", health_link.port), timeout=5) as s:
        health_link.blackhole()
        s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        s.settimeout(0.5)
        with pytest.raises(TimeoutError):
            s.recv(10)
        health_link.heal()
        s.settimeout(5)
        assert s.recv(4096).startswith(b"HTTP/1.")


def test_proxy_reset_and_half_open(health_link: FaultProxy) -> None:
    with socket.create_connection(("127.0.0.1", health_link.port), timeout=5) as s:
        s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_health(s).startswith(b"HTTP/1.")  # a kept-alive connection
        assert health_link.reset() == 1
        with pytest.raises(ConnectionResetError):
            s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            s.recv(10)
    with socket.create_connection(("127.0.0.1", health_link.port), timeout=5) as s:
        s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_health(s).startswith(b"HTTP/1.")
        assert health_link.half_open() == 1
        s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        s.settimeout(0.5)
        with pytest.raises(TimeoutError):
            s.recv(10)  # nobody answers, nobody hangs up
        assert get_health(health_link) < 2.0  # new connections are fine
        health_link.heal()  # the half-open connection meets a reset
        s.settimeout(5)
        with pytest.raises(ConnectionResetError):
            s.recv(10)
    counts = health_link.counts
    assert (counts.resets, counts.half_opened) == (1, 1), counts


def test_proxy_stop_closes_everything(model_server: ScriptedModelServer) -> None:
    link = FaultProxy(("127.0.0.1", model_server.port)).start()
    s = socket.create_connection(("127.0.0.1", link.port), timeout=5)
    link.blackhole()
    link.stop()
    link.stop()  # idempotent
    with s, pytest.raises((ConnectionResetError, BrokenPipeError)):
        s.sendall(b"x")
        s.recv(10)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", link.port), timeout=1).close()


def test_proxy_to_an_unreachable_target_closes_the_connection() -> None:
    with socket.socket() as spare:
        spare.bind(("127.0.0.1", 0))
        port = spare.getsockname()[1]  # bound, not listening: connections are refused
        with FaultProxy(f"127.0.0.1:{port}") as link:
            # The proxy accepts, fails to reach the target and resets: the client sees
            # the reset (sometimes already in connect) or an end of stream.
            with (
                contextlib.suppress(ConnectionResetError),
                socket.create_connection(("127.0.0.1", link.port), timeout=5) as s,
            ):
                assert s.recv(10) == b""
            deadline = time.monotonic() + 5
            while link.counts.target_unreachable == 0 and time.monotonic() < deadline:
                time.sleep(0.01)
            assert link.counts.target_unreachable == 1


# --- 1. a blackholed provider: calls time out, are retried, the run completes ------------


async def test_blackholed_provider_calls_time_out_and_are_retried(
    temporal_env: WorkflowEnvironment, model_server: ScriptedModelServer
) -> None:
    blackholed_at: list[float] = []
    with FaultProxy(f"127.0.0.1:{model_server.port}", name="model") as link:

        @tool
        def lookup(order_id: int) -> str:
            """Look up an order."""
            link.blackhole()  # the next model calls go into the void
            blackholed_at.append(time.monotonic())
            return f"order {order_id} has shipped"

        agent = Agent(
            "bh",
            instructions="x",
            model="openai:m",
            tools=[lookup],
            limits=Limits(model_timeout_seconds=1.0, model_max_attempts=10, **QUICK),
        )
        model_server.add(
            tool_calls(call("lookup", {"order_id": 1042})), reply("Order 1042 has shipped.")
        )
        provider = OpenAICompatible(base_url=link.url("/v1"), api_key=SCRIPTED_API_KEY)
        async with hosted(
            temporal_env.client, [agent], model_server, providers={"openai": provider}
        ) as client:
            handle = await client.start("bh", "Where is order 1042?")
            # Turn 1's connection, then one new connection per attempt of turn 2: heal
            # as attempt 3 starts, far from any attempt's timeout (a request sent just
            # as its sender gives up would reach the provider, as it can in life).
            await poll(lambda: _connections(link, 3), 30, "turn 2's third attempt")
            cut_for = time.monotonic() - blackholed_at[0]
            link.heal()
            result = await handle.result()
    assert result.output == "Order 1042 has shipped."
    attempts = await model_attempts(temporal_env.client, handle.id)
    # Turn 2's call timed out in the blackhole, attempt after attempt, then went through.
    assert attempts[-1][0] >= 3, attempts
    assert "timed out" in attempts[-1][1].lower(), attempts
    # The abandoned attempts never reached the provider, late or otherwise.
    assert len(model_server.requests) == 2
    counts = link.counts
    assert counts.blackholes == 1 and counts.dropped_connections == 2, counts
    print(
        f"\nblackholed provider: healed after {cut_for:.2f}s; turn 2 done at attempt "
        f"{attempts[-1][0]}; {counts}"
    )


async def _connections(link: FaultProxy, n: int) -> bool:
    return link.counts.connections >= n


async def model_attempts(client: Client, run_id: str) -> list[tuple[int, str]]:
    """(attempt, last failure) of each model call's recorded start, in order."""
    out = []
    async for event in client.get_workflow_handle(run_id).fetch_history_events():
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            attrs = event.activity_task_started_event_attributes
            out.append((attrs.attempt, attrs.last_failure.message))
    return out


# --- 2. a worker cut off from the server for 30 s resumes its run ----------------------------


async def test_worker_cut_off_for_30s_resumes_without_a_duplicated_step(
    temporal_env: WorkflowEnvironment, model_server: ScriptedModelServer, tmp_path: Path
) -> None:
    ledger = Ledger(tmp_path / "ledger.sqlite")
    release, first_started = threading.Event(), threading.Event()
    lookups: list[int] = []

    @tool
    def lookup(order_id: int) -> str:
        """Look up an order."""
        lookups.append(order_id)
        return f"order {order_id} was delivered"

    agent = Agent(
        "cut",
        instructions="x",
        model="openai:m",
        tools=[lookup, refund_tool(ledger, release, first_started, max_attempts=10)],
        limits=Limits(tool_heartbeat_seconds=2, **QUICK),
    )
    model_server.add(
        tool_calls(call("lookup", {"order_id": 1043})),
        tool_calls(call("refund", {"order_id": 1043})),
        reply("Order 1043 is refunded."),
    )
    queue = f"cut-{uuid.uuid4().hex[:8]}"
    core = CoreLog()
    async with (
        client_through_proxy(temporal_env, core) as (proxy, cut_client),
        hosted(cut_client, [agent], model_server, task_queue=queue),
    ):
        client = AgentClient(temporal_env.client, task_queue=queue)
        handle = await client.start("cut", "Please refund order 1043.")
        await wait_until(first_started, 30, "the refund to start")
        # Cut off mid-refund: its heartbeats, its result and its polls are held. The
        # server times the refund out and hands its retries to the worker's pending
        # polls, whose answers are held too.
        proxy.blackhole()
        release.set()
        await asyncio.sleep(30.0)
        proxy.heal()
        healed_at, healed_wall = time.monotonic(), time.time()
        result = await handle.result()
        done_in = time.monotonic() - healed_at
        # The late results (attempt 1's, and those of retries run after the heal with
        # their timeouts long past) are refused by the server.
        await core.wait_for("Activity not found on completion", 15)
    assert result.output == "Order 1043 is refunded."
    model_server.verify()
    assert len(model_server.requests) == 3, "a recorded model step was sent again"
    assert lookups == [1043], "a recorded tool step ran again"
    [(key, _)] = ledger.refunds()  # the refund is applied once...
    tries = ledger.attempts()
    assert {k for k, _, _ in tries} == {key}  # ...by every attempt, under one key
    completed, [attempt] = await activity_record(temporal_env.client, handle.id, "turn2-tool0")
    assert completed == 1
    transcript = await handle.transcript()
    assert [m.role for m in transcript] == [
        "system", "user", "assistant", "tool", "assistant", "tool", "assistant",
    ]  # fmt: skip
    assert transcript[5].content == f"refunded order 1043 (attempt {attempt})"
    counts = proxy.counts
    assert counts.bytes_held > 0, counts
    resumed_in = min(at for _, _, at in tries if at > healed_wall) - healed_wall
    print(
        f"\n30 s cut: the worker ran its next task {resumed_in:.2f}s after the heal, the run "
        f"was done {done_in:.2f}s after it; refund attempts {[a for _, a, _ in tries]}, "
        f"recorded attempt {attempt}; {counts}"
    )


# --- 3. heartbeats lost: retried elsewhere, the late result discarded ----------------------


async def test_lost_heartbeats_retry_elsewhere_and_the_late_result_is_discarded(
    temporal_env: WorkflowEnvironment, model_server: ScriptedModelServer, tmp_path: Path
) -> None:
    ledger = Ledger(tmp_path / "ledger.sqlite")
    release, first_started = threading.Event(), threading.Event()
    agent = Agent(
        "hb",
        instructions="x",
        model="openai:m",
        tools=[refund_tool(ledger, release, first_started, max_attempts=10)],
        limits=Limits(tool_heartbeat_seconds=1, **QUICK),
    )
    model_server.add(tool_calls(call("refund", {"order_id": 7})), reply("Refunded."))
    queue = f"hb-{uuid.uuid4().hex[:8]}"
    core = CoreLog()
    async with (
        client_through_proxy(temporal_env, core) as (proxy, cut_client),
        hosted(cut_client, [agent], model_server, task_queue=queue),
    ):
        client = AgentClient(temporal_env.client, task_queue=queue)
        handle = await client.start("hb", "Refund order 7.")
        await wait_until(first_started, 30, "the first attempt to start")
        # Worker 1's link goes dark; its refund then finishes, and its result waits
        # in the blackhole with its heartbeats.
        proxy.blackhole()
        cut_at = time.monotonic()
        release.set()
        async with hosted(temporal_env.client, [agent], model_server, task_queue=queue):
            await poll(
                lambda: completed_activity(temporal_env.client, handle.id, "turn1-tool0"),
                30,
                "the refund's retry on worker 2",
            )
            retried_in = time.monotonic() - cut_at
            # The link comes back: worker 1's late result reaches the server.
            proxy.heal()
            rejected = await core.wait_for("Activity not found on completion", 15)
            result = await handle.result()
    assert result.output == "Refunded."
    completed, [attempt] = await activity_record(temporal_env.client, handle.id, "turn1-tool0")
    assert completed == 1
    assert attempt >= 2
    transcript = await handle.transcript()
    assert transcript[3].content == f"refunded order 7 (attempt {attempt})"
    [(key, _)] = ledger.refunds()  # applied once
    tries = [(k, a) for k, a, _ in ledger.attempts()]
    assert tries[0] == (key, 1) and (key, attempt) in tries, tries
    assert {k for k, _ in tries} == {key}
    assert "NotFound" in rejected, rejected
    print(
        f"\nheartbeats lost: the retry's result (attempt {attempt}) recorded "
        f"{retried_in:.2f}s after the cut"
    )


# --- latency, resets, half-open connections ---------------------------------------------------


async def test_a_run_completes_with_200ms_latency_on_the_server_link(
    temporal_env: WorkflowEnvironment, model_server: ScriptedModelServer
) -> None:
    agent = Agent("slow", instructions="x", model="openai:m", tools=[], limits=Limits(**QUICK))
    model_server.add(reply("Hello."), reply("Hello again."))
    async with (
        client_through_proxy(temporal_env) as (proxy, cut_client),
        hosted(cut_client, [agent], model_server) as client,
    ):
        started = time.monotonic()
        await client.run("slow", "Hi.")
        baseline = time.monotonic() - started
        proxy.latency(0.2)
        started = time.monotonic()
        result = await client.run("slow", "Hi again.")
        took = time.monotonic() - started
    assert result.output == "Hello again."
    assert took > 0.8  # a run's tasks and answers take several round trips (0.4 s each)
    assert proxy.counts.delayed_chunks > 0
    print(f"\n200 ms latency each way: a run took {took:.2f}s ({baseline:.2f}s without)")


async def test_a_model_stream_reset_midway_is_retried(
    temporal_env: WorkflowEnvironment, model_server: ScriptedModelServer
) -> None:
    agent = Agent("rst", instructions="x", model="openai:m", tools=[], limits=Limits(**QUICK))
    model_server.add(
        reply("This answer is cut off " * 20, chunk_delay=0.05, chunk_chars=8),
        reply("The whole answer."),
    )
    with FaultProxy(f"127.0.0.1:{model_server.port}", name="model") as link:
        provider = OpenAICompatible(base_url=link.url("/v1"), api_key=SCRIPTED_API_KEY)
        async with hosted(
            temporal_env.client, [agent], model_server, providers={"openai": provider}
        ) as client:
            handle = await client.start("rst", "Hi.")
            await poll(
                lambda: _chunks_sent(model_server, 3), 20, "the first answer to be streaming"
            )
            assert link.reset() >= 1
            result = await handle.result()
    assert result.output == "The whole answer."
    attempts = await model_attempts(temporal_env.client, handle.id)
    assert attempts[0][0] == 2, attempts
    transcript = await handle.transcript()
    assert [m.content for m in transcript if m.role == "assistant"] == ["The whole answer."]


async def _chunks_sent(server: ScriptedModelServer, n: int) -> bool:
    requests = server.requests
    return bool(requests) and requests[0].chunks_sent >= n


async def test_a_worker_whose_server_connections_are_reset_carries_on(
    temporal_env: WorkflowEnvironment, model_server: ScriptedModelServer
) -> None:
    agent = Agent("rs", instructions="x", model="openai:m", tools=[], limits=Limits(**QUICK))
    model_server.add(reply("First.", delay=1.0), reply("Second."))
    async with (
        client_through_proxy(temporal_env) as (proxy, cut_client),
        hosted(cut_client, [agent], model_server) as client,
    ):
        handle = await client.start("rs", "One.")
        await model_server.wait_for_requests_async(1, timeout=20)
        reset = proxy.reset()  # mid model call: polls and the call's heartbeats cut
        first = await handle.result()
        second = await client.run("rs", "Two.")
    assert reset >= 1
    assert (first.output, second.output) == ("First.", "Second.")
    assert len(model_server.requests) == 2
    assert proxy.counts.connections >= 2  # it connected again


async def test_a_half_open_model_connection_times_out_and_the_retry_goes_through(
    temporal_env: WorkflowEnvironment, model_server: ScriptedModelServer
) -> None:
    with FaultProxy(f"127.0.0.1:{model_server.port}", name="model") as link:
        half_opened: list[int] = []

        @tool
        def lookup(order_id: int) -> str:
            """Look up an order."""
            # The provider's pooled keep-alive connection dies without a word.
            half_opened.append(link.half_open())
            return f"order {order_id} has shipped"

        agent = Agent(
            "ho",
            instructions="x",
            model="openai:m",
            tools=[lookup],
            limits=Limits(model_timeout_seconds=1.0, **QUICK),
        )
        model_server.add(tool_calls(call("lookup", {"order_id": 1})), reply("Shipped."))
        provider = OpenAICompatible(base_url=link.url("/v1"), api_key=SCRIPTED_API_KEY)
        async with hosted(
            temporal_env.client, [agent], model_server, providers={"openai": provider}
        ) as client:
            handle = await client.start("ho", "Where is order 1?")
            result = await handle.result()
    assert result.output == "Shipped."
    assert half_opened == [1]
    attempts = await model_attempts(temporal_env.client, handle.id)
    assert attempts[-1][0] == 2 and "timed out" in attempts[-1][1].lower(), attempts
    assert len(model_server.requests) == 2  # the request on the dead connection never arrived
