"""Sub-agents (child workflows) and handoffs, end to end on a real Temporal server and
the scripted model server (routed by the agent's instructions, as children run in
parallel)."""

from __future__ import annotations

from collections.abc import Callable

from temporalio.client import Client

from ratchet import Agent, Limits, tool
from ratchet.events import (
    HandedOff,
    ModelCallFinished,
    ModelCallStarted,
    ToolCallFinished,
    ToolCallStarted,
)
from ratchet.testing import RecordedRequest, ScriptedModelServer, Step, call, reply, tool_calls
from ratchet.trace import build_trace, render_trace

from .conftest import hosted

FAST = Limits(model_retry_initial_seconds=0.1, model_retry_max_seconds=0.5, max_turns=6)


def system_prompt(request: RecordedRequest) -> str:
    return str(request.body["messages"][0]["content"])


def tool_names(request: RecordedRequest) -> list[str]:
    return [t["function"]["name"] for t in request.body.get("tools", [])]


Script = dict[str, list[Step]]


def routed(script: Script) -> Callable[[RecordedRequest], Step]:
    """Answer each agent (known by the start of its instructions) from its own script,
    in order: sub-agents run in parallel, so one shared script would race."""
    queues = {key: list(steps) for key, steps in script.items()}

    def answer(request: RecordedRequest) -> Step:
        prompt = system_prompt(request)
        for key, steps in queues.items():
            if prompt.startswith(key):
                assert steps, f"agent {key!r} asked the model more often than scripted"
                return steps.pop(0)
        raise AssertionError(f"no script for instructions {prompt[:60]!r}")

    return answer


def researcher(name: str = "researcher") -> Agent:
    return Agent(name, instructions=f"{name}: look things up.", model="openai:test", limits=FAST)


async def test_parallel_sub_agents_run_as_child_workflows_and_roll_up_usage(
    temporal_client: Client, model_server: ScriptedModelServer
) -> None:
    alpha, beta = researcher("alpha"), researcher("beta")
    lead = Agent(
        "lead",
        instructions="lead: delegate research.",
        model="openai:test",
        limits=FAST,
        tools=[
            alpha.as_tool(description="Research A."),
            beta.as_tool(description="Research B."),
        ],
    )
    model_server.handler = routed(
        {
            "lead": [
                tool_calls(
                    call("alpha", {"input": "find A"}, id="c1"),
                    call("beta", {"input": "find B"}, id="c2"),
                ),
                reply("A and B found."),
            ],
            "alpha": [reply("A is 1.", delay=0.5)],
            "beta": [reply("B is 2.", delay=0.5)],
        }
    )
    async with hosted(temporal_client, [lead], model_server) as client:
        handle = await client.start("lead", "Research A and B.")
        result = await handle.result()
        events = [e async for e in handle.events(follow=False)]
        children = [e for e in events if isinstance(e, ToolCallStarted) and e.child_run_id]
        child_results = {}
        for started in children:
            assert started.child_run_id is not None
            child_results[started.agent] = await client.get(started.child_run_id).result()
    assert result.output == "A and B found."
    assert sorted(c.agent or "" for c in children) == ["alpha", "beta"]
    assert {c.child_run_id for c in children} == {
        f"{handle.id}.turn1-tool0",
        f"{handle.id}.turn1-tool1",
    }
    # The parent's usage is the sum over the tree: its own two calls and each child's one.
    lead_requests = [r for r in model_server.requests if system_prompt(r).startswith("lead")]
    own = sum(r.response["usage"]["total_tokens"] for r in lead_requests if r.response)
    assert result.usage.total_tokens == own + sum(
        r.usage.total_tokens for r in child_results.values()
    )
    assert all(r.usage.total_tokens > 0 for r in child_results.values())
    assert result.usage.requests == 4
    # Concurrent: each child answers after 0.5 s; both model calls overlapped.
    child_requests = [r for r in model_server.requests if not system_prompt(r).startswith("lead")]
    assert abs(child_requests[0].received_at - child_requests[1].received_at) < 0.45
    # The child's answer reached the parent's model as the tool result.
    last = lead_requests[-1].body["messages"]
    tool_messages = {m["tool_call_id"]: m["content"] for m in last if m["role"] == "tool"}
    assert tool_messages == {"c1": "A is 1.", "c2": "B is 2."}
    finished = [e for e in events if isinstance(e, ToolCallFinished) and e.child_run_id]
    assert sorted((e.tool, e.outcome, e.result) for e in finished) == [
        ("alpha", "completed", "A is 1."),
        ("beta", "completed", "B is 2."),
    ]


