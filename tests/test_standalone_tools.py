"""Tools as standalone activities: one tool call, durable, outside any run
(``AgentClient.call_tool``, ``ratchet tool run``), against a real dev server and real
workers (in this process, or `ratchet worker` subprocesses killed with SIGKILL)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from examples.support import db
from ratchet import (
    Agent,
    AgentClient,
    ConfigError,
    Policy,
    ToolContext,
    connect,
    deny,
    require_approval,
    tool,
)
from ratchet._hosting import hosted_agents
from ratchet.errors import ToolCallFailed
from ratchet.local import TemporalDevServer
from ratchet.local._proc import free_port
from ratchet.testing import ScriptedModelServer

from .conftest import ROOT, eventually, hosted
from .workers import WorkerProcess, tool_log, wait_for

CALLS: list[str] = []


async def types_and_queues(temporal_client: Client, query: str) -> list[tuple[str, str]]:
    return [(a.activity_type, a.task_queue) async for a in temporal_client.list_activities(query)]


async def ids(temporal_client: Client, query: str) -> list[str]:
    return [a.activity_id async for a in temporal_client.list_activities(query)]


@tool
def lookup(order_id: int) -> dict[str, object]:
    """Look up an order.

    Args:
        order_id: the order number.
    """
    CALLS.append(f"lookup {order_id}")
    return {"order_id": order_id, "status": "shipped"}


@tool(side_effects=True)
def whoami(note: str, ctx: ToolContext) -> str:
    """Say which key and run the call had."""
    CALLS.append(f"whoami {note}")
    return json.dumps({"key": ctx.idempotency_key, "run": ctx.run_id, "attempt": ctx.attempt})


@tool(side_effects=True)
def refund(order_id: int, amount: float) -> str:
    """Refund an order."""
    CALLS.append(f"refund {order_id}")
    return f"refunded {amount} on {order_id}"


@tool
def drop_table(name: str) -> str:
    """Drop a table."""
    CALLS.append(f"drop {name}")
    return "dropped"


@tool(max_attempts=1)
def broken(order_id: int) -> str:
    """Always fails."""
    raise LookupError(f"no order {order_id}")


@tool(fatal=True, max_attempts=1)
def fatal_broken(order_id: int) -> str:
    """Fails, declared fatal."""
    raise RuntimeError("the ledger is down")


SHOP = Agent(
    "shop",
    instructions="x",
    model="openai:scripted",
    tools=[lookup, whoami, refund, drop_table, broken, fatal_broken],
    policy=Policy(
        rules=[
            deny("drop_table", reason="never drop tables"),
            require_approval("refund", reason="refunds need a manager"),
        ]
    ),
)


async def test_a_tool_call_returns_its_result_and_the_server_lists_it(
    temporal_client: Client, model_server: ScriptedModelServer
) -> None:
    async with hosted(temporal_client, [SHOP], model_server) as client:
        result = await client.call_tool("shop", "lookup", {"order_id": 1042})
        assert json.loads(result.content) == {"order_id": 1042, "status": "shipped"}
        assert not result.is_error
        assert result.attempts == 1
        assert result.activity_id.startswith("shop.lookup-")
        assert result.idempotency_key == result.activity_id

        # The server's listings are eventually consistent: each is read until it shows.
        listed = await eventually(
            lambda: types_and_queues(temporal_client, f'ActivityId = "{result.activity_id}"'),
            lambda seen: seen == [("ratchet.run_tool_standalone", client.task_queue)],
        )
        assert listed == [("ratchet.run_tool_standalone", client.task_queue)]
        # The agent's calls can be found by the RatchetAgent search attribute.
        mine = f'RatchetAgent = "shop" AND TaskQueue = "{client.task_queue}"'
        by_agent = await eventually(
            lambda: ids(temporal_client, mine), lambda seen: seen == [result.activity_id]
        )
        assert by_agent == [result.activity_id]
        # The worker's description of the agent that prepared the call is not kept (the
        # server deletes it, and its visibility store drops it, asynchronously).
        queue = f'TaskQueue = "{client.task_queue}"'
        kept = await eventually(
            lambda: types_and_queues(temporal_client, queue),
            lambda seen: [t for t, _ in seen] == ["ratchet.run_tool_standalone"],
        )
        assert [t for t, _ in kept] == ["ratchet.run_tool_standalone"]


async def test_the_tool_sees_the_callers_idempotency_key_and_no_run(
    temporal_client: Client, model_server: ScriptedModelServer
) -> None:
    async with hosted(temporal_client, [SHOP], model_server) as client:
        plain = await client.call_tool("shop", "whoami", {"note": "a"})
        assert json.loads(plain.content) == {"key": plain.activity_id, "run": "", "attempt": 1}
        # Re-driving a run's side effect: the key the call had in its run.
        redo = await client.call_tool(
            "shop", "whoami", {"note": "b"}, idempotency_key="support-1/turn1-tool0"
        )
        assert json.loads(redo.content)["key"] == "support-1/turn1-tool0"
        assert redo.idempotency_key == "support-1/turn1-tool0"


async def test_one_id_is_one_call(
    temporal_client: Client, model_server: ScriptedModelServer
) -> None:
    async with hosted(temporal_client, [SHOP], model_server) as client:
        call_id = f"lookup-{uuid.uuid4().hex[:8]}"
        before = CALLS.count("lookup 7")
        first = await client.call_tool("shop", "lookup", {"order_id": 7}, id=call_id)
        again = await client.call_tool("shop", "lookup", {"order_id": 7}, id=call_id)
        assert again.content == first.content
        assert CALLS.count("lookup 7") == before + 1, "a completed call ran again"
        taken = r"is taken by another call: shop\.lookup\(order_id=7\)"
        with pytest.raises(ConfigError, match=taken):
            await client.call_tool("shop", "lookup", {"order_id": 8}, id=call_id)


async def test_the_policy_applies(
    temporal_client: Client, model_server: ScriptedModelServer
) -> None:
    async with hosted(temporal_client, [SHOP], model_server) as client:
        with pytest.raises(ConfigError, match=r"denies tool 'drop_table'.*never drop tables"):
            await client.call_tool("shop", "drop_table", {"name": "orders"})
        with pytest.raises(ConfigError, match=r"needs a person's approval.*--approved-by"):
            await client.call_tool("shop", "refund", {"order_id": 1, "amount": 5})
        assert not any(c.startswith(("drop", "refund")) for c in CALLS)
        approved = await client.call_tool(
            "shop", "refund", {"order_id": 1, "amount": 5}, approved_by="maria"
        )
        assert approved.content == "refunded 5.0 on 1"


async def test_the_worker_applies_the_policy_too(
    temporal_client: Client, model_server: ScriptedModelServer
) -> None:
    """A client that skips the checks (an older one, or a hand-made start) is refused by
    the worker: the tool never runs."""
    from datetime import timedelta

    from temporalio.client import ActivityFailureError

    from ratchet._protocol import STANDALONE_TOOL_ACTIVITY, StandaloneToolRequest

    async with hosted(temporal_client, [SHOP], model_server) as client:
        handle = await temporal_client.start_activity(
            STANDALONE_TOOL_ACTIVITY,
            StandaloneToolRequest(
                agent="shop",
                tool=drop_table.spec(),
                arguments={"name": "orders"},
                idempotency_key="k",
            ),
            id=f"hand-made-{uuid.uuid4().hex[:8]}",
            task_queue=client.task_queue,
            start_to_close_timeout=timedelta(seconds=10),
        )
        with pytest.raises(ActivityFailureError) as failed:
            await handle.result()
        assert "denies tool 'drop_table'" in str(failed.value.cause)
        assert not any(c.startswith("drop") for c in CALLS)


async def test_with_an_approval_secret_the_approver_needs_a_proof(
    temporal_client: Client, model_server: ScriptedModelServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Workers with ``RATCHET_APPROVAL_SECRET`` take an approver's name only with a proof
    made with it: a client holding the secret signs it; a bare name is refused."""
    from datetime import timedelta

    from temporalio.client import ActivityFailureError

    from ratchet._protocol import STANDALONE_TOOL_ACTIVITY, StandaloneToolRequest

    monkeypatch.setenv("RATCHET_APPROVAL_SECRET", "s3cret-s3cret-s3cret-s3cret")
    async with hosted(temporal_client, [SHOP], model_server) as client:
        signed = await client.call_tool(
            "shop", "refund", {"order_id": 2, "amount": 3}, approved_by="maria"
        )
        assert signed.content == "refunded 3.0 on 2"
        handle = await temporal_client.start_activity(
            STANDALONE_TOOL_ACTIVITY,
            StandaloneToolRequest(
                agent="shop",
                tool=refund.spec(),
                arguments={"order_id": 4, "amount": 3},
                idempotency_key="k",
                approved_by="mallory",
            ),
            id=f"unsigned-{uuid.uuid4().hex[:8]}",
            task_queue=client.task_queue,
            start_to_close_timeout=timedelta(seconds=10),
        )
        with pytest.raises(ActivityFailureError) as failed:
            await handle.result()
        assert "requires authenticated approvals" in str(failed.value.cause)
        assert "refund 4" not in CALLS


