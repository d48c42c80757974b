"""Long runs: linear history, continue-as-new, context-window management, big payloads.

All against a real Temporal dev server, real workers and real SQLite files; the model
is the scripted OpenAI-compatible server.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from ratchet import Agent, Limits, Policy, RunFailed, require_approval, tool
from ratchet._history import executions
from ratchet.activities._compaction import _split_for_compaction
from ratchet.messages import Message, ToolCall, message_hash
from ratchet.payloads import local_payload_storage
from ratchet.testing import (
    RecordedRequest,
    ScriptedModelServer,
    call,
    context_too_long,
    reply,
    tool_calls,
)
from ratchet.trace import ModelStep, build_trace
from ratchet.transcripts import SQLiteTranscriptStore

from .conftest import decoded_history_text, hosted
from .test_cli import address, ratchet

FAST = Limits(model_retry_initial_seconds=0.1, model_retry_max_seconds=1.0, max_turns=50)


@tool
def fetch(page: int) -> str:
    """Fetch one page of a report.

    Args:
        page: the page number.
    """
    return f"page-{page}-content " + "x" * 40


@tool
def refund(order_id: int) -> str:
    """Refund an order.

    Args:
        order_id: the order number.
    """
    return f"refunded {order_id}"


def agent(limits: Limits = FAST, **kw: Any) -> Agent:
    return Agent(
        "longrun",
        instructions="You read reports.",
        model="openai:m",
        tools=[fetch, refund],
        limits=limits,
        **kw,
    )


def pages(n: int, start: int = 1) -> list[Any]:
    return [tool_calls(call("fetch", {"page": p})) for p in range(start, start + n)]


async def test_each_message_is_written_to_history_once(
    temporal_client: Client, model_server: ScriptedModelServer, tmp_path: Path
) -> None:
    model_server.add(*pages(4), reply("Read four pages."))
    store = SQLiteTranscriptStore(tmp_path / "t.sqlite")
    async with hosted(temporal_client, [agent()], model_server, transcript_store=store) as client:
        handle = await client.start("longrun", "Read the report")
        result = await handle.result()
        transcript = await handle.transcript()
    assert result.output == "Read four pages."
    # The model saw the whole conversation each time, rebuilt from the store.
    last = model_server.requests[-1].messages
    assert [m["role"] for m in last] == ["system", "user"] + ["assistant", "tool"] * 4
    history = decoded_history_text(
        (await temporal_client.get_workflow_handle(handle.id).fetch_history()).to_json_dict()
    )
    for p in range(1, 5):
        # Once as the tool's result; model calls refer to it by hash.
        assert history.count(f"page-{p}-content") == 1, p
    # The prompt once in the run's input (and in the start summary the UI shows), the
    # instructions once (the agent snapshot): model calls refer to them by hash.
    assert history.count("Read the report") == 2
    assert history.count("longrun: Read the report") == 1
    assert history.count("You read reports.") == 1
    # The tools' schemas once too (the snapshot): model calls carry a reference.
    assert history.count("Fetch one page of a report.") == 1
    assert history.count("tools-") >= 5  # the snapshot's reference, then each model call's
    # The model still got every tool's schema.
    assert [t["function"]["name"] for t in model_server.requests[-1].body["tools"]] == [
        "fetch",
        "refund",
    ]
    assert [m.role for m in transcript] == ["system", "user"] + ["assistant", "tool"] * 4 + [
        "assistant"
    ]
    assert (await store.stats()).messages >= 10
    # `ratchet trace` resolves every reference: each call shows its exact prompt.
    trace = await build_trace(temporal_client, handle.id)
    models = [s for s in trace.steps if isinstance(s, ModelStep)]
    assert [len(s.messages) for s in models] == [2, 4, 6, 8, 10]
    assert [m.to_openai() for m in models[-1].messages] == last
    await store.close()


async def test_a_lost_store_entry_fails_the_run_with_a_clear_error(
    temporal_client: Client, model_server: ScriptedModelServer, tmp_path: Path
) -> None:
    path = tmp_path / "t.sqlite"
    lost = message_hash(Message.system("You read reports."))

    @tool
    def purge(page: int) -> str:
        """Fetch a page (and, for this test, lose the system prompt from the store).

        Args:
            page: the page number.
        """
        with sqlite3.connect(path) as db:
            db.execute("DELETE FROM ratchet_messages WHERE hash = ?", (lost,))
        return "done"

    purging = Agent("purging", instructions="You read reports.", model="openai:m", tools=[purge])
    model_server.add(tool_calls(call("purge", {"page": 1})))
    store = SQLiteTranscriptStore(path)
    async with hosted(temporal_client, [purging], model_server, transcript_store=store) as client:
        handle = await client.start("purging", "Read the report")
        with pytest.raises(RunFailed) as info:
            await handle.result()
    model_server.verify()  # no second model call went out with a wrong prompt
    assert info.value.error_type == "TranscriptEntryMissing"
    assert handle.id in info.value.message
    assert f"no message {lost}" in info.value.message
    await store.close()


@pytest.mark.parametrize("strategy", ["drop_oldest", "summarize"])
async def test_provider_context_too_long_is_recovered(
    temporal_client: Client, model_server: ScriptedModelServer, strategy: str
) -> None:
    limits = FAST.model_copy(update={"context_strategy": strategy})
    summary_steps = (
        [reply("They fetched pages 1 to 3.", expect=lambda r: "page-1-content" in str(r.messages))]
        if strategy == "summarize"
        else []
    )

    def shrunk(r: RecordedRequest) -> None:
        roles = [m["role"] for m in r.messages]
        text = json.dumps(r.messages)
        assert roles[0] == "system" and r.messages[1]["content"] == "Read the report"
        assert "page-1-content" not in text  # the oldest turn is gone...
        assert "page-4-content" in text  # ...the latest is kept
        for i, m in enumerate(r.messages):  # no tool result without its call
            if m["role"] == "tool":
                assert r.messages[i - 1]["role"] in ("assistant", "tool")
        if strategy == "summarize":
            assert "They fetched pages 1 to 3." in text

    model_server.add(
        *pages(4),
        context_too_long(max_tokens=1000),
        *summary_steps,
        reply("Done.", expect=shrunk),
    )
    async with hosted(temporal_client, [agent(limits)], model_server) as client:
        handle = await client.start("longrun", "Read the report")
        result = await handle.result()
    assert result.output == "Done."
    trace = await build_trace(temporal_client, handle.id)
    models = [s for s in trace.steps if isinstance(s, ModelStep)]
    assert models[-2].status == "failed" and "context length" in (models[-2].error or "")
    assert models[-1].status == "completed"


async def test_configured_context_window_drops_oldest_turns_before_sending(
    temporal_client: Client, model_server: ScriptedModelServer
) -> None:
    # Each turn adds ~30 tokens; a 100-token window forces drops before calls go out.
    limits = FAST.model_copy(update={"context_window_tokens": 100})

    def fits(r: RecordedRequest) -> None:
        assert sum(len(m.get("content") or "") for m in r.messages) // 4 < 150

    model_server.add(*[s.expecting(fits) for s in pages(8)], reply("Done.").expecting(fits))
    async with hosted(temporal_client, [agent(limits)], model_server) as client:
        result = await client.run("longrun", "Read the report")
    assert result.output == "Done."
    assert len(model_server.requests) == 9  # no call was refused by the "provider"


async def test_context_that_cannot_shrink_fails_clearly_instead_of_looping(
    temporal_client: Client, model_server: ScriptedModelServer
) -> None:
    model_server.add(context_too_long(max_tokens=10))
    async with hosted(temporal_client, [agent()], model_server) as client:
        with pytest.raises(RunFailed) as info:
            await client.run("longrun", "Read the report")
    assert info.value.error_type == "ContextTooLong"
    assert "nothing is left to drop" in info.value.message


async def test_three_continue_as_new_cycles_with_an_approval_pending_across_one(
    temporal_client: Client, model_server: ScriptedModelServer
) -> None:
    limits = FAST.model_copy(update={"continue_as_new_after_events": 20})
    guarded = agent(limits, policy=Policy(rules=[require_approval("refund", reason="money")]))
    model_server.add(
        *pages(4),
        tool_calls(call("refund", {"order_id": 7})),
        *pages(4, start=5),
        reply("Refunded and read.", expect=lambda r: "refunded 7" in json.dumps(r.messages)),
    )
    async with hosted(temporal_client, [guarded], model_server) as client:
        handle = await client.start("longrun", "Read and refund")
        for _ in range(400):
            if await _pending(handle):
                break
            await asyncio.sleep(0.05)
        [waiting] = await handle.pending()
        # The approval was handed to a new execution (the history was long by then).
        await asyncio.sleep(0.5)
        runs_while_waiting = len(await executions(temporal_client, handle.id))
        assert runs_while_waiting >= 2
        assert (await handle.status()).state == "waiting-approval"
        await handle.approve(waiting.call_id, approver="ana", reason="ok")
        result = await handle.result()
        status = await handle.status()
        transcript = await handle.transcript()
    model_server.verify()
    assert result.output == "Refunded and read."
    assert result.turns == 10 and result.tool_calls == 9
    histories = await executions(temporal_client, handle.id)
    assert len(histories) >= 4  # at least three continue-as-new cycles
    # One run: its totals and approvals carried over every execution.
    assert status.execution == len(histories)
    assert [a.approver for a in status.approvals] == ["ana"]
    assert result.usage.requests == 10
    # The transcript and the trace are stitched across all executions.
    assert [m.role for m in transcript].count("assistant") == 10
    assert [m.role for m in transcript].count("tool") == 9
    assert transcript[0].role == "system" and transcript[1].content == "Read and refund"
    trace = await build_trace(temporal_client, handle.id)
    models = [s for s in trace.steps if isinstance(s, ModelStep)]
    assert [s.turn for s in models] == list(range(1, 11))
    assert len(models[-1].messages) == 20
    assert trace.output == "Refunded and read."


async def test_a_chat_continues_as_new_between_messages(
    temporal_client: Client, model_server: ScriptedModelServer, tmp_path: Path
) -> None:
    limits = FAST.model_copy(update={"continue_as_new_after_events": 20})
    model_server.add(*[reply(f"answer {i}") for i in range(8)])
    async with hosted(temporal_client, [agent(limits)], model_server) as client:
        handle = await client.start("longrun", "hello", chat=True)
        for _ in range(200):
            if (await handle.status()).state == "waiting-input":
                break
            await asyncio.sleep(0.05)
        for i in range(1, 8):
            assert (await handle.send(f"message {i}")).output == f"answer {i}"
        await handle.end_chat()
        result = await handle.result()
        transcript = await handle.transcript()
    assert result.output == "answer 7"
    assert len(await executions(temporal_client, handle.id)) >= 3
    assert [m.content for m in transcript if m.role == "user"] == ["hello"] + [
        f"message {i}" for i in range(1, 8)
    ]
    # The last call still saw the whole conversation.
    assert len(model_server.requests[-1].messages) == 16
    # The CLI shows the run as one, across its executions.
    env = {
        "RATCHET_TRANSCRIPT_STORE": f"sqlite:///{tmp_path / 't.sqlite'}",
        "RATCHET_PAYLOAD_STORE": "off",
    }
    where = ["--address", address(temporal_client)]
    shown = await ratchet("show", handle.id, *where, env=env)
    assert shown.returncode == 0, shown.stderr
    assert "completed" in shown.stdout and "answer 7" in shown.stdout
    assert "message 1" in shown.stdout and "message 7" in shown.stdout
    traced = await ratchet("trace", handle.id, "--full", *where, env=env)
    assert traced.returncode == 0, traced.stderr
    assert [f"── turn {i}" in traced.stdout for i in range(1, 9)] == [True] * 8
    assert "sent user: hello" in traced.stdout.split("── turn 8")[1]  # the whole prompt


async def _pending(handle: Any) -> bool:
    try:
        return bool(await handle.pending())
    except Exception:
        return False


@tool(max_result_chars=6_000_000)
def export_everything(part: int) -> str:
    """Export everything (5 MB).

    Args:
        part: which part.
    """
    return "y" * 5_000_000


async def test_a_5mb_tool_result_goes_to_external_storage(
    temporal_env: WorkflowEnvironment, model_server: ScriptedModelServer, tmp_path: Path
) -> None:
    converter = dataclasses.replace(
        pydantic_data_converter, external_storage=local_payload_storage(tmp_path / "payloads")
    )
    client = await Client.connect(
        temporal_env.client.service_client.config.target_host, data_converter=converter
    )
    exporter = Agent("exporter", instructions="x", model="openai:m", tools=[export_everything])
    model_server.add(
        tool_calls(call("export_everything", {"part": 1})),
        reply("Exported.").expecting(
            lambda r: len(r.messages[-1]["content"]) == 5_000_000  # the whole result, uncut
        ),
    )
    async with hosted(client, [exporter], model_server) as agents:
        handle = await agents.start("exporter", "export")
        result = await handle.result()
        transcript = await handle.transcript()
    assert result.output == "Exported."
    assert len(transcript[-2].content or "") == 5_000_000
    history = await temporal_env.client.get_workflow_handle(handle.id).fetch_history()
    assert max(e.ByteSize() for e in history.events) < 100_000  # a reference, not 5 MB
    assert sum(p.stat().st_size for p in (tmp_path / "payloads").iterdir()) > 5_000_000


async def test_a_payload_that_cannot_be_stored_fails_fast_naming_tool_size_and_limit(
    temporal_client: Client, model_server: ScriptedModelServer
) -> None:
    exporter = Agent("exporter", instructions="x", model="openai:m", tools=[export_everything])
    model_server.add(tool_calls(call("export_everything", {"part": 1})))
    async with hosted(temporal_client, [exporter], model_server) as client:
        with pytest.raises(RunFailed) as info:
            await client.run("exporter", "export")
    assert info.value.error_type == "PayloadTooLarge"
    message = info.value.message
    assert "'export_everything'" in message
    assert "5,000,000 bytes" in message and "1,500,000" in message


# --- the compaction rule itself (pure) -------------------------------------------------


@st.composite
def transcripts(draw: st.DrawFn) -> list[Message]:
    messages = [Message.system("sys"), Message.user("task", pinned=True)]
    for n in range(draw(st.integers(0, 12))):
        kind = draw(st.sampled_from(["user", "answer", "calls"]))
        if kind == "user":
            messages.append(Message.user(f"u{n}", pinned=draw(st.booleans())))
        elif kind == "answer":
            messages.append(Message.assistant(f"a{n}" * draw(st.integers(1, 50))))
        else:
            calls = [
                ToolCall(id=f"c{n}-{i}", name="t", arguments="{}")
                for i in range(draw(st.integers(1, 3)))
            ]
            messages.append(Message.assistant(None, calls))
            messages += [Message.tool(c, "r" * draw(st.integers(1, 200))) for c in calls]
    return messages


@given(transcripts(), st.one_of(st.none(), st.integers(10, 400)))
def test_compaction_keeps_what_must_stay_and_never_splits_calls(
    prompt: list[Message], window: int | None
) -> None:
    keep, dropped = _split_for_compaction(prompt, window)
    kept = [prompt[i] for i in keep]
    assert len(kept) + len(dropped) == len(prompt)
    assert all(m in kept for m in prompt if m.role == "system" or m.pinned)
    # Every kept tool result still follows the assistant message that called it.
    for i, m in enumerate(kept):
        if m.role == "tool":
            caller = next(k for k in reversed(kept[:i]) if k.role != "tool")
            assert caller.tool_calls and m.tool_call_id in {c.id for c in caller.tool_calls}
    # The latest turn (from the last unpinned user message, or the last unit) stays.
    assert prompt[-1] in kept
    last_user = max(
        (i for i, m in enumerate(prompt) if m.role == "user" and not m.pinned), default=None
    )
    if last_user is not None:
        assert all(m in kept for m in prompt[last_user:])
