"""The CLI as a new user met it: each test here failed before its fix.

Waiting states are named with what they wait for and the command that moves them on;
output to a pipe shows approvals; Ctrl-C says the run goes on; statuses are validated;
`ls` stays aligned with times in UTC; small wording faults stay fixed.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from temporalio.client import Client

from ratchet import Agent, Limits, Policy, require_approval, tool
from ratchet.cli._follow import _Progress
from ratchet.events import ModelCallFinished, ModelCallStarted
from ratchet.messages import Message, Usage
from ratchet.testing import ScriptedModelServer, call, error, hang, reply, tool_calls

from .conftest import ROOT, default_sigint, hosted
from .test_cli import address, assert_clean_error, ratchet


@tool
def refund(order_id: int) -> str:
    """Refund an order.

    Args:
        order_id: the order number.
    """
    return f"order {order_id} refunded"


GUARDED = Agent(
    "cli-guarded",
    instructions="You are a support agent.",
    model="openai:m",
    tools=[refund],
    policy=Policy(rules=[require_approval("refund", reason="refunds need a person")]),
    limits=Limits(approval_timeout_seconds=600, model_retry_initial_seconds=0.1),
)
PLAIN = Agent("cli-plain", instructions="x", model="openai:m", tools=[refund])
CAPPED = Agent("cli-capped", instructions="x", model="openai:m", max_concurrent_runs=1)


@asynccontextmanager
async def spawn(*args: str) -> AsyncIterator[asyncio.subprocess.Process]:
    """`ratchet ARGS` with its output to a pipe (not a terminal), killed when done."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "ratchet.cli",
        *args,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200"},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        preexec_fn=default_sigint,  # the Ctrl-C test sends it SIGINT
    )
    try:
        yield proc
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def read_until(stream: asyncio.StreamReader, needle: str, seconds: float = 30) -> str:
    seen = ""
    async with asyncio.timeout(seconds):
        while needle not in seen:
            line = await stream.readline()
            if not line:
                break
            seen += line.decode()
    assert needle in seen, seen
    return seen


async def test_piped_run_shows_the_approval_it_waits_for_and_show_names_it(
    temporal_client: Client, model_server: ScriptedModelServer
) -> None:
    model_server.add(tool_calls(call("refund", {"order_id": 7})), reply("Refunded."))
    async with hosted(temporal_client, [GUARDED], model_server) as client:
        target = address(temporal_client)
        args = ("run", GUARDED.name, "refund order 7", "--id", "cli-waits-1")
        async with spawn(*args, "--address", target, "--task-queue", client.task_queue) as p:
            assert p.stdout is not None
            seen = await read_until(p.stdout, "ratchet approve cli-waits-1 turn1-tool0")
            assert "waiting   approval of refund(order_id=7)" in seen
            pending = await ratchet("pending", "--address", target)
            assert "cli-waits-1 turn1-tool0: refund" in pending.stdout, pending.stdout
            assert "deadline " in pending.stdout and "denied at" not in pending.stdout
            shown = await ratchet("show", "cli-waits-1", "--address", target)
            assert "status:  waiting-approval" in shown.stdout, shown.stdout
            assert "waiting: turn1-tool0 refund" in shown.stdout
            assert "`ratchet approve cli-waits-1 turn1-tool0`" in shown.stdout
            await client.get("cli-waits-1").approve("turn1-tool0", approver="ana")
            out, _ = await asyncio.wait_for(p.communicate(), timeout=30)
            assert p.returncode == 0
            assert "approved by ana" in out.decode()
            assert "(2 turns, 1 tool call," in out.decode()


async def test_show_names_a_chat_waiting_for_input(
    temporal_client: Client, model_server: ScriptedModelServer
) -> None:
    model_server.add(reply("Hello! How can I help?"))
    async with hosted(temporal_client, [PLAIN], model_server) as client:
        handle = await client.start(PLAIN.name, "hi", chat=True, id="cli-chat-wait")
        assert await handle.first_reply() == "Hello! How can I help?"
        for _ in range(50):
            shown = await ratchet("show", handle.id, "--address", address(temporal_client))
            if "waiting-input" in shown.stdout:
                break
            await asyncio.sleep(0.2)
        assert "status:  waiting-input (a chat waiting for the next message: `ratchet send" in (
            shown.stdout
        )
        await handle.end_chat()
        await handle.result()


async def test_ctrl_c_says_the_run_goes_on(
    temporal_client: Client, model_server: ScriptedModelServer
) -> None:
    model_server.add(hang(20))
    async with hosted(temporal_client, [PLAIN], model_server) as client:
        target = address(temporal_client)
        args = ("run", PLAIN.name, "take your time", "--id", "cli-ctrl-c")
        async with spawn(*args, "--address", target, "--task-queue", client.task_queue) as p:
            assert p.stdout is not None and p.stderr is not None
            await read_until(p.stdout, "run cli-ctrl-c")
            await model_server.wait_for_requests_async(1, timeout=30)
            p.send_signal(signal.SIGINT)
            _, err = await asyncio.wait_for(p.communicate(), timeout=30)
        message = err.decode()
        assert "run cli-ctrl-c goes on" in message, message
        assert "--id cli-ctrl-c --attach" in message
        assert "Traceback" not in message and "interrupted" not in message  # said once
        assert p.returncode == 130
        assert await client.get("cli-ctrl-c").temporal_status() == "running"
        await client.get("cli-ctrl-c").cancel()
        for _ in range(50):
            shown = await ratchet("show", "cli-ctrl-c", "--address", target)
            if "status:  cancelled" in shown.stdout:
                break
            await asyncio.sleep(0.2)
        assert "status:  cancelled" in shown.stdout  # one spelling, as in `ls`
        assert "canceled" not in shown.stdout


