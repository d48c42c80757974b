"""Hard budgets per run: turns, tokens, cost and wall time end the run with a typed outcome,
or (on_budget="ask") pause it for a person's decision."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest
from temporalio.client import Client, WorkflowHistory

from ratchet import (
    Agent,
    ApprovalError,
    BudgetExceeded,
    Limits,
    Price,
    RunHandle,
    tool,
)
from ratchet._history import executions
from ratchet._protocol import PendingApproval
from ratchet.testing import ScriptedModelServer, ScriptedUsage, call, reply, tool_calls
from ratchet.transcripts import ChainNode, SQLiteTranscriptStore

from .conftest import decoded_history_text, hosted
from .test_cli import address, ratchet


@tool
def search(q: str) -> str:
    """Search."""
    return f"results for {q}"


def looping_steps(n: int, *, delay: float = 0.0) -> list[object]:
    return [
        tool_calls(
            call("search", {"q": str(i)}),
            usage=ScriptedUsage(prompt_tokens=1000, completion_tokens=100),
            delay=delay,
        )
        for i in range(n)
    ]


async def run_with(
    temporal_client: Client, model_server: ScriptedModelServer, limits: Limits, steps: list[object]
) -> tuple[BudgetExceeded, int]:
    agent = Agent(
        "budgeted", instructions="x", model="openai:gpt-test", tools=[search], limits=limits
    )
    model_server.add(*steps)  # type: ignore[arg-type]
    prices = {"openai:gpt-test": Price(input=10.0, output=30.0)}
    async with hosted(temporal_client, [agent], model_server, prices=prices) as client:
        handle = await client.start("budgeted", "search forever")
        with pytest.raises(BudgetExceeded) as info:
            await handle.result()
        transcript = await handle.transcript()
        status = await handle.status()
    assert status.state == "failed"
    return info.value, len(transcript)


async def test_token_budget(temporal_client: Client, model_server: ScriptedModelServer) -> None:
    limits = Limits(max_turns=10, max_total_tokens=2500)
    e, kept = await run_with(temporal_client, model_server, limits, looping_steps(3))
    assert (e.budget, e.used, e.limit) == ("max_total_tokens", 3300, 2500)
    assert "Limits.max_total_tokens=2500" in e.message
    assert kept == 2 + 3 * 2  # system, user, then 3 x (call, result): nothing lost


async def test_cost_budget(temporal_client: Client, model_server: ScriptedModelServer) -> None:
    # Each call: 1000 x $10/M + 100 x $30/M = $0.013.
    limits = Limits(max_turns=10, max_cost_usd=0.02)
    e, _ = await run_with(temporal_client, model_server, limits, looping_steps(2))
    assert e.budget == "max_cost_usd" and e.used == pytest.approx(0.026)


async def test_wall_time_budget(temporal_client: Client, model_server: ScriptedModelServer) -> None:
    limits = Limits(max_turns=10, max_wall_seconds=1.0)
    e, _ = await run_with(temporal_client, model_server, limits, looping_steps(1, delay=1.2))
    assert e.budget == "max_wall_seconds" and e.used >= 1.0


def test_max_turns_is_listed_as_a_budget() -> None:
    assert "max_turns" in (BudgetExceeded.__doc__ or "")


# on_budget="ask": a spent budget pauses the run for a person, like an approval.

ASK = Limits(max_turns=10, max_total_tokens=2500, on_budget="ask", approval_timeout_seconds=60)


def budget_agent(limits: Limits = ASK) -> Agent:
    return Agent(
        "budgeted", instructions="x", model="openai:gpt-test", tools=[search], limits=limits
    )


async def waiting_budget(handle: RunHandle) -> PendingApproval:
    for _ in range(400):
        pending = await handle.pending()
        if pending:
            [p] = pending
            return p
        await asyncio.sleep(0.05)
    raise AssertionError("no budget decision is waiting")


async def test_ask_raise_a_budget_and_go_on(
    temporal_client: Client, model_server: ScriptedModelServer
) -> None:
    model_server.add(
        *looping_steps(3),
        reply("done", usage=ScriptedUsage(prompt_tokens=1000, completion_tokens=100)),
    )
    async with hosted(temporal_client, [budget_agent()], model_server) as client:
        handle = await client.start("budgeted", "search forever")
        waiting = await waiting_budget(handle)
        # After 3 calls (3,300 tokens): the 4th call waits for a decision.
        assert (waiting.tool, waiting.kind, waiting.rule) == (
            "budget",
            "budget",
            "Limits.max_total_tokens",
        )
        assert waiting.arguments["used"] == 3300 and waiting.arguments["limit"] == 2500
        assert (await handle.status()).state == "waiting-approval"
        assert len(model_server.requests) == 3
        with pytest.raises(ApprovalError, match="not above what the run used"):
            await handle.approve(waiting.call_id, approver="ana", raise_to=3000)
        record = await handle.approve(waiting.call_id, approver="ana", raise_to=10_000)
        assert record.raise_to == 10_000
        result = await handle.result()
        status = await handle.status()
        events = [e async for e in handle.events(follow=False)]
    model_server.verify()
    assert result.output == "done" and result.usage.total_tokens == 4400
    [audit] = status.approvals
    assert (audit.tool, audit.approver, audit.raise_to) == ("budget", "ana", 10_000)
    # The history shows what waited, then who decided, then the raised budget.
    kinds = [e.type for e in events if e.type.startswith(("approval", "budget"))]
    assert kinds == ["approval_requested", "approval_answered", "budget_decision"]
    asked = next(e for e in events if e.type == "approval_requested")
    assert asked.approval == waiting  # type: ignore[union-attr]


async def test_ask_deny_ends_the_run_with_the_typed_outcome(
    temporal_client: Client, model_server: ScriptedModelServer
) -> None:
    model_server.add(*looping_steps(3))
    async with hosted(temporal_client, [budget_agent()], model_server) as client:
        handle = await client.start("budgeted", "search forever")
        waiting = await waiting_budget(handle)
        with pytest.raises(ApprovalError, match="raise_to goes with approve"):
            await handle._answer(waiting.call_id, False, "bo", "", 9999)
        await handle.deny(waiting.call_id, approver="bo", reason="too expensive")
        with pytest.raises(BudgetExceeded) as info:
            await handle.result()
        transcript = await handle.transcript()
    e = info.value
    assert (e.budget, e.used, e.limit) == ("max_total_tokens", 3300, 2500)
    assert "bo denied: too expensive" in e.message
    assert len(transcript) == 2 + 3 * 2


async def test_ask_default_raise_and_timeout(
    temporal_client: Client, model_server: ScriptedModelServer
) -> None:
    """Approved without raise_to: one more configured budget; unanswered: a denial."""
    # Long enough for the test to see and approve the first ask on a loaded machine.
    limits = Limits(max_turns=2, on_budget="ask", approval_timeout_seconds=8)
    model_server.add(*looping_steps(4))
    async with hosted(temporal_client, [budget_agent(limits)], model_server) as client:
        handle = await client.start("budgeted", "search forever")
        first = await waiting_budget(handle)
        assert first.call_id == "turn3-budget-max_turns"
        record = await handle.approve(first.call_id, approver="ana")
        assert record.raise_to == 4  # 2 used + 2 configured
        with pytest.raises(BudgetExceeded) as info:
            await handle.result()  # after 4 turns: asks again, nobody answers
        status = await handle.status()
    e = info.value
    assert (e.budget, e.used, e.limit) == ("max_turns", 4, 4)
    assert "nobody answered in time" in e.message
    assert [a.timed_out for a in status.approvals] == [False, True]


async def test_budget_decision_from_the_cli(
    temporal_client: Client, model_server: ScriptedModelServer
) -> None:
    usage = ScriptedUsage(prompt_tokens=1000, completion_tokens=100)
    model_server.add(*looping_steps(3), reply("done", usage=usage))
    async with hosted(temporal_client, [budget_agent()], model_server) as client:
        handle = await client.start("budgeted", "search forever")
        waiting = await waiting_budget(handle)
        # `ratchet pending` lists runs by a search attribute: visibility lags a little.
        deadline = time.monotonic() + 30
        while handle.id not in (
            listed := (await ratchet("pending", "--address", address(temporal_client))).stdout
        ):
            assert time.monotonic() < deadline, listed
            await asyncio.sleep(0.2)
        assert f"{handle.id} {waiting.call_id}: budget(" in listed
        assert "rule Limits.max_total_tokens (used 3300 of 2500 tokens)" in listed
        done = await ratchet(
            "approve",
            handle.id,
            waiting.call_id,
            "--as",
            "cy",
            "--raise-to",
            "8000",
            "--address",
            address(temporal_client),
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == (
            f"approved {waiting.call_id} (budget) of {handle.id} as cy; "
            "Limits.max_total_tokens raised to 8000"
        )
        assert (await handle.result()).output == "done"
        trace = await ratchet("trace", handle.id, "--address", address(temporal_client))
    assert trace.returncode == 0, trace.stderr
    assert (
        f"approval {waiting.call_id} (budget) (rule 'Limits.max_total_tokens') approved by cy"
        in trace.stdout
    )
    assert ", raised to 8000" in trace.stdout


async def test_a_budget_decision_waits_across_continue_as_new(
    temporal_client: Client, model_server: ScriptedModelServer
) -> None:
    """A long history hands the waiting decision to a new execution; the raise is carried."""
    limits = ASK.model_copy(update={"continue_as_new_after_events": 20, "max_total_tokens": 5000})
    usage = ScriptedUsage(prompt_tokens=1000, completion_tokens=100)
    model_server.add(*looping_steps(7), reply("done", usage=usage))
    async with hosted(temporal_client, [budget_agent(limits)], model_server) as client:
        handle = await client.start("budgeted", "search forever")
        waiting = await waiting_budget(handle)
        assert waiting.arguments["used"] == 5500  # after 5 calls
        await asyncio.sleep(0.5)
        before = len(await executions(temporal_client, handle.id))
        await handle.approve(waiting.call_id, approver="ana", raise_to=20_000)
        result = await handle.result()
        status = await handle.status()
        histories = await executions(temporal_client, handle.id)
    model_server.verify()
    assert before >= 2 and status.execution == len(histories)
    # Asked in one execution, handed over (carried) and answered in a later one.
    texts = [decoded_history_text(WorkflowHistory(handle.id, h).to_json_dict()) for h in histories]
    assert sum(waiting.call_id in t for t in texts) >= 2
    # Raised to 20,000 once: the calls after the raise (in later executions) did not ask again.
    assert result.usage.total_tokens == 8 * 1100
    assert [(a.tool, a.raise_to) for a in status.approvals] == [("budget", 20_000)]


class FlakyStore(SQLiteTranscriptStore):
    """A real SQLite store that fails once when asked to save the model's answer."""

    def __init__(self, path: Path, marker: str) -> None:
        super().__init__(path)
        self.marker = marker
        self.failed = 0

    async def put(self, messages: Mapping[str, str], nodes: Sequence[ChainNode]) -> None:
        if not self.failed and any(self.marker in m for m in messages.values()):
            self.failed += 1
            raise OSError("disk I/O error (injected)")
        await super().put(messages, nodes)


async def test_an_answered_attempt_that_failed_still_counts(
    temporal_client: Client, model_server: ScriptedModelServer, tmp_path: Path
) -> None:
    """The provider answered (and billed) attempt 1, which then failed: attempt 2 counts both."""
    usage = ScriptedUsage(prompt_tokens=1000, completion_tokens=100)
    model_server.add(reply("the answer", usage=usage), reply("the answer", usage=usage))
    store = FlakyStore(tmp_path / "t.sqlite", marker="the answer")
    limits = Limits(model_retry_initial_seconds=0.1)
    prices = {"openai:gpt-test": Price(input=10.0, output=30.0)}
    async with hosted(
        temporal_client,
        [budget_agent(limits)],
        model_server,
        transcript_store=store,
        prices=prices,
    ) as client:
        result = await client.run("budgeted", "answer once")
    model_server.verify()
    assert store.failed == 1
    assert (result.usage.requests, result.usage.total_tokens) == (2, 2200)
    assert result.cost_usd == pytest.approx(2 * 0.013)
