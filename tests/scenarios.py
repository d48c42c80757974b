"""Recorded scenarios: run by the replay tests and by `python -m tests.record_histories`.

Each scenario is a script for the model server and a prompt; the golden histories
under tests/histories/ are these runs, recorded once and replayed in CI so a
change that breaks determinism for running agents fails the build.
"""

from __future__ import annotations

from dataclasses import dataclass

from ratchet import Agent, Limits, tool
from ratchet.testing import Step, call, error, reply, tool_calls


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


@dataclass(frozen=True)
class Scenario:
    name: str
    prompt: str
    steps: tuple[Step, ...]
    fails: bool = False


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
]
