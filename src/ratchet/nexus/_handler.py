"""The handler of the ``ratchet.nexus`` service, registered by ``ratchet worker --nexus``.

``run_agent`` starts the run as :meth:`ratchet.AgentClient.start` does (the same input
and workflow options, from ``ratchet._run_start``), as the workflow behind the Nexus
operation: the server delivers the run's result to the caller, cancelling the
operation cancels the run, and the run's start event links to the caller.
"""

from __future__ import annotations

from collections.abc import Iterable

import nexusrpc
from nexusrpc.handler import StartOperationContext, service_handler, sync_operation
from temporalio import nexus
from temporalio.exceptions import WorkflowAlreadyStartedError

from .._protocol import DEFAULT_TASK_QUEUE, WORKFLOW_TYPE, ApprovalRecord, RunResult
from .._render import shorten
from .._run_start import check_run_request, new_run_id
from ..agent import Agent
from ..client import AgentClient
from ..errors import ApprovalError, ConfigError, RatchetError, RunNotFound
from ._service import AgentsService, AnswerApprovalInput, RunAgentInput

__all__ = ["AgentsServiceHandler"]


@service_handler(service=AgentsService)
class AgentsServiceHandler:
    """Runs ``agents`` (and the agents they reach) for Nexus callers, on ``task_queue``.

    Register it on the worker that hosts those agents, in the namespace the endpoint
    targets: ``create_worker(..., nexus_service_handlers=[AgentsServiceHandler(agents)])``.
    """

    def __init__(self, agents: Iterable[Agent], *, task_queue: str = DEFAULT_TASK_QUEUE) -> None:
        hosted: set[str] = set()
        for agent in agents:
            hosted.add(agent.name)
            hosted.update(agent.reachable())
        self._hosted = frozenset(hosted)
        self._task_queue = task_queue
        self._client: AgentClient | None = None

    def _agents(self) -> AgentClient:
        """A client of the worker's namespace, kept so its caches (search attributes,
        the queue's workers) serve every operation."""
        temporal = nexus.client()
        if self._client is None or self._client.temporal is not temporal:
            self._client = AgentClient(temporal, task_queue=self._task_queue)
        return self._client

    @nexus.workflow_run_operation
    async def run_agent(
        self, ctx: nexus.WorkflowRunOperationContext, input: RunAgentInput
    ) -> nexus.WorkflowHandle[RunResult]:
        """Start (or attach to) a run; its result completes the operation."""
        try:
            check_run_request(input.agent, input.prompt, input.model, input.tenant)
        except ConfigError as e:
            raise _bad_request(str(e)) from e
        if input.agent not in self._hosted:
            raise _bad_request(
                f"no agent named {input.agent!r} is hosted behind this endpoint (task queue "
                f"{self._task_queue!r} of namespace {nexus.client().namespace!r}); "
                f"hosted: {', '.join(sorted(self._hosted))}"
            )
        agents = self._agents()
        run_id = input.id or new_run_id(input.agent)
        if input.id is not None and await agents.exists(run_id):
            existing = await agents.get(run_id).input()
            if (existing.agent, existing.prompt) != (input.agent, input.prompt):
                raise _bad_request(
                    f"run {run_id!r} already exists, as a run of agent {existing.agent!r} "
                    f"with another prompt ({shorten(existing.prompt, 80)!r}); choose another id"
                )
        start = await agents._run_start(
            input.agent, input.prompt, model=input.model, chat=False, tenant=input.tenant
        )
        try:
            # A running run with this id is attached to (the id policies of every
            # ratchet start): this operation completes with its result too.
            return await ctx.start_workflow(
                WORKFLOW_TYPE,
                start.input,
                id=run_id,
                task_queue=self._task_queue,
                result_type=RunResult,
                **start.options,
            )
        except WorkflowAlreadyStartedError as e:
            raise nexusrpc.OperationError(
                f"run {run_id!r} has already ended; its result is in namespace "
                f"{nexus.client().namespace!r} (`ratchet show {run_id}`), or choose another id",
                state=nexusrpc.OperationErrorState.FAILED,
            ) from e

    @sync_operation
    async def answer_approval(
        self, ctx: StartOperationContext, input: AnswerApprovalInput
    ) -> ApprovalRecord:
        """Approve or deny a waiting tool call, as ``ratchet approve``/``deny`` do."""
        if not input.approver.strip():
            raise _bad_request("say who answers: the approver is empty")
        run = self._agents().get(input.run_id)
        try:
            if input.approve:
                return await run.approve(
                    input.call_id,
                    approver=input.approver,
                    reason=input.reason,
                    raise_to=input.raise_to,
                    proof=input.proof,
                )
            return await run.deny(
                input.call_id, approver=input.approver, reason=input.reason, proof=input.proof
            )
        except (ApprovalError, ConfigError) as e:
            # Answered already, not waiting, a missing proof, a run that ended: asking
            # again cannot help.
            raise nexusrpc.OperationError(str(e), state=nexusrpc.OperationErrorState.FAILED) from e
        except RunNotFound as e:
            raise nexusrpc.HandlerError(str(e), type=nexusrpc.HandlerErrorType.NOT_FOUND) from e
        except RatchetError as e:  # no worker took the answer in time: worth retrying
            raise nexusrpc.HandlerError(str(e), type=nexusrpc.HandlerErrorType.UNAVAILABLE) from e


def _bad_request(message: str) -> nexusrpc.HandlerError:
    """An error the caller sees at once: retrying the same input cannot succeed."""
    return nexusrpc.HandlerError(message, type=nexusrpc.HandlerErrorType.BAD_REQUEST)
