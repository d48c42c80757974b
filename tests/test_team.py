"""Sub-agents (child workflows) and handoffs, end to end on a real Temporal server and
the scripted model server (routed by the agent's instructions, as children run in
parallel)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from temporalio.client import Client, WorkflowExecutionStatus

from ratchet import (
    Agent,
    BudgetExceeded,
    ConfigError,
    Limits,
    PendingApproval,
    Policy,
    RunCancelled,
    require_approval,
    tool,
)
from ratchet.events import (
    BudgetDecision,
    HandedOff,
    ModelCallFinished,
    ModelCallStarted,
    ToolCallFinished,
    ToolCallStarted,
)
from ratchet.testing import (
    RecordedRequest,
    ScriptedModelServer,
    ScriptedUsage,
    Step,
    call,
    hang,
    reply,
    tool_calls,
)
from ratchet.trace import build_trace, render_trace

from .conftest import decoded_history_text, hosted
from .test_cli import address, ratchet

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
        trace = await build_trace(temporal_client, handle.id)
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
    # The parent's history holds the children's answers, not their model calls.
    parent_history = decoded_history_text(
        (await temporal_client.get_workflow_handle(handle.id).fetch_history()).to_json_dict()
    )
    assert "A is 1." in parent_history and "find A" in parent_history
    assert "alpha: look things up." not in parent_history  # the child's prompt is not here
    # The trace is the tree: each child's timeline under the call that started it.
    text = "\n".join(render_trace(trace))
    assert f"child run {handle.id}.turn1-tool0 · agent alpha" in text
    assert "    │ run " + f"{handle.id}.turn1-tool0 · agent alpha · completed" in text
    assert "2 sub-agent runs (in the tokens and cost)" in text
    assert trace.totals.input_tokens + trace.totals.output_tokens == result.usage.total_tokens


async def test_handoff_switches_instructions_and_tools_across_chat_and_continue_as_new(
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
            response = event.response if isinstance(event, ModelCallFinished) else None
            if response is not None and response.content == "Which order?":
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


def three_levels(prefix: str, top_limits: Limits) -> Agent:
    """``{prefix}top`` calls sub-agent ``{prefix}mid``, which calls ``{prefix}leaf``."""
    leaf = researcher(f"{prefix}leaf")
    mid = Agent(
        f"{prefix}mid",
        instructions=f"{prefix}mid: delegate.",
        model="openai:test",
        limits=FAST,
        tools=[leaf.as_tool(description="Dig deeper.")],
    )
    return Agent(
        f"{prefix}top",
        instructions=f"{prefix}top: delegate.",
        model="openai:test",
        limits=top_limits,
        tools=[mid.as_tool(description="Research.")],
    )


def usage(tokens: int) -> ScriptedUsage:
    return ScriptedUsage(prompt_tokens=tokens - 10, completion_tokens=10)


async def test_a_budget_spent_in_a_grandchild_stops_the_whole_tree_naming_the_spender(
    temporal_client: Client, model_server: ScriptedModelServer
) -> None:
    # The whole tree may spend 1,000 tokens; no child has a budget of its own.
    top = three_levels("", FAST.model_copy(update={"max_total_tokens": 1000}))
    model_server.handler = routed(
        {
            "top": [tool_calls(call("mid", {"input": "go"}), usage=usage(300))],
            "mid": [tool_calls(call("leaf", {"input": "deeper"}), usage=usage(300))],
            # 300 + 300 + 500 > 1,000: the leaf's next turn may not start.
            "leaf": [
                tool_calls(call("leaf_tool", {}), usage=usage(500)),
                reply("never sent"),
            ],
        }
    )
    async with hosted(temporal_client, [top], model_server) as client:
        handle = await client.start("top", "Research this.")
        with pytest.raises(BudgetExceeded) as caught:
            await handle.result()
        mid_id = f"{handle.id}.turn1-tool0"
        leaf_id = f"{mid_id}.turn1-tool0"
        leaf_status = await client.get(leaf_id).status()
        mid_status = await client.get(mid_id).status()
        top_status = await handle.status()
        events = [e async for e in handle.events(follow=False)]
    error = caught.value
    assert error.spent_by == leaf_id and error.budget == "max_total_tokens"
    assert leaf_id in str(error)
    assert len(model_server.requests) == 3  # the leaf's second call never went out
    # The leaf's budget was what the run above it had left: 1,000 - 300 - 300.
    assert leaf_status.state == "failed" and "max_total_tokens=400" in (leaf_status.error or "")
    assert mid_status.state == "failed" and "BudgetExceeded" in (mid_status.error or "")
    # What the tree spent rolled up, failures included.
    assert top_status.usage.total_tokens == 1100
    assert top_status.subagent_runs == 1
    stopped = [e for e in events if isinstance(e, BudgetDecision)]
    assert [(e.budget, e.decision, e.run_id) for e in stopped] == [
        ("max_total_tokens", "stopped", leaf_id)
    ]


async def test_cancelling_a_run_cancels_its_children_and_grandchildren(
    temporal_client: Client, model_server: ScriptedModelServer
) -> None:
    top = three_levels("c-", FAST)
    model_server.handler = routed(
        {
            "c-top": [tool_calls(call("c-mid", {"input": "go"}))],
            "c-mid": [tool_calls(call("c-leaf", {"input": "deeper"}))],
            "c-leaf": [hang(30)],
        }
    )
    async with hosted(temporal_client, [top], model_server) as client:
        handle = await client.start("c-top", "Research this.")
        await model_server.wait_for_requests_async(3, timeout=30)
        await handle.cancel()
        with pytest.raises(RunCancelled):
            await handle.result()
        mid_id = f"{handle.id}.turn1-tool0"
        leaf_id = f"{mid_id}.turn1-tool0"
        for run_id in (mid_id, leaf_id):
            described = await temporal_client.get_workflow_handle(run_id).describe()
            assert described.status == WorkflowExecutionStatus.CANCELED, run_id
    # The leaf's model call was cancelled too (the HTTP request was dropped).
    assert model_server.requests[2].client_disconnected


async def test_a_childs_pending_approval_names_its_parent(
    temporal_client: Client, model_server: ScriptedModelServer
) -> None:
    @tool(side_effects=True)
    def delete_file(path: str) -> str:
        """Delete a file.

        Args:
            path: which file.
        """
        return f"deleted {path}"

    careful = Agent(
        "careful",
        instructions="careful: clean up.",
        model="openai:test",
        limits=FAST,
        tools=[delete_file],
        policy=Policy(rules=[require_approval("delete_file")]),
    )
    boss = Agent(
        "boss",
        instructions="boss: delegate.",
        model="openai:test",
        limits=FAST,
        tools=[careful.as_tool(description="Cleans up.")],
    )
    model_server.handler = routed(
        {
            "boss": [tool_calls(call("careful", {"input": "delete /tmp/x"})), reply("Done.")],
            "careful": [
                tool_calls(call("delete_file", {"path": "/tmp/x"})),
                reply("Deleted /tmp/x."),
            ],
        }
    )
    async with hosted(temporal_client, [boss], model_server) as client:
        handle = await client.start("boss", "Clean up.")
        child_id = f"{handle.id}.turn1-tool0"
        waiting: list[tuple[str, PendingApproval]] = []
        for _ in range(200):
            waiting = [(r, p) for r, p in await client.pending() if r == child_id]
            if waiting:
                break
            await asyncio.sleep(0.05)
        assert [(p.tool, p.parent_run) for _, p in waiting] == [("delete_file", handle.id)]
        listed = await ratchet("pending", "--address", address(temporal_client))
        assert f"{child_id} (sub-agent run of {handle.id}) turn1-tool0: delete_file" in (
            listed.stdout
        ), listed.stdout
        await client.get(child_id).approve(waiting[0][1].call_id, approver="ann")
        result = await handle.result()
    assert result.output == "Done."


async def test_the_readme_triage_example_runs_end_to_end(
    temporal_client: Client, model_server: ScriptedModelServer
) -> None:
    from pathlib import Path

    from examples import triage as example

    source = (Path(example.__file__)).read_text()
    readme = (Path(example.__file__).parents[1] / "README.md").read_text()
    # The README shows the example's code as it is in the file.
    assert source[source.index("from ratchet import") :].strip() in readme
    model_server.handler = routed(
        {
            "Find out": [tool_calls(call("transfer_to_billing", {"reason": "double charge"}))],
            "You handle": [
                tool_calls(call("researcher", {"input": "Do we refund double charges?"})),
                tool_calls(call("refund", {"order_id": 5, "amount_usd": 20})),
                reply("I refunded the second $20 charge on order 5."),
            ],
            "Answer one": [reply("Yes: double charges are refunded in full.")],
        }
    )
    async with hosted(temporal_client, example.agents, model_server) as client:
        handle = await client.start(
            "triage", "I was charged twice for order 5", model="openai:test"
        )
        result = await handle.result()
        trace = await build_trace(temporal_client, handle.id)
    assert result.output == "I refunded the second $20 charge on order 5."
    text = "\n".join(render_trace(trace))
    assert "handoff triage → billing" in text
    assert f"child run {handle.id}.turn2-tool0 · agent researcher" in text
    assert "tool refund" in text and "refunded $20.00 on order 5" in text
    assert result.usage.requests == 5  # triage 1, billing 3, researcher 1


def test_team_configuration_errors_name_the_problem() -> None:
    helper = researcher("helper")
    with pytest.raises(ConfigError, match=r"helper.as_tool\(description=...\)"):
        Agent("a", instructions="x", tools=[helper])  # type: ignore[list-item]
    with pytest.raises(ConfigError, match="is not an agent"):
        Agent("a", instructions="x", handoffs=["helper"])  # type: ignore[list-item]
    with pytest.raises(ConfigError, match="describe what agent 'helper' does"):
        helper.as_tool(description=" ")
    with pytest.raises(ConfigError, match="two tools are named 'helper'"):
        Agent("a", instructions="x", tools=[helper.as_tool(description="d")] * 2)
    twin = researcher("helper")
    lead = Agent(
        "lead",
        instructions="x",
        tools=[helper.as_tool(description="d"), twin.as_tool(description="d", name="twin")],
    )
    with pytest.raises(ConfigError, match="two different agents are named 'helper'"):
        lead.reachable()
    # A policy may name a handoff or a sub-agent tool (e.g. to require approval).
    guarded = Agent(
        "guarded",
        instructions="x",
        tools=[helper.as_tool(description="d")],
        handoffs=[researcher("other")],
        policy=Policy(rules=[require_approval("helper"), require_approval("transfer_to_other")]),
    )
    spec = guarded.spec()
    assert [t.name for t in spec.tools] == ["helper", "transfer_to_other"]
    assert spec.tool("helper") is not None and spec.tool("helper").agent == "helper"  # type: ignore[union-attr]
    assert list(spec.team) == ["other"]
    # A handoff target runs under the run's limits.
    assert spec.member("other").limits == guarded.limits