async def test_handoff_switches_instructions_tools_and_keeps_the_agent_across_chat_and_continue_as_new(
    temporal_client: Client, model_server: ScriptedModelServer
) -> None:
    @tool
    def refund(order_id: int) -> str:
        """Refund an order.

        Args:
            order_id: the order.
        """
        return f"refunded {order_id}"

    billing = Agent(
        "billing", instructions="billing: refunds.", model="openai:test", tools=[refund]
    )
    shipping = Agent("shipping", instructions="shipping: parcels.", model="openai:test")
    triage = Agent(
        "triage",
        instructions="triage: route the customer.",
        model="openai:test",
        handoffs=[billing, shipping],
        # Continue as new at the first quiet moment: the handoff must survive it.
        limits=Limits(continue_as_new_after_events=20, model_retry_initial_seconds=0.1),
    )
    model_server.handler = routed(
        {
            "triage": [tool_calls(call("transfer_to_billing", {"reason": "refund"}, id="h1"))],
            "billing": [
                reply("Which order?"),
                tool_calls(call("refund", {"order_id": 7}, id="r1")),
                reply("Order 7 is refunded."),
            ],
        }
    )
    async with hosted(temporal_client, [triage], model_server) as client:
        handle = await client.start("triage", "I want my money back.", chat=True)
        # The first answer ("Which order?") comes from billing, after the handoff.
        async for event in handle.events():
            if isinstance(event, ModelCallFinished) and event.response is not None:
                if event.response.content == "Which order?":
                    break
        reply_two = (await handle.send("Order 7, please.")).output
        await handle.end_chat()
        result = await handle.result()
        events = [e async for e in handle.events(follow=False)]
        status = await handle.status()
        trace = await build_trace(temporal_client, handle.id)
    assert reply_two == "Order 7 is refunded."
    assert result.output == "Order 7 is refunded."
    assert status.active_agent == "billing" and status.execution >= 2
    requests = model_server.requests
    # The first call is triage's: its instructions and its handoff tools.
    assert system_prompt(requests[0]) == "triage: route the customer."
    assert tool_names(requests[0]) == ["transfer_to_billing", "transfer_to_shipping"]
    # The next call is billing's: its instructions, its tools, the conversation so far.
    after = requests[1].body
    assert after["messages"][0] == {"role": "system", "content": "billing: refunds."}
    assert tool_names(requests[1]) == ["refund"]
    handed = [m for m in after["messages"] if m["role"] == "tool"]
    assert handed and handed[0]["tool_call_id"] == "h1"
    assert "billing" in handed[0]["content"]
    # After the chat message and a continue-as-new, billing still answers.
    for r in requests[2:]:
        assert system_prompt(r) == "billing: refunds." and tool_names(r) == ["refund"]
    handoffs = [e for e in events if isinstance(e, HandedOff)]
    assert [(h.from_agent, h.to_agent, h.turn, h.call_id) for h in handoffs] == [
        ("triage", "billing", 1, "h1")
    ]
    starts = [e for e in events if isinstance(e, ModelCallStarted)]
    assert starts[1].messages[0].content == "billing: refunds."
    assert [t.name for t in starts[1].tools] == ["refund"]
    assert any("handoff triage → billing" in line for line in render_trace(trace))
