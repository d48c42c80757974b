"""Multi-turn conversations: a run that stays open for follow-up messages."""

from __future__ import annotations

import asyncio
import os
import sys

import pytest
from temporalio.client import Client

from ratchet import Agent, ConfigError, Limits, tool
from ratchet.testing import RecordedRequest, ScriptedModelServer, call, reply, tool_calls
from ratchet.trace import build_trace

from .conftest import ROOT, hosted


@tool
def lookup_order(order_id: int) -> dict[str, object]:
    """Look up an order."""
    return {"id": order_id, "status": "shipped"}


AGENT = Agent(
    "chatty",
    instructions="You are a support agent.",
    model="openai:m",
    tools=[lookup_order],
    limits=Limits(model_retry_initial_seconds=0.1),
)


def last_user(text: str):  # type: ignore[no-untyped-def]
    def check(req: RecordedRequest) -> bool:
        return req.messages[-1] == {"role": "user", "content": text}

    return check


async def test_a_chat_of_three_turns(
    temporal_client: Client, model_server: ScriptedModelServer
) -> None:
    model_server.add(
        reply("Hi! How can I help?").expecting(last_user("hello")),
        tool_calls(call("lookup_order", {"order_id": 1042})).expecting(last_user("order 1042?")),
        reply("It has shipped."),
        reply("You're welcome.").expecting(last_user("thanks")),
    )
    async with hosted(temporal_client, [AGENT], model_server) as client:
        handle = await client.start("chatty", "hello", chat=True)
        for _ in range(100):
            if (await handle.status()).state == "waiting-input":
                break
            await asyncio.sleep(0.1)
        assert (await handle.status()).state == "waiting-input"
        second = await handle.send("order 1042?")
        assert second.output == "It has shipped."
        third = await handle.send("thanks")
        assert third.output == "You're welcome."
        await handle.end_chat()
        result = await handle.result()
        transcript = await handle.transcript()
        trace = await build_trace(temporal_client, handle.id)
    assert trace.output == "You're welcome." and trace.approvals == []
    assert [s.kind for s in trace.steps] == ["model", "model", "tool", "model", "model"]
    assert result.output == "You're welcome." and result.turns == 4
    assert [m.role for m in transcript] == [
        "system",
        "user",
        "assistant",
        "user",
        "assistant",
        "tool",
        "assistant",
        "user",
        "assistant",
    ]
    # The whole conversation went to the model each time.
    assert len(model_server.requests[-1].messages) == 8


async def test_messages_are_answered_in_order_one_at_a_time(
    temporal_client: Client, model_server: ScriptedModelServer
) -> None:
    model_server.add(
        reply("first answer"),
        reply("to a", delay=0.5).expecting(last_user("a")),
        reply("to b").expecting(last_user("b")),
    )
    async with hosted(temporal_client, [AGENT], model_server) as client:
        handle = await client.start("chatty", "start", chat=True)
        a = asyncio.create_task(handle.send("a"))
        # "a" is being answered (its reply takes 0.5 s) when "b" arrives.
        await model_server.wait_for_requests_async(2, timeout=30)
        b = asyncio.create_task(handle.send("b"))
        assert (await a).output == "to a"
        assert (await b).output == "to b"
        await handle.end_chat()
        await handle.result()


async def test_send_to_a_run_that_is_not_a_chat(
    temporal_client: Client, model_server: ScriptedModelServer
) -> None:
    model_server.add(reply("done"))
    async with hosted(temporal_client, [AGENT], model_server) as client:
        handle = await client.start("chatty", "hi")
        await handle.result()
        with pytest.raises(ConfigError):
            await handle.send("more?")


async def test_ratchet_chat_and_send_commands(
    temporal_client: Client, model_server: ScriptedModelServer
) -> None:
    model_server.add(
        reply("Hello there.").expecting(last_user("hi")),
        reply("Order 7 shipped.").expecting(last_user("and order 7?")),
        reply("Bye.").expecting(last_user("bye")),
    )
    address = temporal_client.service_client.config.target_host
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200"}
    async with hosted(temporal_client, [AGENT], model_server) as client:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "ratchet.cli",
            "chat",
            "chatty",
            "--id",
            "chat-cli-1",
            "--address",
            address,
            "--task-queue",
            client.task_queue,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
            cwd=ROOT,
        )
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(b"hi\n")
        await proc.stdin.drain()
        first = await asyncio.wait_for(proc.stdout.readuntil(b"Hello there.\n"), 30)
        assert b"chatty> Hello there." in first
        # Another process joins the same conversation.
        send = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "ratchet.cli",
            "send",
            "chat-cli-1",
            "and order 7?",
            "--address",
            address,
            stdout=asyncio.subprocess.PIPE,
            env=env,
            cwd=ROOT,
        )
        out, _ = await send.communicate()
        assert out.decode().strip() == "Order 7 shipped."
        proc.stdin.write(b"bye\n")
        proc.stdin.close()
        rest, err = await asyncio.wait_for(proc.communicate(), 30)
        assert proc.returncode == 0, err
        assert b"chatty> Bye." in rest and b"chat ended" in rest
        assert (await client.get("chat-cli-1").result()).output == "Bye."
