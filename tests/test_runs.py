"""The agent loop against a real Temporal server and the real openai client over HTTP."""

from __future__ import annotations

import asyncio
import time

import pytest
from temporalio.client import Client

from ratchet import Agent, BudgetExceeded, Limits, RunFailed, tool
from ratchet.testing import ScriptedModelServer, call, error, hang, reply, tool_calls

from .conftest import API_KEY, decoded_history_text, eventually, hosted

FAST = Limits(model_retry_initial_seconds=0.1, model_retry_max_seconds=0.5, max_turns=5)
order_lookups: list[int] = []


@tool
def lookup_order(order_id: int) -> dict[str, object]:
    """Look up an order.

    Args:
        order_id: the order number.
    """
    order_lookups.append(order_id)
    return {"id": order_id, "status": "shipped"}


@tool
def flaky_inventory(sku: str) -> str:
    """Check stock for a SKU."""
    raise ValueError(f"inventory database locked while reading {sku}")


@tool(fatal=True)
def ledger(entry: str) -> str:
    """Write to the ledger; a failure here must stop the run."""
    raise RuntimeError("ledger is read-only")


def support_agent(**kw: object) -> Agent:
    return Agent(
        "support",
        instructions="You are a support agent.",
        model="openai:gpt-test",
        tools=[lookup_order, flaky_inventory, ledger],
        limits=kw.pop("limits", FAST),  # type: ignore[arg-type]
        **kw,  # type: ignore[arg-type]
    )


def last_tool_message(content_part: str):  # type: ignore[no-untyped-def]
    """An expectation: the request's last message is a tool message containing the text."""

    def check(req) -> None:  # type: ignore[no-untyped-def]
        last = req.messages[-1]
        assert last["role"] == "tool", last
        assert content_part in last["content"], last["content"]

    return check


async def test_happy_path(temporal_client: Client, model_server: ScriptedModelServer) -> None:
    model_server.add(
        tool_calls(call("lookup_order", {"order_id": 1042})),
        reply("Order 1042 has shipped.").expecting(last_tool_message('"status": "shipped"')),
    )
    async with hosted(temporal_client, [support_agent()], model_server) as client:
        result = await client.run("support", "Where is order 1042?")
        assert result.output == "Order 1042 has shipped."
        assert result.turns == 2
        assert result.tool_calls == 1
        assert result.usage.requests == 2 and result.usage.input_tokens > 0
    model_server.verify()
    first = model_server.requests[0]
    assert first.messages[0] == {"role": "system", "content": "You are a support agent."}
    assert first.messages[1] == {"role": "user", "content": "Where is order 1042?"}
    assert first.model == "gpt-test"
    assert {"lookup_order", "flaky_inventory", "ledger"} == set(first.tool_names)
    assert first.api_key == API_KEY


async def test_transcript_and_status_queries(
    temporal_client: Client, model_server: ScriptedModelServer
) -> None:
    model_server.add(tool_calls(call("lookup_order", {"order_id": 7})), reply("done"))
    async with hosted(temporal_client, [support_agent()], model_server) as client:
        handle = await client.start("support", "order 7?")
        seen = [m async for m in handle.follow()]
        await handle.result()
        transcript = await handle.transcript()
        status = await handle.status()
    assert [m.role for m in transcript] == ["system", "user", "assistant", "tool", "assistant"]
    assert seen == transcript
    assert transcript[2].tool_calls and transcript[2].tool_calls[0].name == "lookup_order"
    assert status.state == "completed" and status.output == "done" and status.turn == 2


