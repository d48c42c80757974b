"""The agent ``scripts/soak.py`` runs: ``scripts.chaos_app``'s refunds agent, tuned for faults.

Same name, instructions and side-effecting ``refund_order`` tool as the chaos
agent (so the soak's checks are the chaos run's), but a 5 s model call timeout:
the soak's model hangs now and then, and a hung call must be cut and retried
quickly instead of holding a run for the chaos agent's 20 s.
"""

from __future__ import annotations

from ratchet import Agent, Limits
from scripts.chaos_app import INSTRUCTIONS, refund_order

agent = Agent(
    "chaos",
    instructions=INSTRUCTIONS,
    model="openai:chaos",
    tools=[refund_order],
    limits=Limits(
        max_turns=4,
        model_heartbeat_seconds=2,
        tool_heartbeat_seconds=2,
        model_timeout_seconds=5,
        # Generous: a run may meet a kill, a server restart and a model fault in one
        # call; the soak checks correctness under faults, not the retry budget.
        model_max_attempts=30,
        model_retry_initial_seconds=0.2,
        model_retry_max_seconds=2,
    ),
)
