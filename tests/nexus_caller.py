"""Caller workflows of the ``ratchet.nexus`` service, written as another team would:
in their own namespace, with their own data converter (temporalio's pydantic one),
under Temporal's sandbox, knowing only the endpoint's name."""

from __future__ import annotations

from dataclasses import dataclass

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from ratchet.nexus import AgentsService, AnswerApprovalInput, RunAgentInput, agents_client

ENDPOINT = "ratchet-agents"


@dataclass(frozen=True)
class Ask:
    agent: str
    prompt: str
    run_id: str | None = None


@workflow.defn
class AskAgent:
    """Runs an agent through the endpoint and returns its answer."""

    @workflow.run
    async def run(self, ask: Ask) -> str:
        agents = agents_client(ENDPOINT)
        result = await agents.execute_operation(
            AgentsService.run_agent,
            RunAgentInput(agent=ask.agent, prompt=ask.prompt, id=ask.run_id),
        )
        return result.output


@workflow.defn
class AnswerApproval:
    """Approves a waiting tool call through the endpoint; returns who the record names."""

    @workflow.run
    async def run(self, answer: AnswerApprovalInput) -> str:
        record = await agents_client(ENDPOINT).execute_operation(
            AgentsService.answer_approval, answer
        )
        return f"{record.tool} approved={record.approved} by {record.approver}"