async def test_show_names_a_queued_run(
    temporal_client: Client, model_server: ScriptedModelServer
) -> None:
    model_server.add(hang(20), reply("second"))
    async with hosted(temporal_client, [CAPPED], model_server) as client:
        first = await client.start(CAPPED.name, "first", id="cli-capped-1")
        await model_server.wait_for_requests_async(1, timeout=30)
        second = await client.start(CAPPED.name, "second", id="cli-capped-2")
        for _ in range(50):
            shown = await ratchet("show", second.id, "--address", address(temporal_client))
            if "queued" in shown.stdout:
                break
            await asyncio.sleep(0.2)
        assert "status:  queued (waiting for a concurrency slot" in shown.stdout, shown.stdout
        await first.cancel()
        assert (await second.result()).output == "second"


async def test_a_failed_run_prints_its_history_link(
    temporal_client: Client, model_server: ScriptedModelServer
) -> None:
    model_server.add(error(401))
    async with hosted(temporal_client, [PLAIN], model_server) as client:
        result = await ratchet(
            "run",
            PLAIN.name,
            "hi",
            "--id",
            "cli-fails",
            "--address",
            address(temporal_client),
            "--task-queue",
            client.task_queue,
            env={"RATCHET_UI_URL": "http://ui.test"},
        )
        assert result.returncode == 1
        assert "ModelAuthError" in result.stderr
        assert "history: http://ui.test/namespaces/default/workflows/cli-fails" in result.stderr
        traced = await ratchet("trace", "cli-fails", "--address", address(temporal_client))
        # The trace's last line names the error type too.
        assert traced.stdout.strip().splitlines()[-1].startswith("error: failed: ModelAuthError")


async def test_an_id_in_use_needs_attach(
    temporal_client: Client, model_server: ScriptedModelServer
) -> None:
    model_server.add(reply("first answer"))
    async with hosted(temporal_client, [PLAIN], model_server) as client:
        target = address(temporal_client)
        common = ("--address", target, "--task-queue", client.task_queue)
        first = await ratchet("run", PLAIN.name, "first", "--id", "cli-attach", *common)
        assert first.returncode == 0, first.stderr
        again = await ratchet("run", PLAIN.name, "first", "--id", "cli-attach", *common)
        assert "run cli-attach (it existed already: following it)" in again.stdout
        other = await ratchet("run", PLAIN.name, "second", "--id", "cli-attach", *common)
        assert_clean_error(
            other, "already exists", "ratchet run cli-plain --id cli-attach --attach"
        )
        # --attach needs no prompt: it follows the run as it is.
        attached = await ratchet("run", PLAIN.name, "--id", "cli-attach", "--attach", *common)
        assert attached.returncode == 0, attached.stderr
        assert "answer: first answer" in attached.stdout


async def test_ls_validates_status_and_stays_aligned(
    temporal_client: Client, model_server: ScriptedModelServer
) -> None:
    target = address(temporal_client)
    bogus = await ratchet("ls", "--status", "bogus", "--address", target)
    assert_clean_error(bogus, "unknown status 'bogus'", "cancelled")
    spelled = await ratchet("ls", "--status", "canceled", "--address", target)
    assert_clean_error(spelled, "spells it 'cancelled'")
    model_server.add(tool_calls(call("refund", {"order_id": 8})))
    async with hosted(temporal_client, [GUARDED], model_server) as client:
        handle = await client.start(GUARDED.name, "refund order 8", id="cli-ls-a-long-run-id")
        for _ in range(100):
            listed = await ratchet("ls", "--agent", GUARDED.name, "--address", target)
            if "waiting-approval" in listed.stdout:
                break
            await asyncio.sleep(0.3)
        lines = listed.stdout.splitlines()
        header = lines[0]
        assert "STARTED (UTC)" in header
        row = next(line for line in lines if "cli-ls-a-long-run-id" in line)
        # Every column starts where its header does, however long the values.
        for column in ("AGENT", "STATUS", "STARTED (UTC)"):
            start = header.index(column)
            assert row[start - 2 : start] == "  " and row[start] != " ", (header, row)
        assert row[header.index("STATUS") :].startswith("waiting-approval")
        await handle.cancel()


async def test_small_output_faults(
    temporal_client: Client, model_server: ScriptedModelServer
) -> None:
    model_server.add(tool_calls(call("nope", {})), reply("Sorry."))
    async with hosted(temporal_client, [PLAIN], model_server) as client:
        target = address(temporal_client)
        result = await ratchet(
            "run", PLAIN.name, "do it", "--address", target, "--task-queue", client.task_queue
        )
        assert result.returncode == 0, result.stderr
        assert "tool      nope rejected: unknown tool 'nope'" in result.stdout, result.stdout
        assert "error: error:" not in result.stdout
        assert "(2 turns, 1 tool call," in result.stdout  # "1 tool call", not "1 tool calls"


def test_the_progress_line_names_the_turn_once_and_no_empty_tokens() -> None:
    from datetime import UTC, datetime

    now = datetime.now(UTC)
    progress = _Progress()
    progress.saw(
        ModelCallStarted(seq=1, at=now, call_id="turn2-model", turn=2, model="m", messages=[])
    )
    line = progress.line()
    assert line.count("turn") == 1 and "turn 2" in line
    assert "token" not in line  # nothing counted yet: no "0 tokens"
    progress.saw(
        ModelCallFinished(
            seq=2,
            at=now,
            call_id="turn2-model",
            turn=2,
            model="m",
            outcome="completed",
            response=Message.assistant("hi"),
            usage=Usage(input_tokens=10, output_tokens=2, requests=1),
        )
    )
    assert "12 tokens" in progress.line()