async def test_parallel_tool_calls(
    temporal_client: Client, model_server: ScriptedModelServer
) -> None:
    spans: dict[str, tuple[float, float]] = {}

    @tool
    async def slow_check(name: str) -> str:
        """A slow check."""
        start = time.monotonic()
        await asyncio.sleep(1.0)
        spans[name] = (start, time.monotonic())
        return f"{name} ok"

    agent = Agent("parallel", instructions="x", model="openai:m", tools=[slow_check], limits=FAST)
    model_server.add(
        tool_calls(call("slow_check", {"name": "a"}), call("slow_check", {"name": "b"})),
        reply("both ok").expecting(
            lambda r: [m["content"] for m in r.messages[-2:]] == ["a ok", "b ok"]
        ),
    )
    async with hosted(temporal_client, [agent], model_server) as client:
        result = await client.run("parallel", "check a and b")
    model_server.verify()
    assert result.output == "both ok"
    (a_start, a_end), (b_start, b_end) = spans["a"], spans["b"]
    assert a_start < b_end and b_start < a_end, "the two tool calls did not overlap"


async def test_retry_on_503(temporal_client: Client, model_server: ScriptedModelServer) -> None:
    model_server.add(error(503), error(503), reply("recovered"))
    async with hosted(temporal_client, [support_agent()], model_server) as client:
        result = await client.run("support", "hi")
    model_server.verify()
    assert result.output == "recovered"
    assert len(model_server.requests) == 3


async def test_429_honours_retry_after(
    temporal_client: Client, model_server: ScriptedModelServer
) -> None:
    # The retry policy alone would retry after 0.1 s; Retry-After asks for 2 s.
    model_server.add(error(429, headers={"Retry-After": "2"}), reply("after the wait"))
    async with hosted(temporal_client, [support_agent()], model_server) as client:
        result = await client.run("support", "hi")
    model_server.verify()
    assert result.output == "after the wait"
    first, second = model_server.requests
    assert second.received_at - first.received_at >= 1.9


async def test_401_fails_fast_with_clear_error(
    temporal_client: Client, model_server: ScriptedModelServer
) -> None:
    model_server.add(error(401, message="Incorrect API key provided"))
    async with hosted(temporal_client, [support_agent()], model_server) as client:
        with pytest.raises(RunFailed) as info:
            await client.run("support", "hi")
    assert info.value.error_type == "ModelAuthError"
    assert "Incorrect API key provided" in str(info.value)
    assert len(model_server.requests) == 1, "a 401 must not be retried"


async def test_bad_arguments_are_repaired_by_the_model(
    temporal_client: Client, model_server: ScriptedModelServer
) -> None:
    order_lookups.clear()
    model_server.add(
        tool_calls(call("lookup_order", {"order_id": "not-a-number"})),
        tool_calls(call("lookup_order", '{"order_id": 10')).expecting(
            last_tool_message("invalid arguments for 'lookup_order'")
        ),
        tool_calls(call("lookup_ordr", {"order_id": 10})).expecting(
            last_tool_message("not valid JSON")
        ),
        tool_calls(call("lookup_order", {"order_id": 10})).expecting(
            last_tool_message("unknown tool 'lookup_ordr'")
        ),
        reply("fixed").expecting(last_tool_message('"id": 10')),
    )
    limits = Limits(max_turns=6, max_repair_turns=3, model_retry_initial_seconds=0.1)
    async with hosted(temporal_client, [support_agent(limits=limits)], model_server) as client:
        result = await client.run("support", "order 10?")
    model_server.verify()
    assert result.output == "fixed"
    assert order_lookups == [10], "invalid calls must never reach the tool"


async def test_repair_limit_fails_the_run_with_a_typed_error(
    temporal_client: Client, model_server: ScriptedModelServer
) -> None:
    model_server.add(*[tool_calls(call("nope", {})) for _ in range(3)])
    limits = Limits(max_turns=10, max_repair_turns=2)
    async with hosted(temporal_client, [support_agent(limits=limits)], model_server) as client:
        with pytest.raises(RunFailed) as info:
            await client.run("support", "x")
    model_server.verify()
    assert info.value.error_type == "RepairLimitExceeded"
    assert "unknown tool 'nope'" in info.value.message


