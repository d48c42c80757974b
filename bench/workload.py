"""The one workload every implementation runs: 3 turns, 2 tool calls, a final answer.

Turn 1: the model calls ``lookup_order``; turn 2: it calls ``shipping_eta``; turn 3:
it answers. The scripted model server decides the turn from the number of tool
messages in the request, so any number of concurrent runs get the same answers.
The tools are the same two ``async`` functions in every implementation; they do
no I/O and return the same JSON text.
"""

from __future__ import annotations

import json
import os
from typing import Any

from temporalio import workflow

MODEL = "bench-model"
"""The model name every implementation sends (the scripted server echoes it)."""
API_KEY = "sk-bench-loopback"
INSTRUCTIONS = "You are the support agent of an online shop. Use the tools, then answer briefly."
PROMPT = "Has order 1042 shipped, and when will it arrive?"
FINAL_ANSWER = "Order 1042 shipped on 2024-05-02 with DHL and arrives on 2024-05-06."
STEPS_PER_RUN = 5
"""3 model calls + 2 tool calls."""
TOOL_NAMES = ("lookup_order", "shipping_eta")


async def lookup_order(order_id: int) -> str:
    """Get the status and carrier of an order.

    Args:
        order_id: the order number, e.g. 1042.
    """
    return json.dumps(
        {"order_id": order_id, "status": "shipped", "carrier": "DHL", "shipped": "2024-05-02"}
    )


async def shipping_eta(order_id: int) -> str:
    """Get the expected delivery date of a shipped order.

    Args:
        order_id: the order number, e.g. 1042.
    """
    return json.dumps({"order_id": order_id, "eta": "2024-05-06"})


TOOLS = {"lookup_order": lookup_order, "shipping_eta": shipping_eta}

# The JSON schema the hand-written implementations (a) and (b) send; the frameworks
# derive theirs from the functions' signatures and docstrings.
_ORDER_ID = {
    "type": "object",
    "properties": {"order_id": {"type": "integer", "description": "the order number, e.g. 1042."}},
    "required": ["order_id"],
}
OPENAI_TOOLS: list[dict[str, Any]] = [
    {
        "type": "function",
        "function": {
            "name": "lookup_order",
            "description": "Get the status and carrier of an order.",
            "parameters": _ORDER_ID,
        },
    },
    {
        "type": "function",
        "function": {
            "name": "shipping_eta",
            "description": "Get the expected delivery date of a shipped order.",
            "parameters": _ORDER_ID,
        },
    },
]


def first_messages() -> list[dict[str, Any]]:
    return [
        {"role": "system", "content": INSTRUCTIONS},
        {"role": "user", "content": PROMPT},
    ]


def assistant_message(message: Any) -> dict[str, Any]:
    """An openai ``ChatCompletionMessage`` as the dict to send back in the next request."""
    out: dict[str, Any] = {"role": "assistant", "content": message.content}
    if message.tool_calls:
        out["tool_calls"] = [
            {
                "id": c.id,
                "type": "function",
                "function": {"name": c.function.name, "arguments": c.function.arguments},
            }
            for c in message.tool_calls
        ]
    return out


async def run_tool_call(name: str, arguments: str) -> str:
    """Run one tool call of the hand-written implementations."""
    return await TOOLS[name](**json.loads(arguments))


WORKER_OPTIONS: dict[str, Any] = {
    # Temporal's defaults otherwise (100 workflow-task, activity and local-activity slots):
    # they are the back-pressure every deployment starts with. The cache is raised from
    # 1000 so that all 1000 parked runs stay in the worker's memory.
    "max_cached_workflows": 2000,
}
"""Worker settings shared by every Temporal implementation (the frameworks add their own)."""

CACHE_ENV = "BENCH_MAX_CACHED_WORKFLOWS"
"""Set by ``python -m bench.worker --max-cached-workflows``: a number, or ``default``."""


def worker_options() -> dict[str, Any]:
    """:data:`WORKER_OPTIONS`, with the cache size this worker process was started with:
    ``default`` leaves Temporal's own (1000 runs), as a deployment that sets nothing."""
    options = dict(WORKER_OPTIONS)
    cache = os.environ.get(CACHE_ENV)
    if cache == "default":
        del options["max_cached_workflows"]
    elif cache:
        options["max_cached_workflows"] = int(cache)
    return options


class ParkableWorkflow:
    """Base of the workflow implementations: the ``approve`` signal releases a parked run.

    A parked run (the memory-per-parked-run figure) waits in its first tool call until
    this signal arrives.
    """

    def __init__(self) -> None:
        self.approved = False

    @workflow.signal(name="approve")
    def approve(self) -> None:
        self.approved = True
