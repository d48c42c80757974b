"""Observability from the event history: summaries, search attributes, cost, trace."""

from __future__ import annotations

import asyncio
import io
import json
import sys

import pytest
from rich.console import Console
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client

from ratchet import Agent, Limits, Price, RunFailed, tool
from ratchet.cli import follow_run
from ratchet.testing import (
    ScriptedModelServer,
    ScriptedUsage,
    call,
    error,
    hang,
    reply,
    tool_calls,
)
from ratchet.trace import ModelStep, ToolStep, build_trace

from .conftest import eventually, hosted

PRICES = {"openai:gpt-test": Price(input=2.0, output=10.0)}


@tool
def lookup_order(order_id: int) -> dict[str, object]:
    """Look up an order."""
    return {"id": order_id, "status": "shipped"}


AGENT = Agent(
    "observed",
    instructions="You are a support agent.",
    model="openai:gpt-test",
    tools=[lookup_order],
    limits=Limits(model_retry_initial_seconds=0.1),
)


async def test_activity_summaries_in_history(
    temporal_client: Client, model_server: ScriptedModelServer
) -> None:
    model_server.add(tool_calls(call("lookup_order", {"order_id": 1042})), reply("shipped"))
    async with hosted(temporal_client, [AGENT], model_server) as client:
        handle = await client.start("observed", "Where is 1042?")
        await handle.result()
    converter = temporal_client.data_converter.payload_converter
    summaries = []
    async for event in temporal_client.get_workflow_handle(handle.id).fetch_history_events():
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            summaries.append(converter.from_payload(event.user_metadata.summary, str))
    assert summaries == [
        "model openai:gpt-test · turn 1",
        "tool lookup_order(order_id=1042)",
        "model openai:gpt-test · turn 2",
    ]
    desc = await temporal_client.get_workflow_handle(handle.id).describe()
    assert await desc.static_summary() == "observed: Where is 1042?"


async def test_tokens_cost_and_attempts_are_accounted(
    temporal_client: Client, model_server: ScriptedModelServer
) -> None:
    model_server.add(
        error(503),  # a failed attempt: counted as a request, no tokens
        tool_calls(
            call("lookup_order", {"order_id": 1}),
            usage=ScriptedUsage(prompt_tokens=1000, completion_tokens=100),
        ),
        reply("done", usage=ScriptedUsage(prompt_tokens=2000, completion_tokens=50)),
    )
    async with hosted(temporal_client, [AGENT], model_server, prices=PRICES) as client:
        handle = await client.start("observed", "order 1?")
        result = await handle.result()
        status = await handle.status()
    expected_cost = (3000 * 2.0 + 150 * 10.0) / 1_000_000
    assert result.usage.input_tokens == 3000 and result.usage.output_tokens == 150
    assert result.usage.requests == 3  # two calls, one of them on its second attempt
    assert result.cost_usd == pytest.approx(expected_cost)
    assert status.cost_usd == pytest.approx(expected_cost) and status.unpriced_calls == 0
    # The listing's totals come with the run's close in the visibility store, a moment later.
    listing = await eventually(
        lambda: client.list(agent="observed", limit=50),
        lambda runs: any(r.id == handle.id and r.tokens for r in runs),
    )
    runs = [r for r in listing if r.id == handle.id]
    assert runs and runs[0].tokens == 3150 and runs[0].turns == 2
    assert runs[0].cost_usd == pytest.approx(expected_cost)


async def test_unpriced_models_are_counted_not_guessed(
    temporal_client: Client, model_server: ScriptedModelServer
) -> None:
    model_server.add(reply("hi"))
    async with hosted(temporal_client, [AGENT], model_server, prices={}) as client:
        handle = await client.start("observed", "hi")
        result = await handle.result()
        status = await handle.status()
    assert result.cost_usd == 0.0 and status.unpriced_calls == 1


async def test_ls_filters_by_agent_and_status_through_visibility(
    temporal_client: Client, model_server: ScriptedModelServer
) -> None:
    other = Agent("observed-b", instructions="x", model="openai:gpt-test", tools=[lookup_order])
    model_server.add(reply("ok"), tool_calls(call("nope", {})), tool_calls(call("nope", {})))
    limits = Limits(max_repair_turns=1)
    failing = Agent("observed-c", instructions="x", model="openai:gpt-test", limits=limits)
    async with hosted(temporal_client, [other, failing], model_server) as client:
        ok = await client.start("observed-b", "hi")
        await ok.result()
        bad = await client.start("observed-c", "hi")
        with pytest.raises(RunFailed):
            await bad.result()
        # Visibility is eventually consistent: give it a moment.
        for _ in range(300):  # up to 30 s on a busy machine
            done = await client.list(agent="observed-b", status="completed")
            failed = await client.list(agent="observed-c", status="failed")
            if ok.id in [r.id for r in done] and bad.id in [r.id for r in failed]:
                break
            await asyncio.sleep(0.1)
        assert ok.id in [r.id for r in done]
        assert bad.id in [r.id for r in failed]
        assert bad.id not in [
            r.id for r in await client.list(agent="observed-c", status="completed")
        ]
        assert all(r.agent == "observed-b" for r in done)


