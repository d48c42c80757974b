"""(c) ratchet: the agent as ``ratchet.Agent``, hosted by ``ratchet.create_worker``.

``bench_hitl`` is the same agent with a policy that makes every ``lookup_order``
call wait for a person's approval (for the parked-runs measurement).
"""

from __future__ import annotations

from bench import workload
from temporalio.worker import Worker

from ratchet import Agent, OpenAICompatible, Policy, connect, create_worker, require_approval, tool
from ratchet.transcripts import TranscriptStore

AGENT = "bench"
HITL_AGENT = "bench_hitl"
_TOOLS = [tool(workload.lookup_order), tool(workload.shipping_eta)]

agents = [
    Agent(
        AGENT,
        instructions=workload.INSTRUCTIONS,
        model=f"openai:{workload.MODEL}",
        tools=_TOOLS,
    ),
    Agent(
        HITL_AGENT,
        instructions=workload.INSTRUCTIONS,
        model=f"openai:{workload.MODEL}",
        tools=_TOOLS,
        policy=Policy(rules=[require_approval("lookup_order", reason="a person checks lookups")]),
    ),
]


async def make_worker(
    address: str, queue: str, base_url: str, transcript_store: TranscriptStore | None = None
) -> Worker:
    """The worker; ``transcript_store`` None is ratchet's default, the embedded SQLite file
    in its data directory (``RATCHET_DATA_DIR``, which the benchmark leaves as it is)."""
    client = await connect(address)
    return create_worker(
        client,
        agents,
        task_queue=queue,
        providers={"openai": OpenAICompatible(base_url=base_url, api_key=workload.API_KEY)},
        transcript_store=transcript_store,
        **workload.worker_options(),
    )
