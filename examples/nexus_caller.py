"""The README's Nexus example: a workflow of another team, in its own namespace, runs
the ``support`` agent through a Nexus endpoint, knowing nothing of ratchet's task queue.

Host the agent with the Nexus service (``ratchet worker --app examples.support:agent
--nexus``), create the endpoint (README, "Agents over Nexus"), then::

    python -m examples.nexus_caller --namespace callers --endpoint ratchet-agents \\
        "Where is order 1042?"

It runs a worker for its workflow in its own namespace, with temporalio's pydantic
data converter (not ratchet's), starts the workflow and prints the agent's answer.
"""

from __future__ import annotations

import argparse
import asyncio
import uuid
from dataclasses import dataclass

from temporalio import workflow
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Worker

with workflow.unsafe.imports_passed_through():
    from ratchet.nexus import AgentsService, RunAgentInput, agents_client


@dataclass(frozen=True)
class Question:
    endpoint: str
    prompt: str
    run_id: str | None = None
    model: str | None = None


@workflow.defn
class AskSupport:
    """Asks the support agent, through the endpoint, and returns its answer."""

    @workflow.run
    async def run(self, q: Question) -> str:
        agents = agents_client(q.endpoint)
        result = await agents.execute_operation(
            AgentsService.run_agent,
            RunAgentInput(agent="support", prompt=q.prompt, id=q.run_id, model=q.model),
        )
        return result.output


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("prompt")
    parser.add_argument("--endpoint", default="ratchet-agents")
    parser.add_argument("--address", default="127.0.0.1:7233")
    parser.add_argument("--namespace", default="callers")
    parser.add_argument("--run-id", help="the agent run's id (default: support-<random>)")
    parser.add_argument("--model", help="override the agent's model, e.g. openai:gpt-4o-mini")
    args = parser.parse_args()
    client = await Client.connect(
        args.address, namespace=args.namespace, data_converter=pydantic_data_converter
    )
    async with Worker(client, task_queue="callers", workflows=[AskSupport]):
        answer = await client.execute_workflow(
            AskSupport.run,
            Question(args.endpoint, args.prompt, args.run_id, args.model),
            id=f"ask-support-{uuid.uuid4().hex[:8]}",
            task_queue="callers",
        )
    print(answer)


if __name__ == "__main__":
    asyncio.run(main())
