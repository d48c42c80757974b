"""Tool policies and durable human approvals, against real Temporal servers."""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import uuid
from pathlib import Path

import pytest
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from examples.support import db
from ratchet import (
    Agent,
    AgentClient,
    ApprovalError,
    Limits,
    Policy,
    RunCancelled,
    allow,
    arg,
    deny,
    require_approval,
    tool,
)
from ratchet.testing import RecordedRequest, ScriptedModelServer, call, reply, tool_calls
from ratchet.trace import ToolStep, build_trace

from .conftest import ROOT, hosted
from .workers import WorkerProcess

refunds: list[tuple[int, int]] = []


@tool(side_effects=True)
def refund(order_id: int, amount: int) -> str:
    """Refund an amount (in dollars) on an order."""
    refunds.append((order_id, amount))
    return f"refunded ${amount} on order {order_id}"


@tool
def run_sql(query: str) -> str:
    """Run a SQL query."""
    return "3 rows"


POLICY = Policy(
    rules=[
        require_approval("refund", when=arg("amount") > 100, reason="refunds over $100"),
        deny(
            "run_sql",
            when=arg("query").not_matches(r"(?i)^\s*select\b"),
            reason="only SELECT statements",
            name="read-only SQL",
        ),
    ]
)


def agent(**limits: float) -> Agent:
    return Agent(
        "guarded",
        instructions="You are a support agent.",
        model="openai:m",
        tools=[refund, run_sql],
        policy=POLICY,
        limits=Limits(model_retry_initial_seconds=0.1, **limits),  # type: ignore[arg-type]
    )


def told(text: str):  # type: ignore[no-untyped-def]
    def check(req: RecordedRequest) -> bool:
        return req.messages[-1]["role"] == "tool" and text in req.messages[-1]["content"]

    return check


def test_policy_decisions() -> None:
    d = POLICY.decide("refund", {"order_id": 1, "amount": 500}, side_effects=True)
    assert (d.decision, d.rule) == (
        "require_approval",
        "require_approval refund when amount gt 100",
    )
    assert POLICY.decide("refund", {"amount": 5}, side_effects=True).decision == "allow"
    sql = POLICY.decide("run_sql", {"query": "DELETE FROM orders"}, side_effects=False)
    assert (sql.decision, sql.rule, sql.reason) == (
        "deny",
        "read-only SQL",
        "only SELECT statements",
    )
    assert POLICY.decide("run_sql", {"query": " select 1"}, side_effects=False).decision == "allow"
    strict = Policy(side_effects="deny")
    assert strict.decide("refund", {}, side_effects=True).decision == "deny"
    assert strict.decide("run_sql", {}, side_effects=False).decision == "allow"
    with pytest.raises(ValueError, match="names tool 'nope'"):
        Agent("x", instructions="x", tools=[refund], policy=Policy(rules=[deny("nope")]))


async def test_a_denied_call_the_model_recovers_from(
    temporal_client: Client, model_server: ScriptedModelServer
) -> None:
    model_server.add(
        tool_calls(call("run_sql", {"query": "DELETE FROM orders"})),
        tool_calls(call("run_sql", {"query": "SELECT * FROM orders"})).expecting(
            told("the policy denies this call (rule 'read-only SQL'): only SELECT statements")
        ),
        reply("There are 3 orders.").expecting(told("3 rows")),
    )
    async with hosted(temporal_client, [agent()], model_server) as client:
        result = await client.run("guarded", "how many orders?")
    assert result.output == "There are 3 orders."


