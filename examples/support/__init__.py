"""The demo customer-support agent (``ratchet worker --app examples.support:agent``)."""

from .agent import agent, order_status, refund_order

__all__ = ["agent", "order_status", "refund_order"]
