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
from ratchet.testing import FaultProxy, ScriptedModelServer, call, reply, tool_calls

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
        self.messages.append(f"{time.monotonic():.2f} {record.getMessage()}")

    def runtime(self) -> Runtime:
        return Runtime(
            telemetry=TelemetryConfig(
                logging=LoggingConfig(
                    filter=TelemetryFilter(core_level="INFO", other_level="WARN"),
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


def refund_tool(ledger: Ledger, hold_first: threading.Event, first_started: threading.Event) -> Any:
    """A side-effecting refund whose first attempt applies, then works until released."""

    @tool(side_effects=True, timeout=60, max_attempts=3)
    def refund(order_id: int, ctx: ToolContext) -> str:
        """Refund an order."""
        ledger.apply(ctx.idempotency_key, order_id, ctx.attempt)
        if ctx.attempt == 1:
            first_started.set()
            hold_first.wait(60)
        return f"refunded order {order_id} (attempt {ctx.attempt})"

    return refund


async def wait_until(event: threading.Event, timeout: float, what: str) -> None:
    if not await asyncio.to_thread(event.wait, timeout):
        raise TimeoutError(f"timed out waiting for {what}")


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
        tools=[refund_tool(ledger, release, first_started)],
        limits=Limits(tool_heartbeat_seconds=1, **QUICK),
    )
    model_server.add(tool_calls(call("refund", {"order_id": 7})), reply("Refunded."))
    queue = f"hb-{uuid.uuid4().hex[:8]}"
    core = CoreLog()
    async with client_through_proxy(temporal_env, core) as (proxy, cut_client):
        async with hosted(cut_client, [agent], model_server, task_queue=queue):
            client = AgentClient(temporal_env.client, task_queue=queue)
            handle = await client.start("hb", "Refund order 7.")
            await wait_until(first_started, 30, "the first attempt to start")
            # Worker 1 still runs the refund, but its heartbeats no longer arrive.
            proxy.blackhole()
            cut_at = time.monotonic()
            async with hosted(temporal_env.client, [agent], model_server, task_queue=queue):
                result = await handle.result()
                done_at = time.monotonic()
            # Now the first attempt finishes and reports, late, once the link is back.
            release.set()
            await asyncio.sleep(0.5)
            proxy.heal()
            healed_at = time.monotonic()
            await asyncio.sleep(8)
    async for e in temporal_env.client.get_workflow_handle(handle.id).fetch_history_events():
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            a = e.activity_task_started_event_attributes
            print("DEBUGEV", e.event_time.ToDatetime(), a.attempt, a.identity, a.last_failure)
        else:
            print("DEBUGEV", e.event_time.ToDatetime(), EventType.Name(e.event_type))
    print("DEBUGT", cut_at, done_at, healed_at)
    for m in core.messages: print("DEBUGCORE", m[:300])
    print("DEBUG", ledger.attempts(), cut_at, done_at, core.messages, proxy.counts)
    assert result.output == "Refunded."
    completed, started = await activity_record(temporal_env.client, handle.id, "turn1-tool0")
    assert completed == 1
    assert started == [2], started  # the recorded result is attempt 2's
    transcript = await handle.transcript()
    assert transcript[3].content == "refunded order 7 (attempt 2)"
    [(key, _)] = ledger.refunds()
    assert [(k, a) for k, a, _ in ledger.attempts()] == [(key, 1), (key, 2)]
    print(f"attempt 2 done {done_at - cut_at:.2f}s after the cut; {proxy.counts}")
    print(core.messages)
