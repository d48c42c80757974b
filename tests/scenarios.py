"""Recorded scenarios: run by the replay tests and by `python -m tests.record_histories`.

Each scenario is a script for the model server and a prompt; the golden histories
under tests/histories/ are these runs, recorded once and replayed in CI so a
change that breaks determinism for running agents fails the build.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel

from ratchet import Agent, Limits, OutputRejected, Policy, RunHandle, require_approval, tool
from ratchet._tool_fixtures import RecordedToolCall, ToolFixtures
from ratchet.mcp import MCPServer
from ratchet.output import OUTPUT_TOOL
from ratchet.testing import Step, call, context_too_long, error, reply, tool_calls


@tool
def lookup_order(order_id: int) -> dict[str, object]:
    """Look up an order.

    Args:
        order_id: the order number.
    """
    return {"id": order_id, "status": "shipped"}


@tool
def broken(x: int) -> str:
    """Always fails."""
    raise ValueError("broken tool")


AGENT = Agent(
    "golden",
    instructions="You are a support agent.",
    model="openai:gpt-test",
    tools=[lookup_order, broken],
    limits=Limits(model_retry_initial_seconds=0.1, max_turns=6, max_repair_turns=1),
)


GUARDED = Agent(
    "golden-guarded",
    instructions="You are a support agent.",
    model="openai:gpt-test",
    tools=[lookup_order],
    policy=Policy(rules=[require_approval("lookup_order", reason="golden")]),
    limits=Limits(model_retry_initial_seconds=0.1, approval_timeout_seconds=1.0),
)


@tool
def cancel_order(order_id: int) -> str:
    """Cancel an order.

    Args:
        order_id: the order number.
    """
    return f"order {order_id} cancelled"


# Continues as new every ~20 events, so short scenarios cross several executions.
LONG = Agent(
    "golden-long",
    instructions="You are a support agent.",
    model="openai:gpt-test",
    tools=[lookup_order, cancel_order],
    policy=Policy(rules=[require_approval("cancel_order", reason="golden")]),
    limits=Limits(model_retry_initial_seconds=0.1, continue_as_new_after_events=20, max_turns=12),
)

# One run at a time, and continues as new: the slot is carried across executions.
CAPPED = Agent(
    "golden-capped",
    instructions="You are a support agent.",
    model="openai:gpt-test",
    tools=[lookup_order],
    max_concurrent_runs=1,
    limits=Limits(model_retry_initial_seconds=0.1, continue_as_new_after_events=20, max_turns=12),
)

# A spent budget asks a person (on_budget="ask"): one turn, then a decision.
ASKING = Agent(
    "golden-asking",
    instructions="You are a support agent.",
    model="openai:gpt-test",
    tools=[lookup_order],
    limits=Limits(model_retry_initial_seconds=0.1, max_turns=1, on_budget="ask"),
)

SUMMARIZING = Agent(
    "golden-summarizing",
    instructions="You are a support agent.",
    model="openai:gpt-test",
    tools=[lookup_order],
    limits=Limits(model_retry_initial_seconds=0.1, context_strategy="summarize"),
)


class Shipment(BaseModel):
    """Where an order is."""

    order_id: int
    shipped: bool


def known_order(shipment: Shipment) -> None:
    """An output validator: only the order the golden runs look up exists."""
    if shipment.order_id != 5:
        raise OutputRejected(f"there is no order {shipment.order_id}")


# Structured output: answers a Shipment through the final_result tool, checked by a validator.
STRUCTURED = Agent(
    "golden-structured",
    instructions="You are a support agent.",
    model="openai:gpt-test",
    tools=[lookup_order],
    output_type=Shipment,
    output_validators=[known_order],
    limits=Limits(model_retry_initial_seconds=0.1),
)


TEAM_RESEARCHER = Agent(
    "golden-researcher",
    instructions="You research one question.",
    model="openai:gpt-test",
    limits=Limits(model_retry_initial_seconds=0.1),
)
TEAM_BILLING = Agent(
    "golden-billing",
    instructions="You handle billing.",
    model="openai:gpt-test",
    tools=[lookup_order],
    limits=Limits(model_retry_initial_seconds=0.1),
)
TEAM = Agent(
    "golden-triage",
    instructions="You route the customer.",
    model="openai:gpt-test",
    tools=[TEAM_RESEARCHER.as_tool(name="research", description="Researches one question.")],
    handoffs=[TEAM_BILLING],
    limits=Limits(model_retry_initial_seconds=0.1, max_total_tokens=100_000),
)


MCP_AGENT = Agent(
    "golden-mcp",
    instructions="You use the tools of an MCP server.",
    model="openai:gpt-test",
    tools=[
        MCPServer.stdio(
            sys.executable,
            ["-m", "tests.mcp_faulty"],
            name="faulty",
            cwd=Path(__file__).parents[1],
            allow=["lookup", "refuse"],
        )
    ],
    limits=Limits(model_retry_initial_seconds=0.1),
)


async def _until(check: Callable[[], Awaitable[bool]]) -> None:
    for _ in range(300):
        if await check():
            return
        await asyncio.sleep(0.05)
    raise TimeoutError("scenario condition not reached")


async def _approve(handle: RunHandle) -> None:
    await _until(lambda: _has_pending(handle))
    await handle.approve("turn1-tool0", approver="golden-approver", reason="fine")


async def _cancel_while_waiting(handle: RunHandle) -> None:
    await _until(lambda: _has_pending(handle))
    await handle.cancel()


async def _chat(handle: RunHandle) -> None:
    async def waiting() -> bool:
        return (await handle.status()).state == "waiting-input"

    await _until(waiting)
    await handle.send("and one more thing")
    await handle.end_chat()


async def _approve_any(handle: RunHandle) -> None:
    await _until(lambda: _has_pending(handle))
    [waiting] = await handle.pending()
    await handle.approve(waiting.call_id, approver="golden-approver", reason="fine")


async def _raise_budget(handle: RunHandle) -> None:
    await _until(lambda: _has_pending(handle))
    [waiting] = await handle.pending()
    await handle.approve(waiting.call_id, approver="golden-approver", raise_to=3)


async def _has_pending(handle: RunHandle) -> bool:
    try:
        return bool(await handle.pending())
    except Exception:  # between two executions of a run that continues as new
        return False


@dataclass(frozen=True)
class Scenario:
    name: str
    prompt: str
    steps: tuple[Step, ...]
    fails: bool = False
    agent: Agent = AGENT
    chat: bool = False
    drive: Callable[[RunHandle], Awaitable[None]] | None = None
    """Steers the run while it is live (approvals, chat messages, cancellation)."""
    fork_at: str | None = None
    """Record a fork (``AgentClient.fork``): the run starts as ``NAME-parent`` and
    ``NAME`` is its fork at this step (the steps script both)."""
    fork_edit: str | None = None
    """The fork's edited user message."""
    fixtures: ToolFixtures | None = None
    """An eval case's run: its tool calls are answered from these recorded results."""


