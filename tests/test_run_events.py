"""RunHandle.events(): past events, then live ones, each once and in order, across a
worker kill -9 and continue-as-new; a follower resumes after any seq."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

from temporalio.testing import WorkflowEnvironment

from ratchet import AgentClient
from ratchet.events import RunEvent, RunEventAdapter
from ratchet.testing import ScriptedModelServer, call, hang, reply, tool_calls

from .workers import WorkerProcess


def dumped(events: list[RunEvent]) -> list[object]:
    return [RunEventAdapter.dump_python(e, mode="json") for e in events]


async def test_events_live_across_kill9_and_continue_as_new(
    temporal_env: WorkflowEnvironment,
    model_server: ScriptedModelServer,
    tmp_path: Path,
    workers: list[WorkerProcess],
) -> None:
    address = temporal_env.client.service_client.config.target_host
    queue = f"events-{uuid.uuid4().hex[:8]}"
    model_server.add(
        tool_calls(call("lookup", {"order_id": 1})),
        tool_calls(call("lookup", {"order_id": 2})),
        hang(),  # turn 3, first attempt: the worker dies while this call is in flight
        tool_calls(call("lookup", {"order_id": 3})),
        tool_calls(call("lookup", {"order_id": 4})),
        reply("All four have shipped."),
    )
    workers.append(WorkerProcess(address, queue, model_server, tmp_path))
    client = AgentClient(temporal_env.client, task_queue=queue)
    handle = await client.start("crashy-long", "Check orders 1 to 4")

    live: list[RunEvent] = []
    first_half: list[RunEvent] = []

    async def follow() -> None:
        async for event in handle.events():
            live.append(event)

    async def follow_then_drop() -> None:
        async for event in handle.events():
            first_half.append(event)
            if event.type == "tool_call_finished":
                return  # a subscriber that disconnects early

    following = asyncio.create_task(follow())
    dropping = asyncio.create_task(follow_then_drop())
    await model_server.wait_for_requests_async(3, timeout=30)
    workers[0].kill9()
    workers.append(WorkerProcess(address, queue, model_server, tmp_path))
    await asyncio.wait_for(following, timeout=90)
    await dropping
    result = await handle.result()
    assert result.output == "All four have shipped."

    recorded = [e async for e in handle.events(follow=False)]
    # Live and re-read agree exactly: each event once, in order, same seq.
    assert dumped(live) == dumped(recorded)
    assert [e.seq for e in live] == list(range(1, len(live) + 1))
    types = [e.type for e in live]
    assert types.count("continued_as_new") >= 1, types
    assert types[-1] == "run_finished"
    assert types.count("model_call_finished") == 5
    # The killed attempt shows as a failed attempt of turn 3's model call, not a new step.
    failed = [e for e in live if e.type == "model_call_attempt_failed"]
    assert [(e.call_id, e.attempt) for e in failed] == [("turn3-model", 1)]
    # A follower that dropped out resumes right after its last seq, with no gap or repeat.
    resumed = [e async for e in handle.events(after=first_half[-1].seq)]
    assert dumped(first_half + resumed) == dumped(recorded)
    # Messages: the transcript in order, every index once.
    messages = [e for e in live if e.type == "message"]
    assert [e.index for e in messages] == list(range(len(messages)))
