"""The Pydantic AI agents of implementation (e), built once per worker process.

``bench.impl_pydantic_ai`` imports this module through the sandbox's passthrough,
so the ``TemporalAgent`` objects (and the activities they register) are created
once, not again for every workflow run. The model server's address comes from
``BENCH_MODEL_URL``, set by ``bench.worker`` before the import.
"""

from __future__ import annotations

import os
import warnings
from datetime import timedelta
from typing import Any

from bench import workload
from openai import AsyncOpenAI
from pydantic_ai import Agent, Tool
from pydantic_ai.durable_exec.temporal import TemporalAgent
from pydantic_ai.models.openai import OpenAIChatModel
from pydantic_ai.providers.openai import OpenAIProvider
from temporalio import workflow
from temporalio.workflow import ActivityConfig

model = OpenAIChatModel(
    workload.MODEL,
    provider=OpenAIProvider(
        openai_client=AsyncOpenAI(
            base_url=os.environ.get("BENCH_MODEL_URL", "http://127.0.0.1:9/v1"),
            api_key=workload.API_KEY,
            max_retries=0,
        )
    ),
)


async def lookup_after_approval(order_id: int) -> str:
    """Get the status and carrier of an order.

    Args:
        order_id: the order number, e.g. 1042.
    """
    instance: Any = workflow.instance()
    await workflow.wait_condition(lambda: instance.approved)
    return await workload.lookup_order(order_id)


_CONFIG = ActivityConfig(start_to_close_timeout=timedelta(seconds=60))

with warnings.catch_warnings():
    # TemporalAgent is deprecated in favour of the TemporalDurability capability in
    # pydantic-ai 2.x; the issue names TemporalAgent and it still works the same way.
    warnings.simplefilter("ignore")
    temporal_agent: Any = TemporalAgent(
        Agent(
            model,
            name="support",
            instructions=workload.INSTRUCTIONS,
            tools=[workload.lookup_order, workload.shipping_eta],
        ),
        activity_config=_CONFIG,
    )
    temporal_hitl: Any = TemporalAgent(
        Agent(
            model,
            name="support_hitl",
            instructions=workload.INSTRUCTIONS,
            tools=[Tool(lookup_after_approval, name="lookup_order"), workload.shipping_eta],
        ),
        activity_config=_CONFIG,
        tool_activity_config={"<agent>": {"lookup_order": False}},
    )
