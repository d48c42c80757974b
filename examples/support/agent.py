"""A customer-support agent over a real SQLite database: the demo that `make demo` runs."""

from __future__ import annotations

import contextlib
from typing import Any

from ratchet import Agent, Limits, ToolContext, tool

from . import db


@tool
def order_status(order_id: int) -> dict[str, Any]:
    """Get the status and delivery of an order.

    Args:
        order_id: the order number, e.g. 1042.
    """
    with contextlib.closing(db.connect()) as conn, conn:
        row = conn.execute("SELECT * FROM orders WHERE id = ?", (order_id,)).fetchone()
    if row is None:
        raise LookupError(f"there is no order {order_id}")
    return dict(row)


@tool(side_effects=True)
def refund_order(order_id: int, ctx: ToolContext) -> str:
    """Refund an order: use it when the customer asks for a refund.

    Args:
        order_id: the order number to refund.
    """
    with contextlib.closing(db.connect()) as conn, conn:
        order = conn.execute("SELECT total FROM orders WHERE id = ?", (order_id,)).fetchone()
        if order is None:
            raise LookupError(f"there is no order {order_id}")
        # The idempotency key is stable across retries of this call, so a retry after a
        # crash finds the row it already wrote instead of refunding twice.
        conn.execute(
            "INSERT OR IGNORE INTO refunds (idempotency_key, order_id, amount) VALUES (?, ?, ?)",
            (ctx.idempotency_key, order_id, order["total"]),
        )
        refund = conn.execute(
            "SELECT id, amount FROM refunds WHERE idempotency_key = ?", (ctx.idempotency_key,)
        ).fetchone()
    return f"Refunded ${refund['amount']:.2f} for order {order_id} (refund #{refund['id']})."


INSTRUCTIONS = (
    "You are the support agent of an online shop. "
    "Use a tool, then answer the customer in one short sentence."
)

agent = Agent(
    "support",
    instructions=INSTRUCTIONS,
    model="local",
    tools=[order_status, refund_order],
    limits=Limits(max_turns=6),
    max_tokens=200,
    temperature=0.0,
)
