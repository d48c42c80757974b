"""(b) The engine's floor: the same calls as bare Temporal activities in a minimal workflow.

No framework: a hand-written loop, one activity per model call and per tool call,
plain dicts through Temporal's default JSON converter, Temporal's default retry
policy and a 60 s start-to-close timeout (the default both integrations use).
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.worker import Worker

with workflow.unsafe.imports_passed_through():
    import openai
    from bench import workload

WORKFLOW = "bench.Bare"
_TIMEOUT = timedelta(seconds=60)
_client: openai.AsyncOpenAI | None = None


@activity.defn(name="bare.call_model")
async def call_model(messages: list[dict[str, Any]]) -> dict[str, Any]:
    assert _client is not None
    completion = await _client.chat.completions.create(
        model=workload.MODEL,
        messages=messages,  # type: ignore[arg-type]
        tools=workload.OPENAI_TOOLS,  # type: ignore[arg-type]
        timeout=120,
    )
    return workload.assistant_message(completion.choices[0].message)


@activity.defn(name="bare.run_tool")
async def run_tool(name: str, arguments: str) -> str:
    return await workload.run_tool_call(name, arguments)


@workflow.defn(name=WORKFLOW)
class BareWorkflow(workload.ParkableWorkflow):
    @workflow.run
    async def run(self, inp: dict[str, Any]) -> str:
        messages = workload.first_messages()
        for _ in range(10):
            message: dict[str, Any] = await workflow.execute_activity(
                "bare.call_model", messages, start_to_close_timeout=_TIMEOUT
            )
            messages.append(message)
            calls = message.get("tool_calls")
            if not calls:
                return str(message["content"])
            if inp.get("park"):
                await workflow.wait_condition(lambda: self.approved)
            results = await asyncio.gather(
                *(
                    workflow.execute_activity(
                        "bare.run_tool",
                        args=[c["function"]["name"], c["function"]["arguments"]],
                        start_to_close_timeout=_TIMEOUT,
                    )
                    for c in calls
                )
            )
            messages.extend(
                {"role": "tool", "tool_call_id": c["id"], "content": r}
                for c, r in zip(calls, results, strict=True)
            )
        raise RuntimeError("no final answer within 10 turns")


async def make_worker(address: str, queue: str, base_url: str) -> Worker:
    global _client
    _client = openai.AsyncOpenAI(base_url=base_url, api_key=workload.API_KEY, max_retries=0)
    client = await Client.connect(address)
    return Worker(
        client,
        task_queue=queue,
        workflows=[BareWorkflow],
        activities=[call_model, run_tool],
        **workload.worker_options(),
    )
