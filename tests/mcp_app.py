"""The agents the MCP server tests serve (``--app tests.mcp_app:agents``): the HTTP API
tests' ``helper`` and ``guarded``, and ``tracker``, whose answer is a ``Shipment``."""

from __future__ import annotations

from pydantic import BaseModel

from ratchet import Agent, Limits

from .http_kit import agents as http_agents


class Shipment(BaseModel):
    """Where an order is."""

    order_id: int
    status: str


def agents() -> list[Agent]:
    return [
        *http_agents(),
        Agent(
            "tracker",
            instructions="Report an order's shipment.",
            model="openai:gpt-4o-mini",
            output_type=Shipment,
            # One invalid answer fails the run: a failed run, cheaply.
            limits=Limits(model_retry_initial_seconds=0.1, max_repair_turns=0),
        ),
    ]