async def test_approval_flow_with_double_and_unknown_answers(
    temporal_client: Client, model_server: ScriptedModelServer
) -> None:
    refunds.clear()
    model_server.add(
        tool_calls(call("refund", {"order_id": 1042, "amount": 500})),
        reply("Refund done.").expecting(told("refunded $500 on order 1042")),
    )
    async with hosted(temporal_client, [agent()], model_server) as client:
        handle = await client.start("guarded", "refund $500 on 1042")
        for _ in range(100):
            if (await handle.status()).state == "waiting-approval":
                break
            await asyncio.sleep(0.1)
        status = await handle.status()
        assert status.state == "waiting-approval" and refunds == []
        [waiting] = await handle.pending()
        assert (waiting.call_id, waiting.tool, waiting.arguments) == (
            "turn1-tool0",
            "refund",
            {"order_id": 1042, "amount": 500},
        )
        assert waiting.reason == "refunds over $100"
        listed = []
        for _ in range(300):  # visibility is eventually consistent (30 s on a busy machine)
            listed = [c for r, c in await client.pending() if r == handle.id]
            if listed:
                break
            await asyncio.sleep(0.1)
        assert [c.call_id for c in listed] == ["turn1-tool0"]
        with pytest.raises(ApprovalError, match="no call 'turn9-tool9' is waiting"):
            await handle.approve("turn9-tool9", approver="alice")
        with pytest.raises(ApprovalError, match="raise_to is only for budget decisions"):
            await handle.approve("turn1-tool0", approver="alice", raise_to=5)
        record = await handle.approve("turn1-tool0", approver="alice", reason="customer is VIP")
        assert record.approved and record.approver == "alice"
        with pytest.raises(ApprovalError, match="already approved by alice"):
            await handle.deny("turn1-tool0", approver="bob")
        result = await handle.result()
        status = await handle.status()
    assert result.output == "Refund done."
    assert refunds == [(1042, 500)]
    assert [(a.call_id, a.approved, a.approver) for a in status.approvals] == [
        ("turn1-tool0", True, "alice")
    ]
    # The audit trail is in the history: the tool call carries who approved it and why.
    trace = await build_trace(temporal_client, handle.id)
    [step] = [s for s in trace.steps if isinstance(s, ToolStep)]
    assert step.approval is not None and step.approval.approver == "alice"
    assert step.approval.reason == "customer is VIP"
    assert step.policy is not None and step.policy.decision == "require_approval"
    [answer] = trace.approvals
    assert (answer.approver, answer.rule) == ("alice", "require_approval refund when amount gt 100")


async def test_a_person_denies_and_the_model_is_told_why(
    temporal_client: Client, model_server: ScriptedModelServer
) -> None:
    refunds.clear()
    model_server.add(
        tool_calls(call("refund", {"order_id": 7, "amount": 900})),
        reply("I cannot refund that.").expecting(told("bob denied this call: too large")),
    )
    async with hosted(temporal_client, [agent()], model_server) as client:
        handle = await client.start("guarded", "refund $900 on 7")
        for _ in range(100):
            if await handle.pending():
                break
            await asyncio.sleep(0.1)
        await handle.deny("turn1-tool0", approver="bob", reason="too large")
        assert (await handle.result()).output == "I cannot refund that."
    assert refunds == []


async def test_an_approval_given_after_a_worker_kill9(
    temporal_env: WorkflowEnvironment,
    model_server: ScriptedModelServer,
    tmp_path: Path,
    workers: list[WorkerProcess],
) -> None:
    address = temporal_env.client.service_client.config.target_host
    queue = f"approve-crash-{uuid.uuid4().hex[:6]}"
    model_server.add(
        tool_calls(call("refund", {"order_id": 1043})),
        reply("Refunded.").expecting(told("Refunded $45.50 for order 1043")),
    )
    workers.append(WorkerProcess(address, queue, model_server, tmp_path))
    client = AgentClient(temporal_env.client, task_queue=queue)
    handle = await client.start("guarded", "refund 1043")
    for _ in range(200):
        try:
            if await handle.pending():
                break
        except Exception:
            pass
        await asyncio.sleep(0.1)
    workers[0].kill9()  # the run waits durably, in the server, not in this process
    workers.append(WorkerProcess(address, queue, model_server, tmp_path))
    await handle.approve("turn1-tool0", approver="carol")
    assert (await handle.result()).output == "Refunded."
    assert db.refunds_for(1043, tmp_path / "shop.sqlite") == 1


