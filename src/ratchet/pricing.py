"""Token prices, for the cost of each model call.

Cost is computed in the model activity from the worker's price table and recorded
in the event history with the call, so a run's cost never changes after the fact
(a later price change affects later calls only). Prices are USD per million tokens.
The defaults are list prices at the time of writing: pass your own (contract
prices, other providers) to :func:`ratchet.create_worker` (``prices=``).
"""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict

from .messages import Usage

__all__ = ["DEFAULT_PRICES", "Price", "cost_of"]


class Price(BaseModel):
    """USD per million tokens."""

    model_config = ConfigDict(frozen=True)

    input: float
    output: float


DEFAULT_PRICES: dict[str, Price] = {
    "openai:gpt-4o": Price(input=2.50, output=10.00),
    "openai:gpt-4o-mini": Price(input=0.15, output=0.60),
    "openai:gpt-4.1": Price(input=2.00, output=8.00),
    "openai:gpt-4.1-mini": Price(input=0.40, output=1.60),
    "openai:gpt-4.1-nano": Price(input=0.10, output=0.40),
}
"""Model string → price. ``local`` is always free."""


def cost_of(model: str, usage: Usage, prices: Mapping[str, Price]) -> float | None:
    """The USD cost of ``usage`` on ``model``; None when the model has no price."""
    if model == "local":
        return 0.0
    price = prices.get(model)
    if price is None:
        return None
    return (usage.input_tokens * price.input + usage.output_tokens * price.output) / 1_000_000
