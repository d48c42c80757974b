"""(d) The OpenAI Agents SDK on Temporal (``temporalio.contrib.openai_agents``).

As its README shows: ``OpenAIAgentsPlugin`` on the client, the agent built in the
workflow, every model call an ``invoke_model_activity`` and the tools Temporal
activities through ``activity_as_tool``. The model provider is the SDK's
``OpenAIProvider`` on chat completions (the scripted server speaks chat
completions, not the Responses API), with the ``openai`` client's retries off as
the plugin recommends. The SDK's tracing is disabled (``OPENAI_AGENTS_DISABLE_TRACING=1``,
set by ``bench.worker``): it would export to api.openai.com, and the other
implementations trace nothing either.

For the parked-runs measurement ``lookup_order`` is a ``function_tool`` that runs in
the workflow and waits for an ``approve`` signal.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.worker import Worker

with workflow.unsafe.imports_passed_through():
    from agents import Agent, Runner, function_tool
    from bench import workload
    from temporalio.contrib.openai_agents import workflow as agents_workflow

WORKFLOW = "bench.OpenAIAgents"
_TIMEOUT = timedelta(seconds=60)


@activity.defn(name="oa.lookup_order")
async def lookup_order(order_id: int) -> str:
    """Get the status and carrier of an order.

    Args:
        order_id: the order number, e.g. 1042.
    """
    return await workload.lookup_order(order_id)


@activity.defn(name="oa.shipping_eta")
async def shipping_eta(order_id: int) -> str:
    """Get the expected delivery date of a shipped order.

    Args:
        order_id: the order number, e.g. 1042.
    """
    return await workload.shipping_eta(order_id)


@workflow.defn(name=WORKFLOW)
class OpenAIAgentsWorkflow(workload.ParkableWorkflow):
    @workflow.run
    async def run(self, inp: dict[str, Any]) -> str:
        eta = agents_workflow.activity_as_tool(shipping_eta, start_to_close_timeout=_TIMEOUT)
        if inp.get("park"):

            @function_tool(name_override="lookup_order")
            async def lookup_after_approval(order_id: int) -> str:
                """Get the status and carrier of an order.

                Args:
                    order_id: the order number, e.g. 1042.
                """
                await workflow.wait_condition(lambda: self.approved)
                return await workload.lookup_order(order_id)

            lookup: Any = lookup_after_approval
        else:
            lookup = agents_workflow.activity_as_tool(lookup_order, start_to_close_timeout=_TIMEOUT)
        agent: Agent[None] = Agent(
            name="support",
            instructions=workload.INSTRUCTIONS,
            model=workload.MODEL,
            tools=[lookup, eta],
        )
        result = await Runner.run(agent, input=inp["prompt"])
        return str(result.final_output)


async def make_worker(address: str, queue: str, base_url: str) -> Worker:
    from agents import OpenAIProvider
    from openai import AsyncOpenAI
    from temporalio.contrib.openai_agents import ModelActivityParameters, OpenAIAgentsPlugin

    plugin = OpenAIAgentsPlugin(
        model_params=ModelActivityParameters(start_to_close_timeout=_TIMEOUT),
        model_provider=OpenAIProvider(
            openai_client=AsyncOpenAI(base_url=base_url, api_key=workload.API_KEY, max_retries=0),
            use_responses=False,
        ),
    )
    client = await Client.connect(address, plugins=[plugin])
    return Worker(
        client,
        task_queue=queue,
        workflows=[OpenAIAgentsWorkflow],
        activities=[lookup_order, shipping_eta],
        **workload.worker_options(),
    )
