"""Agents hosted by the worker subprocesses that crash tests kill with SIGKILL.

Every tool invocation appends a line to ``$CRASH_LOG``, so a test can count
executions across processes. ``$CRASH_PAUSE_IN_REFUND`` makes the refund tool
stall after it applied the refund, the worst moment to die.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path
from typing import Any

from examples.support.agent import order_status, refund_order
from ratchet import Agent, Limits, Policy, ToolContext, require_approval, tool
from ratchet.mcp import MCPServer


def _log(line: str) -> None:
    with Path(os.environ["CRASH_LOG"]).open("a") as f:
        f.write(line + "\n")
        f.flush()
        os.fsync(f.fileno())


@tool
def lookup(order_id: int) -> Any:
    """Look up an order."""
    _log(f"lookup {order_id}")
    return order_status.fn(order_id)


@tool(side_effects=True, timeout=30, max_attempts=5)
def refund(order_id: int, ctx: ToolContext) -> str:
    """Refund an order, then wait for the payment provider's confirmation."""
    result: str = refund_order.fn(order_id, ctx)
    _log(f"refund {order_id} attempt {ctx.attempt} key {ctx.idempotency_key}")
    if os.environ.get("CRASH_PAUSE_IN_REFUND"):
        time.sleep(60)
    return result


agents = [
    Agent(
        "crashy",
        instructions="You are a support agent.",
        model="openai:scripted",
        tools=[lookup, refund],
        limits=Limits(model_heartbeat_seconds=2, model_retry_initial_seconds=0.2),
    ),
    # For scripts/recovery_time.py: ratchet's default limits, and a 10 s heartbeat baseline.
    Agent("recovery", instructions="x", model="openai:scripted", tools=[lookup, refund]),
    Agent(
        "recovery_baseline",
        instructions="x",
        model="openai:scripted",
        tools=[lookup, refund],
        limits=Limits(model_heartbeat_seconds=10, tool_heartbeat_seconds=10),
    ),
]

# For the approval-after-crash test: refunds over $100 wait for a person.
agents.append(
    Agent(
        "guarded",
        instructions="You are a support agent.",
        model="openai:scripted",
        tools=[lookup, refund],
        policy=Policy(rules=[require_approval("refund", reason="refunds need a manager")]),
        limits=Limits(model_heartbeat_seconds=2, model_retry_initial_seconds=0.2),
    )
)

# For the run-events test: continues as new every ~20 history events.
agents.append(
    Agent(
        "crashy-long",
        instructions="You are a support agent.",
        model="openai:scripted",
        tools=[lookup, refund],
        limits=Limits(
            model_heartbeat_seconds=2,
            model_retry_initial_seconds=0.2,
            continue_as_new_after_events=20,
        ),
    )
)

# For the sub-agent crash test: a lead whose research runs as a child workflow.
CRASH_CHILD = Agent(
    "crash-child",
    instructions="crash-child: look orders up.",
    model="openai:scripted",
    tools=[lookup],
    limits=Limits(model_heartbeat_seconds=2, model_retry_initial_seconds=0.2),
)
agents.append(
    Agent(
        "crash-lead",
        instructions="crash-lead: delegate.",
        model="openai:scripted",
        tools=[CRASH_CHILD.as_tool(description="Looks orders up.")],
        limits=Limits(model_heartbeat_seconds=2, model_retry_initial_seconds=0.2),
    )
)

# For the MCP crash test: a tool of the fault-injecting MCP server (tests/mcp_faulty.py),
# its call log at $FAULTY_LOG (passed through from the worker's environment).
agents.append(
    Agent(
        "crash-mcp",
        instructions="crash-mcp: use the tools.",
        model="openai:scripted",
        tools=[
            MCPServer.stdio(
                sys.executable, ["-m", "tests.mcp_faulty"], name="faulty", env_from=["FAULTY_LOG"]
            )
        ],
        limits=Limits(tool_heartbeat_seconds=2, model_retry_initial_seconds=0.2),
    )
)

# For the drain tests: a settlement that takes ``seconds`` on its first attempt only,
# async or sync (a thread nothing can interrupt). The long heartbeat timeout means a call
# redone within seconds was handed back by the stopping worker, not found dead.


@tool(side_effects=True, timeout=60, max_attempts=3)
async def settle(order_id: int, seconds: float, ctx: ToolContext) -> str:
    """Settle an order with the bank."""
    _log(f"settle {order_id} start attempt {ctx.attempt} key {ctx.idempotency_key}")
    await asyncio.sleep(seconds if ctx.attempt == 1 else 0)
    _log(f"settle {order_id} done attempt {ctx.attempt} key {ctx.idempotency_key}")
    return f"order {order_id} settled"


@tool(side_effects=True, timeout=60, max_attempts=3)
def settle_sync(order_id: int, seconds: float, ctx: ToolContext) -> str:
    """Settle an order with the bank, blocking."""
    _log(f"settle {order_id} start attempt {ctx.attempt} key {ctx.idempotency_key}")
    time.sleep(seconds if ctx.attempt == 1 else 0)
    _log(f"settle {order_id} done attempt {ctx.attempt} key {ctx.idempotency_key}")
    return f"order {order_id} settled"


agents.append(
    Agent(
        "settling",
        instructions="You settle orders.",
        model="openai:scripted",
        tools=[settle, settle_sync],
        limits=Limits(tool_heartbeat_seconds=30, model_retry_initial_seconds=0.2),
    )
)