async def test_unknown_names_and_bad_arguments_are_refused(
    temporal_client: Client, model_server: ScriptedModelServer
) -> None:
    async with hosted(temporal_client, [SHOP], model_server) as client:
        with pytest.raises(ConfigError, match=r"has no tool 'lokup'; its tools: lookup, whoami"):
            await client.call_tool("shop", "lokup", {"order_id": 1})
        with pytest.raises(ConfigError, match=r"no worker on task queue .* hosts agent 'shoe'"):
            await client.call_tool("shoe", "lookup", {"order_id": 1})
        with pytest.raises(ConfigError, match=r"invalid arguments for tool 'lookup'.*order_id"):
            await client.call_tool("shop", "lookup", {"order_id": "seven"})
        with pytest.raises(ConfigError, match=r"invalid arguments for tool 'lookup'.*order_id"):
            await client.call_tool("shop", "lookup", {})


async def test_failures_keep_the_tools_semantics(
    temporal_client: Client, model_server: ScriptedModelServer
) -> None:
    async with hosted(temporal_client, [SHOP], model_server) as client:
        # An ordinary exception is an error result, as a run's model would read it.
        result = await client.call_tool("shop", "broken", {"order_id": 3})
        assert result.is_error
        assert result.content == "error: LookupError: no order 3"
        # A fatal tool fails the call.
        with pytest.raises(ToolCallFailed) as failed:
            await client.call_tool("shop", "fatal_broken", {"order_id": 3})
        assert failed.value.error_type == "ToolFailed"
        assert "the ledger is down" in failed.value.message


