"""The README's multi-agent example: a triage agent hands the customer to billing or
shipping; billing asks a research sub-agent (a child workflow) before it answers.

Run a worker for it with ``ratchet worker --app examples.triage:agents``, then
``ratchet run triage "I was charged twice for order 5"``.
"""

from ratchet import Agent, Handoff, Limits, tool


@tool
def refund(order_id: int, amount_usd: float) -> str:
    """Refund part of an order.

    Args:
        order_id: the order.
        amount_usd: how much to give back.
    """
    return f"refunded ${amount_usd:.2f} on order {order_id}"


researcher = Agent(
    "researcher",
    instructions="Answer one question about our policies, in two sentences.",
)
billing = Agent(
    "billing",
    instructions="You handle charges and refunds. Check the policy before refunding.",
    tools=[
        refund,
        researcher.as_tool(description="Looks up a policy question; give it the question."),
    ],
)
shipping = Agent("shipping", instructions="You track parcels and fix addresses.")
triage = Agent(
    "triage",
    instructions="Find out what the customer needs and hand them to the right team.",
    handoffs=[billing, Handoff(shipping, description="Parcels, delivery, addresses.")],
    # The run's budgets cover the whole tree: handoffs and sub-agents included.
    limits=Limits(max_total_tokens=50_000, max_turns=8),
)

agents = [triage]  # billing, shipping and researcher are hosted with it