async def test_trace_from_history(
    temporal_client: Client, model_server: ScriptedModelServer
) -> None:
    model_server.add(
        error(503, message="overloaded"),
        tool_calls(
            call("lookup_order", {"order_id": 7}),
            call("lookup_ordr", {"order_id": 7}),
            usage=ScriptedUsage(prompt_tokens=100, completion_tokens=10),
        ),
        reply("Order 7 shipped.", usage=ScriptedUsage(prompt_tokens=200, completion_tokens=5)),
    )
    async with hosted(temporal_client, [AGENT], model_server, prices=PRICES) as client:
        handle = await client.start("observed", "Where is order 7?")
        await handle.result()
    t = await build_trace(temporal_client, handle.id)
    assert (t.agent, t.prompt, t.status, t.output) == (
        "observed",
        "Where is order 7?",
        "completed",
        "Order 7 shipped.",
    )
    kinds = [(s.kind, s.turn, s.status) for s in t.steps]
    assert kinds == [
        ("model", 1, "completed"),
        ("tool", 1, "completed"),
        ("tool", 1, "rejected"),
        ("model", 2, "completed"),
    ]
    first, tool_step, rejected, second = t.steps
    assert isinstance(first, ModelStep) and isinstance(second, ModelStep)
    assert isinstance(tool_step, ToolStep) and isinstance(rejected, ToolStep)
    # The exact instructions and messages sent, and the retry as an attempt, not a step.
    assert first.messages[0].content == "You are a support agent."
    assert first.attempts == 2 and "overloaded" in (first.last_retry_error or "")
    assert [c.name for c in first.tool_calls] == ["lookup_order", "lookup_ordr"]
    assert tool_step.arguments == {"order_id": 7} and '"status": "shipped"' in (
        tool_step.result or ""
    )
    assert "unknown tool 'lookup_ordr'" in (rejected.result or "")
    assert second.messages[-1].role == "tool" and len(second.messages) == 5
    assert first.duration_seconds is not None and first.duration_seconds > 0
    totals = t.totals
    assert (totals.input_tokens, totals.output_tokens) == (300, 15)
    assert totals.cost_usd == pytest.approx((300 * 2.0 + 15 * 10.0) / 1_000_000)
    assert (totals.model_calls, totals.tool_calls) == (2, 2)
    assert totals.wall_seconds is not None and totals.slowest_step


async def test_trace_of_a_running_run_and_the_cli(
    temporal_client: Client, model_server: ScriptedModelServer
) -> None:
    model_server.add(tool_calls(call("lookup_order", {"order_id": 8})), hang())
    async with hosted(temporal_client, [AGENT], model_server) as client:
        handle = await client.start("observed", "order 8?")
        await model_server.wait_for_requests_async(2, timeout=30)
        t = await build_trace(temporal_client, handle.id)
        assert t.status == "running" and t.closed_at is None
        assert [(s.kind, s.status) for s in t.steps] == [
            ("model", "completed"),
            ("tool", "completed"),
            ("model", "running"),
        ]
        assert t.totals.wall_seconds is None
        address = temporal_client.service_client.config.target_host
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "ratchet.cli",
            "trace",
            handle.id,
            "--json",
            "--address",
            address,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        stdout, stderr = await proc.communicate()
        assert proc.returncode == 0, stderr
        data = json.loads(stdout)
        assert data["run_id"] == handle.id and data["steps"][0]["kind"] == "model"
        assert data["steps"][1]["arguments"] == {"order_id": 8}
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "ratchet.cli",
            "trace",
            handle.id,
            "--address",
            address,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        stdout, _ = await proc.communicate()
        text = stdout.decode()
        assert "tool lookup_order" in text and "[running]" in text and "wall running" in text
        await handle.cancel()


async def test_progress_line_on_a_terminal_and_plain_lines_elsewhere(
    temporal_client: Client, model_server: ScriptedModelServer
) -> None:
    # Slow enough to be seen in progress by the live view on a busy machine.
    model_server.add(reply("slow answer", delay=3.0), reply("fast answer"))
    async with hosted(temporal_client, [AGENT], model_server) as client:
        tty = Console(file=io.StringIO(), force_terminal=True, width=120)
        await follow_run(await client.start("observed", "first"), tty)
        plain = Console(file=io.StringIO(), force_terminal=False, width=120)
        await follow_run(await client.start("observed", "second"), plain)
    shown = tty.file.getvalue()  # type: ignore[attr-defined]
    # The turn once, the model being called, no "0 tokens" before any were counted.
    assert "turn 1 · model openai:gpt-test" in shown and "0 tokens" not in shown
    assert "answer slow answer" in shown
    lines = plain.file.getvalue().splitlines()  # type: ignore[attr-defined]
    assert lines == ["user      second", "model     turn 1: answer fast answer"]
