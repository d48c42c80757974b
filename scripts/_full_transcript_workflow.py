"""The control of the history benchmark: the agent workflow on the old full-transcript
path (every model call carries the whole transcript). In its own module because the
workflow sandbox re-imports the module that defines a workflow."""

from __future__ import annotations

from temporalio import workflow

from ratchet import AgentWorkflow, RunResult
from ratchet._protocol import WORKFLOW_TYPE, RunInput
from ratchet.workflows._transcript import FullTranscript, Transcript


@workflow.defn(name=WORKFLOW_TYPE)
class FullTranscriptWorkflow(AgentWorkflow):
    """AgentWorkflow as it ran before linear history."""

    @workflow.run
    async def run(self, inp: RunInput) -> RunResult:
        return await super().run(inp)

    def _choose_transcript(self) -> Transcript:
        return FullTranscript()
