"""Hard budgets per run: tokens, cost and wall time end the run with a typed outcome."""

from __future__ import annotations

import pytest
from temporalio.client import Client

from ratchet import Agent, BudgetExceeded, Limits, Price, tool
from ratchet.testing import ScriptedModelServer, ScriptedUsage, call, tool_calls

from .conftest import hosted


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
