"""The agent that ``scripts/chaos.py`` runs in worker processes it keeps killing.

One agent, ``chaos``, with one side-effecting tool, ``refund_order``. The tool
writes a refund row to the shop database of ``examples.support.db`` (the file
named by ``$SUPPORT_DB``), deduplicated by ``ctx.idempotency_key``, then stalls
for a moment *after* the write: a ``kill -9`` landing there is the worst case,
the refund is applied but the activity never reports it, so Temporal runs the
tool again and only the idempotency key stands between the customer and a
second refund.

Its answer depends only on the order (never on the refund row id or the
idempotency key), so a run's transcript is the same with or without faults.

Each attempt appends one line to ``$CHAOS_TOOL_LOG``:
``<order_id> <attempt> <new|dup> <pid> <idempotency_key>``; ``dup`` means the
attempt found the row an earlier, killed attempt had written.
"""

from __future__ import annotations

import contextlib
import os
import random
import time
from pathlib import Path

from examples.support import db
from ratchet import Agent, Limits, ToolContext, tool

INSTRUCTIONS = "You are the refunds agent of an online shop. Refund the order you are asked to."


def _log(line: str) -> None:
    path = os.environ.get("CHAOS_TOOL_LOG")
    if not path:
        return
    with Path(path).open("a") as f:
        f.write(line + "\n")
        f.flush()
        os.fsync(f.fileno())


@tool(side_effects=True, timeout=20, max_attempts=20)
def refund_order(order_id: int, ctx: ToolContext) -> str:
    """Refund an order.

    Args:
        order_id: the order number to refund.
    """
    with contextlib.closing(db.connect()) as conn:
        order = conn.execute("SELECT total FROM orders WHERE id = ?", (order_id,)).fetchone()
        if order is None:
            raise LookupError(f"there is no order {order_id}")
        cursor = conn.execute(
            "INSERT OR IGNORE INTO refunds (idempotency_key, order_id, amount) VALUES (?, ?, ?)",
            (ctx.idempotency_key, order_id, order["total"]),
        )
        conn.commit()
        new = cursor.rowcount == 1
    _log(f"{order_id} {ctx.attempt} {'new' if new else 'dup'} {os.getpid()} {ctx.idempotency_key}")
    # The refund is applied; now "wait for the payment provider". Dying here means
    # the next attempt must find the row instead of refunding again.
    time.sleep(random.uniform(0.2, 0.5))
    return f"Refunded ${order['total']:.2f} for order {order_id}."


agent = Agent(
    "chaos",
    instructions=INSTRUCTIONS,
    model="openai:chaos",
    tools=[refund_order],
    # Short heartbeats so a killed worker's calls move on quickly; retry budgets
    # large enough that a run hit by many kills still completes: the chaos run
    # checks correctness under faults, not the size of the retry budget.
    limits=Limits(
        max_turns=4,
        model_heartbeat_seconds=2,
        tool_heartbeat_seconds=2,
        model_timeout_seconds=20,
        model_max_attempts=20,
        model_retry_initial_seconds=0.2,
        model_retry_max_seconds=2,
    ),
)
