"""(c) ratchet: the agent as ``ratchet.Agent``, hosted by ``ratchet.create_worker``.

``bench_hitl`` is the same agent with a policy that makes every ``lookup_order``
call wait for a person's approval (for the parked-runs measurement).
"""

from __future__ import annotations

import os
from typing import Any

from bench import workload
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner

from ratchet import Agent, OpenAICompatible, Policy, connect, create_worker, require_approval, tool

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


# ratchet's modules except the workflow module itself (see BENCH_RATCHET_RUNNER).
_RATCHET_MODULES = (
    "ratchet._connect",
    "ratchet._protocol",
    "ratchet._render",
    "ratchet._schema",
    "ratchet._search",
    "ratchet.activities",
    "ratchet.agent",
    "ratchet.cli",
    "ratchet.client",
    "ratchet.codec",
    "ratchet.errors",
    "ratchet.local",
    "ratchet.messages",
    "ratchet.models",
    "ratchet.policy",
    "ratchet.pricing",
    "ratchet.telemetry",
    "ratchet.testing",
    "ratchet.tools",
    "ratchet.trace",
    "ratchet.worker",
)


def _experimental_runner() -> dict[str, Any]:
    """``BENCH_RATCHET_RUNNER`` swaps ratchet's sandbox configuration, for profiling only.

    ``modules``: ratchet's modules other than ``ratchet.workflow`` are passed through,
    so a run's sandbox no longer re-executes the package (and rebuilds its pydantic
    models) for every run. ``all``: ``ratchet`` as a whole, the workflow module too.
    Unset (the benchmark's setting): ratchet's own ``workflow_runner()``.
    """
    variant = os.environ.get("BENCH_RATCHET_RUNNER", "")
    if not variant:
        return {}
    from ratchet.worker import workflow_runner

    base = workflow_runner()
    extra = _RATCHET_MODULES if variant == "modules" else ("ratchet",)
    restrictions = base.restrictions.with_passthrough_modules(*extra)
    return {"workflow_runner": SandboxedWorkflowRunner(restrictions=restrictions)}


async def make_worker(address: str, queue: str, base_url: str) -> Worker:
    client = await connect(address)
    return create_worker(
        client,
        agents,
        task_queue=queue,
        providers={"openai": OpenAICompatible(base_url=base_url, api_key=workload.API_KEY)},
        **workload.WORKER_OPTIONS,
        **_experimental_runner(),
    )
