"""kill -9 of real worker processes: the run finishes, nothing recorded is redone,
the side effect is applied exactly once."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

from temporalio.testing import WorkflowEnvironment

from examples.support import db
from ratchet import AgentClient
from ratchet.testing import ScriptedModelServer, call, hang, reply, tool_calls

from .workers import WorkerProcess, tool_log, wait_for


async def test_kill9_during_model_call(
    temporal_env: WorkflowEnvironment,
    model_server: ScriptedModelServer,
    tmp_path: Path,
    workers: list[WorkerProcess],
) -> None:
    address = temporal_env.client.service_client.config.target_host
    queue = f"crash-{uuid.uuid4().hex[:8]}"
    model_server.add(
        tool_calls(call("lookup", {"order_id": 1042})),
        hang(),  # turn 2, first attempt: the worker dies while this call is in flight
        reply("Order 1042 has shipped."),
    )
    workers.append(WorkerProcess(address, queue, model_server, tmp_path))
    client = AgentClient(temporal_env.client, task_queue=queue)
    handle = await client.start("crashy", "Where is order 1042?")

    await model_server.wait_for_requests_async(2, timeout=30)
    workers[0].kill9()
    workers.append(WorkerProcess(address, queue, model_server, tmp_path))

    result = await handle.result()
    assert result.output == "Order 1042 has shipped."
    model_server.verify()
    assert len(model_server.requests) == 3, "turn 1's model call was executed again"
    assert tool_log(tmp_path) == ["lookup 1042"], "a recorded tool call was executed again"
    transcript = await handle.transcript()
    assert [m.role for m in transcript] == ["system", "user", "assistant", "tool", "assistant"]


async def test_kill9_during_side_effecting_tool(
    temporal_env: WorkflowEnvironment,
    model_server: ScriptedModelServer,
    tmp_path: Path,
    workers: list[WorkerProcess],
) -> None:
    address = temporal_env.client.service_client.config.target_host
    queue = f"crash-{uuid.uuid4().hex[:8]}"
    model_server.add(
        tool_calls(call("refund", {"order_id": 1043})),
        reply("Your refund is on its way."),
    )
    workers.append(WorkerProcess(address, queue, model_server, tmp_path, pause_in_refund=True))
    client = AgentClient(temporal_env.client, task_queue=queue)
    handle = await client.start("crashy", "Please refund order 1043.")

    # The refund row is written; the worker dies before the activity completes.
    await asyncio.to_thread(
        wait_for,
        lambda: any(line.startswith("refund") for line in tool_log(tmp_path)),
        30,
        "the refund tool to run",
    )
    workers[0].kill9()
    workers.append(WorkerProcess(address, queue, model_server, tmp_path))

    result = await handle.result()
    assert result.output == "Your refund is on its way."
    model_server.verify()
    attempts = [line for line in tool_log(tmp_path) if line.startswith("refund")]
    assert len(attempts) == 2, attempts  # at-least-once: the tool really ran twice...
    assert attempts[0].split(" key ")[1] == attempts[1].split(" key ")[1]  # ...with one key
    assert db.refunds_for(1043, tmp_path / "shop.sqlite") == 1  # ...and refunded once
    transcript = await handle.transcript()
    assert [m.role for m in transcript] == ["system", "user", "assistant", "tool", "assistant"]


async def test_kill9_while_a_sub_agent_runs(
    temporal_env: WorkflowEnvironment,
    model_server: ScriptedModelServer,
    tmp_path: Path,
    workers: list[WorkerProcess],
) -> None:
    """The worker dies while a child workflow's model call is in flight: another worker
    finishes the tree; nothing recorded, in the parent or the child, runs again."""
    address = temporal_env.client.service_client.config.target_host
    queue = f"crash-{uuid.uuid4().hex[:8]}"
    model_server.add(
        tool_calls(call("crash-child", {"input": "Where is order 1042?"})),  # the lead
        tool_calls(call("lookup", {"order_id": 1042})),  # the child, turn 1
        hang(),  # the child, turn 2: the worker dies while this call is in flight
        reply("Order 1042 has shipped."),  # the child, turn 2 again
        reply("It has shipped."),  # the lead
    )
    workers.append(WorkerProcess(address, queue, model_server, tmp_path))
    client = AgentClient(temporal_env.client, task_queue=queue)
    handle = await client.start("crash-lead", "Where is order 1042?")

    await model_server.wait_for_requests_async(3, timeout=30)
    workers[0].kill9()
    workers.append(WorkerProcess(address, queue, model_server, tmp_path))

    result = await handle.result()
    assert result.output == "It has shipped."
    model_server.verify()
    assert len(model_server.requests) == 5, "a recorded model call was executed again"
    assert tool_log(tmp_path) == ["lookup 1042"], "the child's recorded tool call ran again"
    child = client.get(f"{handle.id}.turn1-tool0")
    assert (await child.result()).output == "Order 1042 has shipped."
    # The lead's totals include the child's model calls: its two answered ones (the
    # attempt in flight on the killed worker died with it, unreported).
    assert result.usage.requests == 2 + 2
    assert result.usage.total_tokens == sum(
        r.response["usage"]["total_tokens"] for r in model_server.requests if r.response
    )


async def test_kill9_during_an_mcp_tool_call(
    temporal_env: WorkflowEnvironment,
    model_server: ScriptedModelServer,
    tmp_path: Path,
    workers: list[WorkerProcess],
) -> None:
    """The worker dies while an MCP server works on a call: the run completes, and the
    retry reaches the server with the same idempotency key."""
    address = temporal_env.client.service_client.config.target_host
    queue = f"crash-{uuid.uuid4().hex[:8]}"
    log = tmp_path / "mcp.log"
    env = {"FAULTY_LOG": str(log)}
    model_server.add(tool_calls(call("slow", {"seconds": 3})), reply("It finished."))
    workers.append(WorkerProcess(address, queue, model_server, tmp_path, env=env))
    client = AgentClient(temporal_env.client, task_queue=queue)
    handle = await client.start("crash-mcp", "Do the slow thing.")

    def calls() -> list[str]:
        return log.read_text().splitlines() if log.exists() else []

    await asyncio.to_thread(wait_for, lambda: len(calls()) == 1, 30, "the MCP call to start")
    workers[0].kill9()
    workers.append(WorkerProcess(address, queue, model_server, tmp_path, env=env))

    result = await handle.result()
    assert result.output == "It finished."
    model_server.verify()
    assert len(model_server.requests) == 2, "a recorded model call was executed again"
    [first, second] = [line.split() for line in calls()]
    assert first[0] == second[0] == "slow"
    assert first[1] == second[1] == f"key={handle.id}/turn1-tool0"  # the same key
    assert first[2] != second[2]  # another server process, from the other worker
