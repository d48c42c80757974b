"""Agents of the eval tests: ``shop`` records runs with a real tool; ``shop-v2`` has new
instructions, and its tool raises if it is ever called (an eval case must replay the
recorded result instead). Worker subprocesses of the crash test host them too."""

from __future__ import annotations

import re

from ratchet import Agent, Limits, tool
from ratchet.testing import RecordedRequest, Step, call, reply, tool_calls


@tool
def lookup_order(order_id: int) -> str:
    """Look an order up."""
    return f"order {order_id}: shipped"


@tool(name="lookup_order")
def lookup_order_must_not_run(order_id: int) -> str:
    """Look an order up."""
    raise RuntimeError(f"the real tool ran in an eval (order {order_id})")


_LIMITS = Limits(model_heartbeat_seconds=2, model_retry_initial_seconds=0.2)

SHOP = Agent(
    "shop",
    instructions="shop v1: answer briefly.",
    model="openai:scripted",
    tools=[lookup_order],
    limits=_LIMITS,
)
SHOP_V2 = Agent(
    "shop-v2",
    instructions="shop v2: be warm.",
    model="openai:scripted",
    tools=[lookup_order_must_not_run],
    limits=_LIMITS,
)
agents = [SHOP, SHOP_V2]

SEEDED_REGRESSION = 7
"""shop-v2 answers this order badly."""
CALLS_ANOTHER_ORDER = 13
"""shop-v2 looks this order up under another number (no recorded result)."""


def shop_model(request: RecordedRequest) -> Step:
    """The scripted model of both agents, computed from the request (cases run at once).

    v1: looks the order up, then "Order N has shipped." v2: the same words for odd
    orders, warmer ones for even orders; a wrong answer for order 7; order 13 looked up
    as 1300.
    """
    messages = request.body["messages"]
    v2 = "shop v2" in str(messages[0]["content"])
    last = messages[-1]
    order = int(re.findall(r"\d+", next(m["content"] for m in messages if m["role"] == "user"))[0])
    if last["role"] == "user":
        asked = order * 100 if v2 and order == CALLS_ANOTHER_ORDER else order
        return tool_calls(call("lookup_order", {"order_id": asked}))
    if "no recorded result" in str(last["content"]):
        return reply(f"I could not look order {order} up.")
    if v2 and order == SEEDED_REGRESSION:
        return reply(f"Sorry, I cannot find order {order}.")
    if v2 and order % 2 == 0:
        return reply(f"Good news: order {order} has shipped!")
    return reply(f"Order {order} has shipped.")