async def test_approval_timeout_denies_after_days_without_worker_memory(
    model_server: ScriptedModelServer,
) -> None:
    """A 3-day wait on the time-skipping server, with no workflow cache at all."""
    binary = str(Path(sys.executable).parent / "temporal-test-server")
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=binary
        if Path(binary).exists()
        else shutil.which("temporal-test-server"),
        data_converter=pydantic_data_converter,
    )
    refunds.clear()
    try:
        model_server.add(
            tool_calls(call("refund", {"order_id": 5, "amount": 250})),
            reply("Nobody approved it in time.").expecting(
                told("ratchet denied this call: nobody answered within 3 days")
            ),
        )
        three_days = 3 * 24 * 3600.0
        async with hosted(
            env.client,
            [agent(approval_timeout_seconds=three_days)],
            model_server,
            max_cached_workflows=0,
        ) as client:
            handle = await client.start("guarded", "refund $250 on 5")
            result = await handle.result()  # the test server skips the 3 days
            status = await handle.status()
            started = (await env.client.get_workflow_handle(handle.id).describe()).start_time
        assert result.output == "Nobody approved it in time."
        assert refunds == []
        [record] = status.approvals
        assert record.timed_out and not record.approved
        assert (record.at - started).total_seconds() >= three_days
    finally:
        await env.shutdown()


def test_deny_and_approval_rules_fail_closed() -> None:
    policy = Policy(
        rules=[
            require_approval("refund", when=arg("amount") > 100),
            deny("run_sql", when=arg("query").not_matches(r"^select")),
        ]
    )
    # No amount, or an amount that does not compare with a number: ask a person.
    assert policy.decide("refund", {}, side_effects=True).decision == "require_approval"
    assert policy.decide("refund", {"amount": "lots"}, side_effects=True).decision == (
        "require_approval"
    )
    assert policy.decide("run_sql", {"query": 42}, side_effects=False).decision == "deny"
    allow_rule = Policy(rules=[allow("refund", when=arg("amount") < 10)], default="deny")
    assert allow_rule.decide("refund", {}, side_effects=True).decision == "deny"


async def test_trace_and_status_of_a_wait_then_a_cancel(
    temporal_client: Client, model_server: ScriptedModelServer
) -> None:
    model_server.add(tool_calls(call("refund", {"order_id": 9, "amount": 999})))
    async with hosted(temporal_client, [agent()], model_server) as client:
        handle = await client.start("guarded", "refund $999 on 9")
        for _ in range(100):
            if await handle.pending():
                break
            await asyncio.sleep(0.1)
        waiting = await build_trace(temporal_client, handle.id)
        assert [(s.kind, s.status) for s in waiting.steps] == [
            ("model", "completed"),
            ("tool", "waiting"),
        ]
        await handle.cancel()
        with pytest.raises(RunCancelled):
            await handle.result()
        status = await handle.status()
        done = await build_trace(temporal_client, handle.id)
    assert status.state == "cancelled" and status.pending_approvals == []
    assert done.error is not None and done.error.startswith("cancelled")
    assert [(s.kind, s.status) for s in done.steps] == [
        ("model", "completed"),
        ("tool", "cancelled"),
    ]


async def test_pending_approve_and_deny_commands(
    temporal_client: Client, model_server: ScriptedModelServer
) -> None:
    model_server.add(
        tool_calls(call("refund", {"order_id": 11, "amount": 300})),
        reply("Done."),
    )
    address = temporal_client.service_client.config.target_host
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200"}

    async def ratchet(*args: str) -> tuple[int, str, str]:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "ratchet.cli",
            *args,
            "--address",
            address,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
            cwd=ROOT,
        )
        out, err = await proc.communicate()
        return proc.returncode or 0, out.decode(), err.decode()

    async with hosted(temporal_client, [agent()], model_server) as client:
        handle = await client.start("guarded", "refund $300 on 11")
        listed = ""
        for _ in range(100):
            _, listed, _ = await ratchet("pending")
            if handle.id in listed:
                break
            await asyncio.sleep(0.1)
        assert f"{handle.id} turn1-tool0: refund" in listed and '"amount": 300' in listed
        code, out, err = await ratchet("deny", handle.id, "turn9-tool0", "--as", "dave")
        assert code == 1 and "no call 'turn9-tool0' is waiting" in err and "Traceback" not in err
        code, out, err = await ratchet(
            "approve", handle.id, "turn1-tool0", "--as", "dave", "--reason", "ok"
        )
        assert code == 0, err
        assert out.strip() == f"approved turn1-tool0 (refund) of {handle.id} as dave"
        assert (await handle.result()).output == "Done."