SCENARIOS = [
    Scenario(
        "tool_then_answer",
        "Where is order 1042?",
        (tool_calls(call("lookup_order", {"order_id": 1042})), reply("It has shipped.")),
    ),
    Scenario(
        "parallel_tools_and_retry",
        "Orders 1 and 2?",
        (
            error(503),
            tool_calls(
                call("lookup_order", {"order_id": 1}), call("lookup_order", {"order_id": 2})
            ),
            reply("Both shipped."),
        ),
    ),
    Scenario(
        "repair_and_tool_error",
        "Try things",
        (
            tool_calls(call("lookup_order", '{"order_id": ')),
            tool_calls(call("broken", {"x": 1})),
            reply("Done."),
        ),
    ),
    Scenario(
        "repair_limit",
        "Loop",
        (tool_calls(call("nope", {})), tool_calls(call("nope", {}))),
        fails=True,
    ),
    Scenario(
        "approval_approved",
        "Look up order 1",
        (tool_calls(call("lookup_order", {"order_id": 1})), reply("Order 1 shipped.")),
        agent=GUARDED,
        drive=_approve,
    ),
    Scenario(
        "approval_timed_out",
        "Look up order 2",
        (tool_calls(call("lookup_order", {"order_id": 2})), reply("Nobody approved.")),
        agent=GUARDED,
    ),
    Scenario(
        "cancelled_while_waiting",
        "Look up order 3",
        (tool_calls(call("lookup_order", {"order_id": 3})),),
        agent=GUARDED,
        drive=_cancel_while_waiting,
        fails=True,
    ),
    Scenario(
        "chat_two_messages",
        "hello",
        (reply("Hi!"), reply("Sure.")),
        chat=True,
        drive=_chat,
    ),
    Scenario(
        "continued_as_new_with_approval",
        "Check orders, then cancel order 9",
        (
            tool_calls(call("lookup_order", {"order_id": 1})),
            tool_calls(call("lookup_order", {"order_id": 2})),
            tool_calls(call("cancel_order", {"order_id": 9})),
            tool_calls(call("lookup_order", {"order_id": 3})),
            reply("Checked and cancelled."),
        ),
        agent=LONG,
        drive=_approve_any,
    ),
    Scenario(
        "context_drop_oldest",
        "Orders 1 to 3?",
        (
            tool_calls(call("lookup_order", {"order_id": 1})),
            tool_calls(call("lookup_order", {"order_id": 2})),
            tool_calls(call("lookup_order", {"order_id": 3})),
            context_too_long(max_tokens=100),
            reply("All shipped."),
        ),
    ),
    Scenario(
        "context_summarize",
        "Orders 1 to 3?",
        (
            tool_calls(call("lookup_order", {"order_id": 1})),
            tool_calls(call("lookup_order", {"order_id": 2})),
            tool_calls(call("lookup_order", {"order_id": 3})),
            context_too_long(max_tokens=100),
            reply("Orders 1 and 2 shipped."),
            reply("All shipped."),
        ),
        agent=SUMMARIZING,
    ),
    Scenario(
        "capped_continued_as_new",
        "Check orders 1 to 4",
        (
            *(tool_calls(call("lookup_order", {"order_id": n})) for n in range(1, 5)),
            reply("All four shipped."),
        ),
        agent=CAPPED,
    ),
    Scenario(
        "structured_output",
        "Has order 5 shipped?",
        (
            tool_calls(call("lookup_order", {"order_id": 5})),
            # Invalid JSON, then an answer the validator rejects, then the right one.
            tool_calls(call(OUTPUT_TOOL, '{"order_id": 5, "shipped": tr')),
            tool_calls(call(OUTPUT_TOOL, {"order_id": 6, "shipped": True})),
            tool_calls(call(OUTPUT_TOOL, {"order_id": 5, "shipped": True})),
        ),
        agent=STRUCTURED,
    ),
    Scenario(
        "budget_raised",
        "Where is order 5?",
        (tool_calls(call("lookup_order", {"order_id": 5})), reply("It has shipped.")),
        agent=ASKING,
        drive=_raise_budget,
    ),
    Scenario(
        "team_handoff",
        "Why was I charged twice for order 5?",
        (
            # Two sub-agent runs in parallel (child workflows), then a handoff.
            tool_calls(
                call("research", {"input": "charges on order 5"}),
                call("research", {"input": "refund policy"}),
            ),
            reply("Order 5 was charged twice."),
            reply("Double charges are refunded."),
            tool_calls(call("transfer_to_golden-billing", {"reason": "refund"})),
            reply("I refunded the second charge of order 5."),
        ),
        agent=TEAM,
    ),
    Scenario(
        "forked_with_an_edited_message",
        "Where is order 1042?",
        (
            tool_calls(call("lookup_order", {"order_id": 1042})),
            reply("It has shipped."),
            tool_calls(call("lookup_order", {"order_id": 7})),
            reply("Order 7 has shipped too."),
        ),
        fork_at="msg:1",
        fork_edit="Where is order 7?",
    ),
    Scenario(
        "mcp_tools",
        "Is order 5 shipped? And cancel order 6.",
        (
            tool_calls(
                call("lookup", {"order_id": 5}),
                call("refuse", {"reason": "order 6 cannot be cancelled"}),
            ),
            reply("Order 5 shipped; order 6 cannot be cancelled."),
        ),
        agent=MCP_AGENT,
    ),
    Scenario(
        "eval_replay",
        "Where are orders 1042 and 7?",
        (
            tool_calls(
                call("lookup_order", {"order_id": 1042}), call("lookup_order", {"order_id": 7})
            ),
            reply("Order 1042 has shipped; I could not look order 7 up."),
        ),
        # Order 1042's result is replayed; order 7 has none recorded: an error, no tool.
        fixtures=ToolFixtures(
            calls=[
                RecordedToolCall(
                    tool="lookup_order",
                    arguments={"order_id": 1042},
                    content='{"order_id": 1042, "status": "shipped"}',
                )
            ],
            source_run="tool_then_answer",
        ),
    ),
]

PRE_PATCH_SCENARIOS = {
    "tool_then_answer",
    "parallel_tools_and_retry",
    "repair_and_tool_error",
    "repair_limit",
}
"""The scenarios recorded before the local-snapshot patch (tests/histories/pre-patch)."""

PRE_LINEAR_SCENARIOS = {
    "tool_then_answer",
    "parallel_tools_and_retry",
    "repair_and_tool_error",
    "repair_limit",
    "approval_approved",
    "approval_timed_out",
    "cancelled_while_waiting",
    "chat_two_messages",
}
"""The scenarios recorded before linear history (tests/histories/pre-linear): each model
call carried the whole transcript."""