async def test_max_turns(temporal_client: Client, model_server: ScriptedModelServer) -> None:
    """``max_turns`` is a budget: a typed outcome that names it, the transcript kept."""
    model_server.add(*[tool_calls(call("lookup_order", {"order_id": i})) for i in range(2)])
    limits = Limits(max_turns=2)
    async with hosted(temporal_client, [support_agent(limits=limits)], model_server) as client:
        handle = await client.start("support", "x")
        with pytest.raises(BudgetExceeded) as info:
            await handle.result()
        transcript = await handle.transcript()
    model_server.verify()
    e = info.value
    assert (e.error_type, e.budget, e.used, e.limit) == ("BudgetExceeded", "max_turns", 2, 2)
    assert "no final answer within Limits.max_turns=2" in e.message
    assert len(transcript) == 2 + 2 * 2


async def test_tool_exception_is_returned_to_the_model(
    temporal_client: Client, model_server: ScriptedModelServer
) -> None:
    model_server.add(
        tool_calls(call("flaky_inventory", {"sku": "KB-1"})),
        reply("Inventory is unavailable right now.").expecting(
            last_tool_message("ValueError: inventory database locked while reading KB-1")
        ),
    )
    async with hosted(temporal_client, [support_agent()], model_server) as client:
        result = await client.run("support", "stock of KB-1?")
    model_server.verify()
    assert result.output == "Inventory is unavailable right now."


async def test_fatal_tool_fails_the_run(
    temporal_client: Client, model_server: ScriptedModelServer
) -> None:
    model_server.add(tool_calls(call("ledger", {"entry": "x"})))
    async with hosted(temporal_client, [support_agent()], model_server) as client:
        with pytest.raises(RunFailed) as info:
            await client.run("support", "write it")
    model_server.verify()
    assert info.value.error_type == "ToolFailed"
    assert "ledger is read-only" in info.value.message


async def test_unknown_agent_fails_with_the_hosted_names(
    temporal_client: Client, model_server: ScriptedModelServer
) -> None:
    async with hosted(temporal_client, [support_agent()], model_server) as client:
        with pytest.raises(RunFailed) as info:
            await client.run("suport", "hi")
    assert info.value.error_type == "UnknownAgent"
    assert "hosted agents: support" in info.value.message
    assert model_server.requests == []


async def test_idempotent_start(temporal_client: Client, model_server: ScriptedModelServer) -> None:
    model_server.add(reply("only once"))
    async with hosted(temporal_client, [support_agent()], model_server) as client:
        first = await client.start("support", "hi", id="order-1042-ticket")
        second = await client.start("support", "hi", id="order-1042-ticket")
        assert (await first.result()).output == "only once"
        assert (await second.result()).output == "only once"
        # After completion too: attach, never start a second run.
        third = await client.start("support", "hi", id="order-1042-ticket")
        assert (await third.result()).output == "only once"
        listing = await eventually(
            lambda: client.list(limit=50),
            lambda runs: any(r.id == "order-1042-ticket" for r in runs),
        )
        runs = [r for r in listing if r.id == "order-1042-ticket"]
    model_server.verify()  # a second run would have made an unexpected model call
    assert len(runs) == 1


async def test_api_key_never_enters_history(
    temporal_client: Client, model_server: ScriptedModelServer
) -> None:
    model_server.add(tool_calls(call("lookup_order", {"order_id": 1})), reply("ok"))
    async with hosted(temporal_client, [support_agent()], model_server) as client:
        handle = await client.start("support", "hi")
        await handle.result()
    history = await temporal_client.get_workflow_handle(handle.id).fetch_history()
    raw = decoded_history_text(history.to_json_dict())
    assert "lookup_order" in raw  # the history is readable at all
    assert API_KEY not in raw


async def test_hung_model_call_times_out_and_is_retried(
    temporal_client: Client, model_server: ScriptedModelServer
) -> None:
    model_server.add(hang(), reply("second attempt"))
    limits = Limits(model_timeout_seconds=1.0, model_retry_initial_seconds=0.1)
    async with hosted(temporal_client, [support_agent(limits=limits)], model_server) as client:
        result = await client.run("support", "hi")
    model_server.verify()
    assert result.output == "second attempt"
    assert len(model_server.requests) == 2
