"""Agents as Nexus operations: the ``ratchet.nexus`` service.

A workflow in another namespace, or another team's service, runs an agent through a
Nexus endpoint without knowing the agents' task queue::

    from temporalio import workflow

    with workflow.unsafe.imports_passed_through():
        from ratchet.nexus import AgentsService, RunAgentInput, agents_client

    @workflow.defn
    class Triage:
        @workflow.run
        async def run(self, ticket: str) -> str:
            agents = agents_client("ratchet-agents")
            result = await agents.execute_operation(
                AgentsService.run_agent, RunAgentInput(agent="support", prompt=ticket)
            )
            return result.output

The agents' worker registers the handler (``ratchet worker --nexus``, or
``create_worker(..., nexus_service_handlers=[AgentsServiceHandler(agents)])``).
"""

from __future__ import annotations

from temporalio import workflow

from ._handler import AgentsServiceHandler
from ._service import SERVICE_NAME, AgentsService, AnswerApprovalInput, RunAgentInput

__all__ = [
    "SERVICE_NAME",
    "AgentsService",
    "AgentsServiceHandler",
    "AnswerApprovalInput",
    "RunAgentInput",
    "agents_client",
]


def agents_client(endpoint: str) -> workflow.NexusClient[AgentsService]:
    """In a workflow: the client of the ``ratchet.nexus`` service behind ``endpoint``.

    Call ``execute_operation(AgentsService.run_agent, RunAgentInput(...))`` for a run's
    result (``start_operation`` for a handle), and
    ``execute_operation(AgentsService.answer_approval, AnswerApprovalInput(...))``.
    """
    return workflow.create_nexus_client(service=AgentsService, endpoint=endpoint)
