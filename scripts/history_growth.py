"""History growth of one long conversation: linear history against the full-transcript path.

    python -m scripts.history_growth [--turns 300] [--result-bytes 400]

One run of `--turns` model turns (each a tool call returning `--result-bytes` of text,
the last one the answer) is driven against the scripted model on a real Temporal dev
server, twice:

- `linear`: ratchet's path: model calls carry a transcript reference plus the new
  messages, continue-as-new at `--can-events` events per execution;
- `control`: the old path: every model call carries the whole transcript.

From the stitched event histories (all executions of the run) it prints, at turns 10,
100 and the last, the history bytes and events per turn so far, then the bytes held by
the transcript store and the number of continue-as-new executions. Goal: linear bytes
per turn at the last turn within 1.5x of turn 10 (the control grows with the turn).
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from temporalio.api.enums.v1 import EventType
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from ratchet import Agent, AgentClient, Limits, OpenAICompatible, create_worker, tool
from ratchet._history import executions
from ratchet.activities import AgentActivities
from ratchet.testing import RecordedRequest, ScriptedModelServer, Step, call, reply, tool_calls
from ratchet.transcripts import SQLiteTranscriptStore
from ratchet.worker import default_providers, workflow_runner
from scripts._full_transcript_workflow import FullTranscriptWorkflow
from tests.conftest import API_KEY, temporal_binary

RESULT_BYTES = 400


@tool
def fetch(page: int) -> str:
    """Fetch one page of the report.

    Args:
        page: the page number.
    """
    return f"page {page}: " + "lorem ipsum " * (RESULT_BYTES // 12)


def script(turns: int) -> Any:
    count = 0

    def handler(request: RecordedRequest) -> Step:
        nonlocal count
        count += 1
        if count < turns:
            return tool_calls(call("fetch", {"page": count}))
        return reply(f"Read {turns - 1} pages.")

    return handler


async def drive(
    client: Client, label: str, turns: int, can_events: int, tmp: Path
) -> dict[str, Any]:
    limits = Limits(max_turns=turns + 5, continue_as_new_after_events=can_events)
    agent = Agent("reader", instructions="Read the report.", model="openai:m", tools=[fetch])
    agent.limits = limits
    store = SQLiteTranscriptStore(tmp / f"{label}.sqlite")
    queue = f"bench-{label}-{uuid.uuid4().hex[:6]}"
    with ScriptedModelServer(handler=script(turns), expected_api_key=API_KEY) as server:
        provider = OpenAICompatible(base_url=server.base_url, api_key=API_KEY)
        providers = {**default_providers(), "openai": provider}
        if label == "control":
            acts = AgentActivities({agent.name: agent}, providers, store=store)
            worker = Worker(
                client,
                task_queue=queue,
                workflows=[FullTranscriptWorkflow],
                activities=[acts.snapshot_agent, acts.call_model, acts.run_tool],
                workflow_runner=workflow_runner(),
            )
        else:
            worker = create_worker(
                client, [agent], task_queue=queue, providers=providers, transcript_store=store
            )
        async with worker:
            started = time.monotonic()
            handle = await AgentClient(client, task_queue=queue).start("reader", "Read it all.")
            result = await handle.result()
            seconds = time.monotonic() - started
    assert result.turns == turns, result
    histories = await executions(client, handle.id)
    marks: dict[int, tuple[int, int]] = {}
    total_bytes = total_events = 0
    for events in histories:
        model_turns: dict[int, int] = {}
        for event in events:
            total_bytes += event.ByteSize()
            total_events += 1
            if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
                a = event.activity_task_scheduled_event_attributes
                if a.activity_id.endswith("-model"):
                    model_turns[event.event_id] = int(a.activity_id[4:].split("-")[0])
            elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
                c = event.activity_task_completed_event_attributes
                if c.scheduled_event_id in model_turns:
                    marks[model_turns[c.scheduled_event_id]] = (total_bytes, total_events)
    stats = await store.stats()
    await store.close()
    return {
        "marks": marks,
        "executions": len(histories),
        "store_bytes": stats.bytes,
        "seconds": seconds,
        "total_bytes": total_bytes,
    }


async def main() -> None:
    global RESULT_BYTES
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--turns", type=int, default=300)
    parser.add_argument("--result-bytes", type=int, default=RESULT_BYTES)
    parser.add_argument("--can-events", type=int, default=1000)
    args = parser.parse_args()
    RESULT_BYTES = args.result_bytes
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_binary(),
        data_converter=pydantic_data_converter,
        ui=False,
        dev_server_log_level="error",
    )
    try:
        with tempfile.TemporaryDirectory() as tmp:
            results = {}
            for label in ("linear", "control"):
                print(f"{label}: driving {args.turns} turns ...", flush=True)
                results[label] = await drive(
                    env.client, label, args.turns, args.can_events, Path(tmp)
                )
                r = results[label]
                print(
                    f"{label}: done in {r['seconds']:.1f} s, {r['total_bytes']:,} history bytes, "
                    f"{r['executions']} execution(s)",
                    flush=True,
                )
    finally:
        await env.shutdown()
    checkpoints = sorted({10, 100, args.turns} & set(results["linear"]["marks"]))
    print()
    print(f"{'path':<8} {'turn':>5} {'bytes/turn':>11} {'events/turn':>12} {'history bytes':>14}")
    for label in ("linear", "control"):
        for turn in checkpoints:
            size, count = results[label]["marks"][turn]
            print(f"{label:<8} {turn:>5} {size / turn:>11,.0f} {count / turn:>12.1f} {size:>14,}")
    for label in ("linear", "control"):
        r = results[label]
        print(
            f"{label}: transcript store {r['store_bytes']:,} bytes; "
            f"continue-as-new executions: {r['executions'] - 1}"
        )
    first, last = checkpoints[0], checkpoints[-1]
    for label in ("linear", "control"):
        marks = results[label]["marks"]
        ratio = (marks[last][0] / last) / (marks[first][0] / first)
        print(f"{label}: bytes/turn at turn {last} / at turn {first} = {ratio:.2f}x")
    linear = results["linear"]["marks"][last][0]
    control = results["control"]["marks"][last][0]
    print(f"linear history at turn {last} is {linear / control:.2f}x the control's bytes")


if __name__ == "__main__":
    asyncio.run(main())
