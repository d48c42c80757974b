"""(e) Pydantic AI's ``TemporalAgent``: model requests and tool calls as activities.

As its documentation shows: ``PydanticAIPlugin`` on the client, ``AgentPlugin`` on
the worker, ``await temporal_agent.run(prompt)`` in the workflow. The model is
``OpenAIChatModel`` (chat completions) with the ``openai`` client's retries off.
For the parked-runs measurement ``lookup_order`` runs in the workflow (no activity)
and waits for an ``approve`` signal.
"""

from __future__ import annotations

from typing import Any

from temporalio import workflow
from temporalio.client import Client
from temporalio.worker import Worker

with workflow.unsafe.imports_passed_through():
    from bench import workload
    from bench.pa_agents import temporal_agent, temporal_hitl

WORKFLOW = "bench.PydanticAI"


@workflow.defn(name=WORKFLOW)
class PydanticAIWorkflow(workload.ParkableWorkflow):
    @workflow.run
    async def run(self, inp: dict[str, Any]) -> str:
        agent = temporal_hitl if inp.get("park") else temporal_agent
        result = await agent.run(inp["prompt"])
        return str(result.output)


async def make_worker(address: str, queue: str, base_url: str) -> Worker:
    from pydantic_ai.durable_exec.temporal import AgentPlugin, PydanticAIPlugin

    client = await Client.connect(address, plugins=[PydanticAIPlugin()])
    return Worker(
        client,
        task_queue=queue,
        workflows=[PydanticAIWorkflow],
        plugins=[AgentPlugin(temporal_agent), AgentPlugin(temporal_hitl)],
        **workload.worker_options(),
    )