async def test_kill9_of_the_worker_retries_the_call_with_the_same_key(
    temporal_env: WorkflowEnvironment,
    model_server: ScriptedModelServer,
    tmp_path: Path,
    workers: list[WorkerProcess],
) -> None:
    """The worker dies after the refund row is written, before the activity completes:
    the server retries the call on another worker (attempt 2) with the same idempotency
    key, and the refund, deduplicated by key, is applied once."""
    address = temporal_env.client.service_client.config.target_host
    queue = f"standalone-{uuid.uuid4().hex[:8]}"
    workers.append(WorkerProcess(address, queue, model_server, tmp_path, pause_in_refund=True))
    await _polled(temporal_env.client, queue)
    client = AgentClient(temporal_env.client, task_queue=queue)
    handle = await client.start_tool_call("crashy", "refund", {"order_id": 1043})

    await asyncio.to_thread(
        wait_for,
        lambda: any(line.startswith("refund") for line in tool_log(tmp_path)),
        30,
        "the refund tool to run",
    )
    assert (await handle.progress()).state == "running"
    workers[0].kill9()
    # No worker now: after the heartbeat timeout the server schedules attempt 2.
    for _ in range(150):
        progress = await handle.progress()
        if progress.state == "retrying":
            break
        await asyncio.sleep(0.1)
    assert progress.state == "retrying" and progress.attempt == 2, progress
    assert progress.last_failure is not None and "heartbeat" in progress.last_failure
    workers.append(WorkerProcess(address, queue, model_server, tmp_path))

    result = await handle.result()
    assert result.content.startswith("Refunded $45.50 for order 1043")
    assert result.attempts == 2
    attempts = [line for line in tool_log(tmp_path) if line.startswith("refund")]
    assert attempts == [
        f"refund 1043 attempt 1 key {handle.id}",
        f"refund 1043 attempt 2 key {handle.id}",
    ]
    assert db.refunds_for(1043, tmp_path / "shop.sqlite") == 1
    described = await temporal_env.client.get_activity_handle(handle.id).describe()
    assert described.attempt == 2
    assert described.last_worker_identity != ""


