"""Count the Temporal server calls a follower of a 10-step run makes.

`python -m scripts.follow_calls [SECONDS]`: a run of 5 model calls (SECONDS each,
default 0.5, against the scripted model server) and 5 tool calls; `RunHandle.follow()`
prints its messages
from another client connection, whose server calls are counted by RPC name.
Not a timed test: the figures go into the closing note of the run-events change.
"""

from __future__ import annotations

import asyncio
import collections
import shutil
import sys
import uuid
from pathlib import Path
from typing import Any

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from ratchet import Agent, AgentClient, OpenAICompatible, create_worker, tool
from ratchet.testing import ScriptedModelServer, call, reply, tool_calls


@tool
def lookup(order_id: int) -> str:
    """Look up an order.

    Args:
        order_id: the order number.
    """
    return f"order {order_id} shipped"


AGENT = Agent("follow-bench", instructions="x", model="openai:scripted", tools=[lookup])


def temporal_binary() -> str | None:
    beside = Path(sys.executable).parent / "temporal"
    return str(beside) if beside.exists() else shutil.which("temporal")


async def main(delay: float) -> None:
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_binary(),
        data_converter=pydantic_data_converter,
        ui=False,
    )
    steps = [
        tool_calls(call("lookup", {"order_id": 1}), call("lookup", {"order_id": 2}), delay=delay),
        tool_calls(call("lookup", {"order_id": 3}), delay=delay),
        tool_calls(call("lookup", {"order_id": 4}), delay=delay),
        tool_calls(call("lookup", {"order_id": 5}), delay=delay),
        reply("All shipped.", delay=delay),
    ]
    try:
        with ScriptedModelServer(steps, expected_api_key="k") as server:
            queue = f"follow-{uuid.uuid4().hex[:6]}"
            provider = OpenAICompatible(base_url=server.base_url, api_key="k")
            worker = create_worker(
                env.client, [AGENT], task_queue=queue, providers={"openai": provider}
            )
            follower = await Client.connect(
                env.client.service_client.config.target_host,
                data_converter=pydantic_data_converter,
            )
            calls: collections.Counter[str] = collections.Counter()
            service: Any = follower.service_client
            real = service._rpc_call

            async def counting(rpc: str, *args: Any, **kwargs: Any) -> Any:
                calls[rpc] += 1
                return await real(rpc, *args, **kwargs)

            service._rpc_call = counting
            async with worker:
                handle = await AgentClient(env.client, task_queue=queue).start(AGENT.name, "go")
                messages = [m async for m in AgentClient(follower).get(handle.id).follow()]
                await handle.result()
            print(f"messages followed: {len(messages)}")
            print(f"server calls of the follower: {sum(calls.values())}")
            for rpc, n in calls.most_common():
                print(f"  {rpc}: {n}")
    finally:
        await env.shutdown()


if __name__ == "__main__":
    asyncio.run(main(float(sys.argv[1]) if len(sys.argv) > 1 else 0.5))
