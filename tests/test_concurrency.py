"""Concurrency caps: at most N runs of an agent (or of an agent per tenant) work at once."""

from __future__ import annotations

import asyncio
import time
import uuid

from temporalio.client import Client

from ratchet import Agent, AgentClient, RunHandle
from ratchet._slots_protocol import SLOTS_WORKFLOW_TYPE, SlotsInput, slots_id
from ratchet.testing import RecordedRequest, ScriptedModelServer, Step, reply

from .conftest import hosted

# Long enough that runs meant to overlap do, even when a loaded machine starts them
# a second apart.
CALL_SECONDS = 2.0


def slow_replies(r: RecordedRequest) -> Step:
    return reply(f"done: {r.messages[-1]['content']}", delay=CALL_SECONDS)


def most_at_once(requests: list[RecordedRequest]) -> int:
    """The most model calls in progress at the same moment (each takes CALL_SECONDS)."""
    starts = [r.received_at for r in requests]
    return max(sum(1 for s in starts if s <= t < s + CALL_SECONDS) for t in starts)


async def states(handles: list[RunHandle]) -> list[str]:
    return [(await h.status()).state for h in handles]


async def wait_queued(handles: list[RunHandle], count: int) -> None:
    deadline = time.monotonic() + 20
    while (await states(handles)).count("queued") < count:
        assert time.monotonic() < deadline, await states(handles)
        await asyncio.sleep(0.1)


async def test_runs_beyond_the_cap_wait_queued(
    temporal_client: Client, model_server: ScriptedModelServer
) -> None:
    name = f"capped-{uuid.uuid4().hex[:6]}"
    agent = Agent(name, instructions="x", model="openai:m", max_concurrent_runs=2)
    model_server.handler = slow_replies
    async with hosted(temporal_client, [agent], model_server) as client:
        handles = []
        for i in range(5):
            handles.append(await client.start(name, f"job {i}"))
        await wait_queued(handles, 2)
        results = await asyncio.gather(*(h.result() for h in handles))
    assert [r.output for r in results] == [f"done: job {i}" for i in range(5)]
    requests = model_server.requests
    assert len(requests) == 5 and most_at_once(requests) == 2


async def test_cap_per_tenant(temporal_client: Client, model_server: ScriptedModelServer) -> None:
    name = f"tenanted-{uuid.uuid4().hex[:6]}"
    agent = Agent(name, instructions="x", model="openai:m", max_concurrent_runs_per_tenant=1)
    model_server.handler = slow_replies
    async with hosted(temporal_client, [agent], model_server) as client:
        a1 = await client.start(name, "a1", tenant="acme")
        a2 = await client.start(name, "a2", tenant="acme")
        b1 = await client.start(name, "b1", tenant="globex")
        await wait_queued([a2], 1)
        await asyncio.gather(a1.result(), a2.result(), b1.result())
    at = {r.messages[-1]["content"]: r.received_at for r in model_server.requests}
    # Same tenant: one after the other (in the order their requests reached the cap,
    # which need not be the order they were started in).
    first, second = sorted((at["a1"], at["a2"]))
    assert second - first >= CALL_SECONDS * 0.9
    assert at["b1"] < second  # another tenant's run did not wait for acme's slot


async def test_a_terminated_holder_frees_its_slot(
    temporal_client: Client, model_server: ScriptedModelServer
) -> None:
    name = f"swept-{uuid.uuid4().hex[:6]}"
    agent = Agent(name, instructions="x", model="openai:m", max_concurrent_runs=1)
    model_server.handler = slow_replies
    async with hosted(temporal_client, [agent], model_server) as client:
        # Check holders every second instead of every 30 s.
        await temporal_client.start_workflow(
            SLOTS_WORKFLOW_TYPE,
            SlotsInput(key=slots_id(name), limit=1, sweep_seconds=1.0),
            id=slots_id(name),
            task_queue=client.task_queue,
        )
        first = await client.start(name, "first")
        await model_server.wait_for_requests_async(1)
        second = await client.start(name, "second")
        await wait_queued([second], 1)
        # Terminated: no code of the run runs, so it never releases its slot itself.
        await temporal_client.get_workflow_handle(first.id).terminate()
        result = await asyncio.wait_for(second.result(), 30)
        await temporal_client.get_workflow_handle(slots_id(name)).terminate()
    assert result.output == "done: second"


async def test_start_rejects_a_bad_tenant(temporal_client: Client) -> None:
    client = AgentClient(temporal_client)
    try:
        await client.start("support", "hi", tenant="no spaces")
    except ValueError as e:
        assert "bad tenant 'no spaces'" in str(e)
    else:
        raise AssertionError("a bad tenant was accepted")


async def test_a_cancelled_run_gives_its_slot_back(
    temporal_client: Client, model_server: ScriptedModelServer
) -> None:
    name = f"cancelled-{uuid.uuid4().hex[:6]}"
    agent = Agent(name, instructions="x", model="openai:m", max_concurrent_runs=1)
    model_server.handler = slow_replies
    async with hosted(temporal_client, [agent], model_server) as client:
        first = await client.start(name, "first")
        await model_server.wait_for_requests_async(1)
        second = await client.start(name, "second")
        await wait_queued([second], 1)
        await first.cancel()
        # Well before the 30 s sweep: the cancelled run released its slot itself.
        result = await asyncio.wait_for(second.result(), 20)
    assert result.output == "done: second"


async def test_a_capped_run_keeps_its_slot_across_continue_as_new(
    temporal_client: Client, model_server: ScriptedModelServer
) -> None:
    from ratchet import Limits, tool
    from ratchet._history import executions
    from ratchet.testing import call, tool_calls

    @tool
    def fetch(page: int) -> str:
        """Fetch one page.

        Args:
            page: the page number.
        """
        return f"page {page}"

    name = f"capped-long-{uuid.uuid4().hex[:6]}"
    limits = Limits(model_retry_initial_seconds=0.1, continue_as_new_after_events=20, max_turns=20)
    agent = Agent(
        name,
        instructions="x",
        model="openai:m",
        tools=[fetch],
        limits=limits,
        max_concurrent_runs=1,
    )
    model_server.add(
        *[tool_calls(call("fetch", {"page": p})) for p in range(1, 7)],
        reply("read six pages"),
        reply("second done"),
    )
    async with hosted(temporal_client, [agent], model_server) as client:
        first = await client.start(name, "read")
        await model_server.wait_for_requests_async(1)
        second = await client.start(name, "second")
        # The continued run keeps the slot (it never asks again) and releases it at the end.
        result = await asyncio.wait_for(first.result(), 60)
        assert len(await executions(temporal_client, first.id)) >= 2
        # Its slot went to the queued run when the last execution ended: released by the
        # run itself (the sweep of ended holders would take 30 s).
        assert (await asyncio.wait_for(second.result(), 10)).output == "second done"
    assert result.output == "read six pages"
    model_server.verify()
