"""The OpenAI Agents SDK's streaming on Temporal, for ``bench.streaming``.

As ``temporalio.openai_agents`` documents it: the workflow creates a
``WorkflowStream`` in ``@workflow.init`` and calls ``Runner.run_streamed``; the
plugin's ``invoke_model_activity_streaming`` publishes every stream event of the
model call to the ``streaming_topic`` through Workflow Streams (signals, batched
every ``streaming_batch_interval``, 100 ms by default), and a client reads them with
``WorkflowStreamClient.subscribe`` (a poll update, 100 ms cooldown by default). The
settings are the library's defaults. The model provider is the SDK's
``OpenAIProvider`` on chat completions, as in ``bench/impl_openai_agents.py``.

The workflow lives in its own module because the workflow sandbox re-imports it.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.client import Client
from temporalio.contrib.workflow_streams import WorkflowStream
from temporalio.worker import Worker

with workflow.unsafe.imports_passed_through():
    from agents import Agent, Runner
    from bench import workload

WORKFLOW = "bench.StreamingOpenAIAgents"
TOPIC = "events"
"""The plugin's ``streaming_topic``: where the model activity publishes."""
TEXT_DELTA = "response.output_text.delta"
"""The type of the published events that carry a piece of the answer's text."""


@workflow.defn(name=WORKFLOW)
class StreamingOpenAIAgents:
    @workflow.init
    def __init__(self, prompt: str) -> None:
        # Receives the activity's publish signals and serves subscribers' polls.
        self.stream = WorkflowStream()

    @workflow.run
    async def run(self, prompt: str) -> str:
        agent: Agent[None] = Agent(
            name="streamer", instructions=workload.INSTRUCTIONS, model=workload.MODEL
        )
        result = Runner.run_streamed(agent, input=prompt)
        async for _ in result.stream_events():
            pass  # the workflow gets the events once the activity is done
        return str(result.final_output)


async def connect(address: str, base_url: str) -> Client:
    """A client with the plugin: it carries the plugin's converter and model activity."""
    from agents import OpenAIProvider
    from openai import AsyncOpenAI
    from temporalio.openai_agents import ModelActivityParameters, OpenAIAgentsPlugin

    plugin = OpenAIAgentsPlugin(
        model_params=ModelActivityParameters(
            start_to_close_timeout=timedelta(seconds=60),
            # The model parameters' docs ask for a heartbeat timeout when streaming.
            heartbeat_timeout=timedelta(seconds=10),
            streaming_topic=TOPIC,
        ),
        model_provider=OpenAIProvider(
            openai_client=AsyncOpenAI(base_url=base_url, api_key=workload.API_KEY, max_retries=0),
            use_responses=False,
        ),
    )
    return await Client.connect(address, plugins=[plugin])


def make_worker(client: Client, queue: str) -> Worker:
    return Worker(client, task_queue=queue, workflows=[StreamingOpenAIAgents])
