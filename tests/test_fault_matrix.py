"""The fault matrix: each fault driven against real processes, each outcome exact.

Rows 1 (worker kill -9 during a model call and a side-effecting tool) live in
test_crash_recovery.py, row 4 (a hung model) in test_runs.py and row 10 (changed
workflow code) in test_determinism.py; the rest are here.
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from pathlib import Path
from typing import Annotated, Any

import pytest
from pydantic import Field
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from examples.support import db
from ratchet import (
    Agent,
    AgentClient,
    Limits,
    RetryableToolError,
    RunCancelled,
    RunFailed,
    ToolContext,
    connect,
    tool,
)
from ratchet.local import TemporalDevServer
from ratchet.local._proc import free_port
from ratchet.testing import (
    RecordedRequest,
    ScriptedModelServer,
    call,
    error,
    hang,
    reply,
    tool_calls,
)

from .conftest import hosted
from .workers import WorkerProcess, tool_log, wait_for

FAST = Limits(model_retry_initial_seconds=0.1, model_retry_max_seconds=1.0)


def agent_with(*tools: Any, limits: Limits = FAST) -> Agent:
    return Agent("matrix", instructions="x", model="openai:m", tools=list(tools), limits=limits)


async def model_attempts(client: Client, run_id: str) -> list[tuple[int, str]]:
    """(attempt, last failure message) of each model activity start in the history."""
    out = []
    async for event in client.get_workflow_handle(run_id).fetch_history_events():
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            attrs = event.activity_task_started_event_attributes
            out.append((attrs.attempt, attrs.last_failure.message))
    return out


# --- 1. kill -9 of a worker between steps ------------------------------------------------


async def test_kill9_between_steps(
    temporal_env: WorkflowEnvironment,
    model_server: ScriptedModelServer,
    tmp_path: Path,
    workers: list[WorkerProcess],
) -> None:
    address = temporal_env.client.service_client.config.target_host
    queue = f"between-{uuid.uuid4().hex[:8]}"
    model_server.add(
        tool_calls(call("refund", {"order_id": 1044})),
        reply("Refunded.", delay=0.5),
    )
    # The kill lands right after the refund, while the worker records its result and
    # schedules the next step; if that model call was already in flight it is asked again.
    model_server.handler = lambda req: reply("Refunded.")
    workers.append(WorkerProcess(address, queue, model_server, tmp_path))
    handle = await AgentClient(temporal_env.client, task_queue=queue).start("crashy", "refund 1044")
    await asyncio.to_thread(
        wait_for,
        lambda: any(line.startswith("refund") for line in tool_log(tmp_path)),
        30,
        "refund",
    )
    workers[0].kill9()
    workers.append(WorkerProcess(address, queue, model_server, tmp_path))
    result = await handle.result()
    assert result.output == "Refunded."
    assert db.refunds_for(1044, tmp_path / "shop.sqlite") == 1
    transcript = await handle.transcript()
    assert [m.role for m in transcript] == ["system", "user", "assistant", "tool", "assistant"]


# --- 2. kill -9 of the Temporal server mid-run ------------------------------------------


async def test_kill9_of_the_server_mid_run(
    model_server: ScriptedModelServer, tmp_path: Path, workers: list[WorkerProcess]
) -> None:
    port = free_port()
    server = TemporalDevServer(
        db_path=tmp_path / "temporal.sqlite",
        log_path=tmp_path / "temporal.log",
        port=port,
        ui_port=None,
    )
    server.start()
    try:
        model_server.add(
            tool_calls(call("lookup", {"order_id": 1042})),
            reply("It shipped.", delay=3.0),  # in flight while the server is down
        )
        # If the server restarts after the heartbeat timeout, the model call is retried:
        # answer any extra call the same way rather than failing the script.
        model_server.handler = lambda req: reply("It shipped.")
        queue = f"server-kill-{uuid.uuid4().hex[:6]}"
        workers.append(WorkerProcess(server.address, queue, model_server, tmp_path))
        client = await connect(server.address)
        handle = await AgentClient(client, task_queue=queue).start("crashy", "Where is 1042?")
        await model_server.wait_for_requests_async(2, timeout=30)
        server.kill()
        await asyncio.sleep(1.5)
        server.start()
        client = await connect(server.address)
        handle = AgentClient(client, task_queue=queue).get(handle.id)
        result = await asyncio.wait_for(handle.result(), timeout=90)
        assert result.output == "It shipped."
        transcript = await handle.transcript()
        assert [m.role for m in transcript] == ["system", "user", "assistant", "tool", "assistant"]
        assert tool_log(tmp_path) == ["lookup 1042"], "the recorded tool call ran again"
    finally:
        for w in workers:
            w.stop()
        server.stop()


# --- 3. 429 with Retry-After, then 503, then 500; retries capped ---------------------------


async def test_429_then_503_then_500(
    temporal_client: Client, model_server: ScriptedModelServer
) -> None:
    model_server.add(
        error(429, headers={"Retry-After": "3"}), error(503), error(500), reply("finally")
    )
    async with hosted(temporal_client, [agent_with()], model_server) as client:
        handle = await client.start("matrix", "hi")
        result = await handle.result()
    model_server.verify()
    assert result.output == "finally"
    times = [r.received_at for r in model_server.requests]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    # Far apart, so a loaded machine's delays cannot blur them: 3 s for Retry-After,
    # the policy's sub-second backoff for 503 and 500.
    assert gaps[0] >= 2.9, f"Retry-After: 3 was not honoured: {gaps}"
    assert gaps[1] < 2.5 and gaps[2] < 2.5, f"503/500 should use the policy's short backoff: {gaps}"
    # The attempts are visible in the history: the model activity started as attempt 4,
    # carrying the last failure (the 500).
    attempts = await model_attempts(temporal_client, handle.id)
    assert attempts[-1][0] == 4
    assert "HTTP 500" in attempts[-1][1]


async def test_model_retries_are_capped(
    temporal_client: Client, model_server: ScriptedModelServer
) -> None:
    model_server.add(*[error(503) for _ in range(3)])
    limits = Limits(model_max_attempts=3, model_retry_initial_seconds=0.1)
    async with hosted(temporal_client, [agent_with(limits=limits)], model_server) as client:
        with pytest.raises(RunFailed) as info:
            await client.run("matrix", "hi")
    model_server.verify()
    assert info.value.error_type == "ModelServerError"
    assert len(model_server.requests) == 3


# --- 5. invalid tool calls beyond the repair limit ---------------------------------------


@tool
def lookup_item(sku: str) -> str:
    """Look up an item."""
    return f"{sku}: in stock"


def told(text: str) -> Any:
    def check(req: RecordedRequest) -> bool:
        return req.messages[-1]["role"] == "tool" and text in req.messages[-1]["content"]

    return check


async def test_repeated_invalid_calls_fail_with_a_typed_error(
    temporal_client: Client, model_server: ScriptedModelServer
) -> None:
    model_server.add(
        tool_calls(call("lookup_item", '{"sku": ')),
        tool_calls(call("lookup_itm", {"sku": "A"})).expecting(told("not valid JSON")),
        tool_calls(call("lookup_item", {"sku": 5})).expecting(told("unknown tool 'lookup_itm'")),
    )
    limits = Limits(max_repair_turns=2, max_turns=10)
    async with hosted(temporal_client, [agent_with(lookup_item, limits=limits)], model_server) as c:
        handle = await c.start("matrix", "find A")
        with pytest.raises(RunFailed) as info:
            await handle.result()
        status = await handle.status()
    model_server.verify()
    assert info.value.error_type == "RepairLimitExceeded"
    assert "expected string" in info.value.message
    assert status.state == "failed" and status.error and "RepairLimitExceeded" in status.error
    # The workflow task never failed: every workflow task completed.
    async for event in temporal_client.get_workflow_handle(handle.id).fetch_history_events():
        assert event.event_type != EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED


# --- 6. a retryable tool error, then a non-retryable one -------------------------------------

attempts_seen: list[int] = []


@tool(max_attempts=3)
def reserve_stock(sku: str, ctx: ToolContext) -> str:
    """Reserve stock."""
    attempts_seen.append(ctx.attempt)
    if ctx.attempt == 1:
        raise RetryableToolError("inventory service busy")
    raise ValueError(f"sku {sku} is discontinued")


async def test_retryable_then_non_retryable_tool_error(
    temporal_client: Client, model_server: ScriptedModelServer
) -> None:
    attempts_seen.clear()
    model_server.add(
        tool_calls(call("reserve_stock", {"sku": "KB-1"})),
        reply("KB-1 is discontinued.").expecting(told("ValueError: sku KB-1 is discontinued")),
    )
    async with hosted(temporal_client, [agent_with(reserve_stock)], model_server) as client:
        result = await client.run("matrix", "reserve KB-1")
    model_server.verify()
    assert result.output == "KB-1 is discontinued."
    assert attempts_seen == [1, 2]


# --- 7. oversized payloads ------------------------------------------------------------------


@tool
def export_logs() -> str:
    """Export all logs (3 MB)."""
    return "x" * 3_000_000


@tool(max_result_chars=900_000)
def big_report(part: int) -> str:
    """A large report part."""
    return str(part) * 900_000


async def test_a_3mb_tool_result_is_truncated_with_a_notice(
    temporal_client: Client, model_server: ScriptedModelServer
) -> None:
    model_server.add(
        tool_calls(call("export_logs", {})),
        reply("The logs are too large; here is the start.").expecting(
            told("was cut from 3,000,000 to 100,000 characters")
        ),
    )
    async with hosted(temporal_client, [agent_with(export_logs)], model_server) as client:
        result = await client.run("matrix", "export logs")
    model_server.verify()
    assert result.output.startswith("The logs are too large")
    assert len(model_server.requests[1].messages[-1]["content"]) < 100_300


async def test_a_transcript_past_the_payload_limit_is_no_longer_a_payload(
    temporal_client: Client, model_server: ScriptedModelServer
) -> None:
    """With linear history a 1.8 MB transcript never travels as one payload: model calls
    carry a reference, so the run goes on (before, it failed fast with PayloadTooLarge,
    which runs recorded without linear history still do)."""
    model_server.add(
        tool_calls(call("big_report", {"part": 1})),
        tool_calls(call("big_report", {"part": 2})),
        reply("Both parts read.").expecting(
            lambda r: sum(len(m.get("content") or "") for m in r.messages) > 1_800_000
        ),
    )
    async with hosted(temporal_client, [agent_with(big_report)], model_server) as client:
        handle = await client.start("matrix", "report")
        result = await handle.result()
    assert result.output == "Both parts read."
    history = await temporal_client.get_workflow_handle(handle.id).fetch_history()
    largest = max(e.ByteSize() for e in history.events)
    assert largest < 1_000_000, largest  # each 900 KB part once, never the whole transcript


# --- 8. a poison run is bounded and parked as failed ------------------------------------------


async def test_poison_run_is_parked_failed_with_its_cause(
    temporal_client: Client, model_server: ScriptedModelServer
) -> None:
    model_server.handler = lambda req: error(500, message="upstream exploded")
    limits = Limits(model_max_attempts=4, model_retry_initial_seconds=0.1)
    async with hosted(temporal_client, [agent_with(limits=limits)], model_server) as client:
        handle = await client.start("matrix", "hi")
        with pytest.raises(RunFailed) as info:
            await handle.result()
        assert await handle.temporal_status() == "failed"
        status = await handle.status()
    assert len(model_server.requests) == 4
    assert info.value.error_type == "ModelServerError"
    assert "upstream exploded" in info.value.message
    assert status.state == "failed" and "upstream exploded" in (status.error or "")


# --- 9. cancellation from the client ------------------------------------------------------------

cancel_log: list[str] = []


@tool(timeout=120)
async def long_export(days: int) -> str:
    """A long export."""
    cancel_log.append("started")
    try:
        await asyncio.sleep(60)
    except asyncio.CancelledError:
        cancel_log.append("cancelled")
        raise
    return "exported"


async def test_cancel_during_a_long_tool_call(
    temporal_client: Client, model_server: ScriptedModelServer
) -> None:
    cancel_log.clear()
    model_server.add(tool_calls(call("long_export", {"days": 30})))
    async with hosted(temporal_client, [agent_with(long_export)], model_server) as client:
        handle = await client.start("matrix", "export 30 days")
        await asyncio.to_thread(wait_for, lambda: cancel_log == ["started"], 30, "the tool")
        await handle.cancel()
        with pytest.raises(RunCancelled):
            await handle.result()
        await asyncio.to_thread(wait_for, lambda: "cancelled" in cancel_log, 10, "cancellation")
        assert await handle.temporal_status() == "canceled"
        transcript = await handle.transcript()
        status = await handle.status()
    model_server.verify()
    assert [m.role for m in transcript] == ["system", "user", "assistant"]
    assert status.state == "cancelled"


async def test_cancel_during_a_model_call(
    temporal_client: Client, model_server: ScriptedModelServer
) -> None:
    model_server.add(hang())
    async with hosted(temporal_client, [agent_with()], model_server) as client:
        handle = await client.start("matrix", "hi")
        await model_server.wait_for_requests_async(1, timeout=30)
        await handle.cancel()
        with pytest.raises(RunCancelled):
            await handle.result()
        status = await handle.status()
        assert await handle.temporal_status() == "canceled"
    assert status.state == "cancelled"
    assert len(model_server.requests) == 1


@tool
def withdraw(amount_cents: Annotated[int, Field(ge=1)]) -> str:
    """Withdraw money."""
    return f"withdrew {amount_cents}"


async def test_arguments_rejected_by_the_tool_count_as_repairs(
    temporal_client: Client, model_server: ScriptedModelServer
) -> None:
    # ge=1 is enforced by the tool's pydantic validation, not the in-workflow schema check.
    model_server.add(
        tool_calls(call("withdraw", {"amount_cents": 0})),
        tool_calls(call("withdraw", {"amount_cents": -5})).expecting(
            told("invalid arguments for 'withdraw'")
        ),
    )
    limits = Limits(max_repair_turns=1, max_turns=10)
    async with hosted(temporal_client, [agent_with(withdraw, limits=limits)], model_server) as c:
        with pytest.raises(RunFailed) as info:
            await c.run("matrix", "withdraw nothing")
    assert info.value.error_type == "RepairLimitExceeded"