async def test_cli_tool_run(
    temporal_env: WorkflowEnvironment,
    model_server: ScriptedModelServer,
    tmp_path: Path,
    workers: list[WorkerProcess],
) -> None:
    address = temporal_env.client.service_client.config.target_host
    queue = f"standalone-cli-{uuid.uuid4().hex[:8]}"
    workers.append(WorkerProcess(address, queue, model_server, tmp_path))
    await _polled(temporal_env.client, queue)
    base = [sys.executable, "-m", "ratchet.cli", "tool", "run", "crashy"]
    where = ["--task-queue", queue, "--address", address]
    env = {"SUPPORT_DB": str(tmp_path / "shop.sqlite"), "PYTHONPATH": str(ROOT)}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        import os

        return subprocess.run(
            [*base, *args, *where],
            capture_output=True,
            text=True,
            cwd=ROOT,
            env={**os.environ, **env},
            timeout=60,
        )

    done = await asyncio.to_thread(
        cli, "lookup", "--args", '{"order_id": 1042}', "--id", "cli-lookup-1", "--json"
    )
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert answer["activity_id"] == "cli-lookup-1"
    assert answer["attempts"] == 1
    assert json.loads(answer["content"])["status"] == "shipped"

    shown = await asyncio.to_thread(cli, "lookup", "--args", '{"order_id": 1042}')
    assert shown.returncode == 0, shown.stderr
    assert '"status": "shipped"' in shown.stdout
    assert "activity crashy.lookup-" in shown.stdout
    assert "Standalone Activities" in shown.stdout

    bad = await asyncio.to_thread(cli, "lookup", "--args", '{"order_id": "x"}')
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert "invalid arguments for tool 'lookup' of agent 'crashy'" in bad.stderr


async def _polled(client: Client, queue: str) -> None:
    """Wait for a worker subprocess to poll ``queue`` (it imports for a few seconds)."""
    for _ in range(300):
        if (await hosted_agents(client, queue)).pollers:
            return
        await asyncio.sleep(0.1)
    raise TimeoutError(f"no worker polled {queue} within 30 s")


async def test_a_server_with_standalone_activities_off_is_explained(
    model_server: ScriptedModelServer, tmp_path: Path
) -> None:
    """The dev server has them on; a server whose dynamic config turns them off is
    named, with the key to set (measured: the server answers "Standalone activity is
    disabled")."""
    server = TemporalDevServer(
        db_path=None,
        log_path=tmp_path / "temporal.log",
        port=free_port(),
        ui_port=None,
        extra_args=("--dynamic-config-value", "activity.enableStandalone=false"),
    )
    server.start()
    try:
        client = await connect(server.address)
        async with hosted(client, [SHOP], model_server) as agents:
            with pytest.raises(ConfigError, match=r"activity\.enableStandalone to true"):
                await agents.call_tool("shop", "lookup", {"order_id": 1})
    finally:
        server.stop()


async def test_the_mcp_server_offers_single_tools_when_asked(
    temporal_client: Client, model_server: ScriptedModelServer
) -> None:
    import mcp_types as types
    from mcp import Client as MCPClient

    from ratchet.mcp import TOOL_CALL_META_KEY, create_mcp_server

    wanted = ["shop.lookup", "shop.refund", "shop.drop_table", "shop.nothing"]
    async with (
        hosted(temporal_client, [SHOP], model_server) as client,
        MCPClient(create_mcp_server(client, ["shop"], tools=wanted)) as mcp,
    ):
        listed = {t.name: t for t in (await mcp.list_tools()).tools}
        looked_up = await mcp.call_tool("shop.lookup", {"order_id": 1042})
        approval = await mcp.call_tool("shop.refund", {"order_id": 1, "amount": 2})
        denied = await mcp.call_tool("shop.drop_table", {"name": "orders"})
        bad = await mcp.call_tool("shop.lookup", {"order_id": "x"})

    def text(result: types.CallToolResult) -> str:
        block = result.content[0]
        assert isinstance(block, types.TextContent)
        return block.text

    # The agent (a run per call), and the single tools the agent has.
    assert sorted(listed) == ["shop", "shop.drop_table", "shop.lookup", "shop.refund"]
    assert listed["shop.lookup"].input_schema["required"] == ["order_id"]
    assert not looked_up.is_error
    assert json.loads(text(looked_up)) == {"order_id": 1042, "status": "shipped"}
    assert looked_up.meta is not None and looked_up.meta[TOOL_CALL_META_KEY]["attempts"] == 1
    assert approval.is_error and "needs a person's approval" in text(approval)
    assert denied.is_error and "denies tool 'drop_table'" in text(denied)
    assert bad.is_error and "invalid arguments for tool 'lookup'" in text(bad)
