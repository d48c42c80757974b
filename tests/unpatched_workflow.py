"""A workflow variant for the replay tests, in its own module because the workflow
sandbox re-imports the module that defines a workflow (keep its imports minimal)."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

from ratchet import AgentWorkflow, RunResult
from ratchet._protocol import SNAPSHOT_ACTIVITY, WORKFLOW_TYPE, AgentSpec, RunInput, SnapshotRequest


@workflow.defn(name=WORKFLOW_TYPE)
class UnpatchedAgentWorkflow(AgentWorkflow):
    """The new snapshot code without its `workflow.patched` guard."""

    @workflow.run
    async def run(self, inp: RunInput) -> RunResult:
        return await super().run(inp)

    async def _snapshot(self, inp: RunInput) -> AgentSpec:
        spec: AgentSpec = await workflow.execute_local_activity(
            SNAPSHOT_ACTIVITY,
            SnapshotRequest(agent=inp.agent, model=inp.model),
            result_type=AgentSpec,
            start_to_close_timeout=timedelta(seconds=30),
        )
        return spec
