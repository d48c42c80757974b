"""The ``ratchet.nexus`` service definition: what callers import.

A caller (a workflow in another namespace, another team's service) needs only this
contract and a Nexus endpoint that routes to the agents' task queue; it never learns
the queue. The inputs are dataclasses, which every Temporal data converter reads and
writes; the results are ratchet's models (:class:`~ratchet.RunResult`,
``ApprovalRecord``), read best with ``temporalio.contrib.pydantic.pydantic_data_converter``.
"""

from __future__ import annotations

from dataclasses import dataclass

import nexusrpc

from .._protocol import ApprovalRecord, RunResult

__all__ = ["SERVICE_NAME", "AgentsService", "AnswerApprovalInput", "RunAgentInput"]

SERVICE_NAME = "ratchet.nexus"
"""The Nexus service's name, as endpoints and the caller's history show it."""


@dataclass(frozen=True)
class RunAgentInput:
    """Input of ``run_agent``: run ``agent`` on ``prompt``, durably, and answer."""

    agent: str
    """The agent's name, as the worker behind the endpoint hosts it."""
    prompt: str
    id: str | None = None
    """The run's id in the agents' namespace; None: ``<agent>-<12 hex digits>``. Asking
    again with the id of a running run (same agent and prompt) attaches to that run."""
    model: str | None = None
    """Overrides the agent's model for this run, e.g. ``openai:gpt-4o-mini``."""
    tenant: str | None = None
    """Whose run it is (per-tenant caps, fairness, ``ratchet ls --tenant``)."""


@dataclass(frozen=True)
class AnswerApprovalInput:
    """Input of ``answer_approval``: approve or deny a tool call a run waits on."""

    run_id: str
    call_id: str
    """The waiting call's id (``ratchet pending``, ``RunHandle.pending()``)."""
    approve: bool
    approver: str
    """Who answers; the run's audit trail records this name."""
    reason: str = ""
    raise_to: float | None = None
    """Budget decisions only: the budget's new limit."""
    proof: str | None = None
    """``ratchet.approval_proof.sign_approval`` of this answer; required when the
    agents' workers have ``RATCHET_APPROVAL_SECRET`` set."""


@nexusrpc.service(name=SERVICE_NAME)
class AgentsService:
    """Agents as Nexus operations."""

    run_agent: nexusrpc.Operation[RunAgentInput, RunResult]
    """Start a durable run and complete with its result; cancelling the operation
    cancels the run."""
    answer_approval: nexusrpc.Operation[AnswerApprovalInput, ApprovalRecord]
    """Answer a pending approval of a run; completes with how it ended."""
