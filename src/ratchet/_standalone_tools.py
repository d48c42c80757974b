"""Tools as standalone activities: one tool call, durable, outside any run.

``AgentClient.call_tool`` (``ratchet tool run``) runs one tool of a hosted agent as a
Temporal standalone activity on the agent's task queue: the same tool code as in a
run, with the tool's timeout, retries and heartbeat, the agent's policy, and an
idempotency key stable across attempts. The server keeps the activity's record, so a
worker that dies mid-call has it retried elsewhere, and the Web UI lists it under
Standalone Activities. Operators use it to retry a side effect by hand (with the key
the call had in its run), and the MCP server to offer single tools.

How the client learns a tool's options: it asks a worker. The client holds no
``Agent`` (it may not even have the code), and a run's snapshot may be old or absent,
while a worker hosting the agent knows it as it is now, MCP tools included. So the
client first runs the worker's snapshot activity as a standalone activity (the same
one a run starts with, a few tens of milliseconds), then starts the call with the
tool's timeout, attempts and heartbeat from that snapshot. The snapshot also carries
the policy and the argument schema: a denied call, one that needs an approval nobody
gave, or bad arguments are refused before anything is started. The worker checks the
policy and the arguments again with its own definition before the tool runs, since a
standalone call has no workflow to do it.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from temporalio.api.workflowservice.v1 import DeleteActivityExecutionRequest
from temporalio.client import (
    ActivityExecutionStatus,
    ActivityFailureError,
    ActivityHandle,
    Client,
    PendingActivityState,
)
from temporalio.common import (
    ActivityIDConflictPolicy,
    ActivityIDReusePolicy,
    RetryPolicy,
    SearchAttributePair,
    TypedSearchAttributes,
)
from temporalio.exceptions import (
    ActivityAlreadyStartedError,
    ApplicationError,
    TimeoutError,
    TimeoutType,
)
from temporalio.service import RPCError, RPCStatusCode

from ._hosting import check_hosted
from ._protocol import (
    SNAPSHOT_ACTIVITY,
    STANDALONE_TOOL_ACTIVITY,
    ApprovalRecord,
    SnapshotRequest,
    StandaloneToolRequest,
    ToolResult,
)
from ._render import short_arguments
from ._schema import check_arguments
from ._search import AGENT
from .agent import AgentSpec, check_agent_name
from .approval_proof import secret_from_env, sign_approval, verify_approval
from .errors import ApprovalError, ConfigError, ToolCallFailed
from .policy import PolicyDecision
from .tools import ToolSpec

__all__ = [
    "STANDALONE_RUN_ID",
    "ToolCallHandle",
    "ToolCallProgress",
    "ToolCallResult",
    "approval_record",
    "checked_call",
    "hosted_agent_spec",
    "start_tool_call",
]

_LOOKUP_SECONDS = 60.0
"""How long the client waits for a worker to describe the agent (MCP servers are
asked then, as when a run starts)."""

ToolCallState = Literal["scheduled", "running", "retrying", "paused", "completed", "failed"]


def checked_call(
    spec: AgentSpec, tool: str, arguments: dict[str, Any], approved_by: str | None
) -> tuple[ToolSpec, PolicyDecision]:
    """The tool and the policy's decision for a standalone call of ``tool``.

    Pure: the client decides with it before starting anything, and the worker again
    with its own definition of the agent before the tool runs.

    Raises:
        ConfigError: the agent has no such tool (the message lists its tools); the
            tool is not an activity (a sub-agent, a handoff) or keeps per-run state (a
            stateful MCP server's); the arguments do not match its schema (the message
            names the field); the policy denies the call; or it needs an approval and
            ``approved_by`` is not given.
    """
    found = spec.tool(tool)
    where = f"tool {tool!r} of agent {spec.name!r}"
    if found is None:
        names = ", ".join(t.name for t in spec.tools) or "(none)"
        raise ConfigError(
            f"agent {spec.name!r} has no tool {tool!r}; its tools: {names} "
            f"(ratchet tools {spec.name} lists them with their schemas)"
        )
    if found.agent is not None:
        raise ConfigError(
            f"{where} runs agent {found.agent!r} as a sub-agent (a child workflow, not an "
            f"activity), so it cannot be called on its own; start a run of {found.agent!r}"
        )
    if found.handoff is not None:
        raise ConfigError(
            f"{where} hands a run's conversation to agent {found.handoff!r}; outside a run "
            f"there is nothing to hand off: start a run of {found.handoff!r}"
        )
    if found.mcp_stateful:
        raise ConfigError(
            f"{where} belongs to the stateful MCP server {found.mcp_server!r}, whose session "
            "lives with one run; call it inside a run"
        )
    problems = check_arguments(found.parameters, arguments)
    if problems:
        raise ConfigError(
            f"invalid arguments for {where}: {'; '.join(problems)}. "
            f"Expected schema: {json.dumps(found.parameters)}"
        )
    decision = spec.policy.decide(tool, arguments, side_effects=found.side_effects)
    why = f": {decision.reason}" if decision.reason else ""
    if decision.decision == "deny":
        raise ConfigError(
            f"the policy of agent {spec.name!r} denies {where} (rule {decision.rule!r}){why}; "
            "nothing was run"
        )
    if decision.decision == "require_approval" and not approved_by:
        raise ConfigError(
            f"{where} needs a person's approval (rule {decision.rule!r}){why}; nothing was "
            "run. Pass approved_by=NAME (ratchet tool run --approved-by NAME) to run it as "
            "approved by NAME, who is recorded with the call"
        )
    return found, decision


STANDALONE_RUN_ID = ""
"""The run id a standalone call's approval proof is signed for: none (so a proof made
for a call in a run never fits a standalone call, nor the other way round)."""


def approval_record(
    call_id: str,
    tool: str,
    decision: PolicyDecision,
    approved_by: str | None,
    proof: str | None,
    issued_by: datetime,
) -> ApprovalRecord | None:
    """The audit record of a standalone call's approval (None: it needed none).

    With an approval secret on the worker (``RATCHET_APPROVAL_SECRET``), as for answers
    in runs, the approver's name must come with a proof made with that secret; it is
    checked as of ``issued_by`` (when the call was scheduled), so a retry an hour later
    is still approved.

    Raises:
        ApprovalError: the worker has a secret and the proof is missing or wrong.
    """
    if decision.decision != "require_approval" or not approved_by:
        return None
    secret = secret_from_env()
    if secret is not None:
        if proof is None:
            raise ApprovalError(
                f"this deployment requires authenticated approvals, and the approval of "
                f"{approved_by!r} for tool {tool!r} carries no proof: call it where "
                "RATCHET_APPROVAL_SECRET is set, so the client signs it"
            )
        verify_approval(
            secret,
            proof,
            run_id=STANDALONE_RUN_ID,
            call_id=call_id,
            approve=True,
            approver=approved_by,
            raise_to=None,
            now=issued_by,
        )
    return ApprovalRecord(
        call_id=call_id,
        tool=tool,
        approved=True,
        approver=approved_by,
        reason="approved by the caller of a standalone tool call",
        at=datetime.now(UTC),
        rule=decision.rule,
        authenticated=secret is not None,
    )


@dataclass(frozen=True)
class ToolCallResult:
    """How a standalone tool call ended (``AgentClient.call_tool``)."""

    agent: str
    tool: str
    content: str
    """The tool's result, as a model would read it."""
    is_error: bool
    """The tool raised (an ordinary exception, which a run would show the model) or
    rejected its arguments; ``content`` says why."""
    activity_id: str
    """The standalone activity's id: ``temporal activity describe --activity-id ID``,
    and the Web UI's Standalone Activities page."""
    activity_run_id: str | None
    """The server's id of this execution of ``activity_id`` (a failed call's id may run
    again); the Web UI's page of the call is ``/namespaces/NS/activities/ID/RUN_ID``."""
    idempotency_key: str
    """The ``ToolContext.idempotency_key`` every attempt saw."""
    attempts: int
    """Attempts it took (more than 1: a worker died or the tool asked for a retry)."""


@dataclass(frozen=True)
class ToolCallProgress:
    """Where a standalone tool call is, as the server tells."""

    state: ToolCallState
    attempt: int
    last_failure: str | None = None
    """Why the latest attempt failed, e.g. a heartbeat timeout after a worker died."""


class ToolCallHandle:
    """A standalone tool call that was started: wait for its result, or watch it."""

    def __init__(
        self,
        client: Client,
        agent: str,
        tool: str,
        activity_id: str,
        idempotency_key: str,
        handle: ActivityHandle[ToolResult] | None = None,
    ) -> None:
        self.agent = agent
        self.tool = tool
        self.id = activity_id
        """The standalone activity's id."""
        self.idempotency_key = idempotency_key
        self._handle = handle or client.get_activity_handle(activity_id, result_type=ToolResult)
        self.run_id = self._handle.run_id
        """The server's id of this execution of the activity (None: the latest)."""

    async def progress(self) -> ToolCallProgress:
        """The call's state and attempt now (one ``DescribeActivityExecution``)."""
        described = await self._handle.describe(include_last_failure=True)
        failure = await described.last_failure() if described.has_last_failure() else None
        last = _failure_text(failure) if failure is not None else None
        match described.status:
            case ActivityExecutionStatus.COMPLETED:
                state: ToolCallState = "completed"
            case ActivityExecutionStatus.RUNNING if (
                described.run_state == PendingActivityState.STARTED
            ):
                state = "running"
            case ActivityExecutionStatus.RUNNING if (
                described.run_state != PendingActivityState.PAUSED
            ):
                # Waiting for a worker: its first attempt, or a retry after a failure.
                state = "retrying" if described.attempt > 1 else "scheduled"
            case ActivityExecutionStatus.RUNNING | ActivityExecutionStatus.PAUSED:
                state = "paused"
            case _:
                state = "failed"
        return ToolCallProgress(state=state, attempt=described.attempt, last_failure=last)

    async def result(self) -> ToolCallResult:
        """Wait for the call to end.

        Raises:
            ToolCallFailed: the call failed for good: its attempts ran out (timeouts,
                ``RetryableToolError``), a tool declared ``fatal`` raised, or the worker
                refused it (``error_type`` says which).
        """
        try:
            result = await self._handle.result()
        except ActivityFailureError as e:
            attempts = (await self._handle.describe()).attempt
            error_type, message = _failure_of(e.cause)
            raise ToolCallFailed(self.id, error_type, message, attempts) from None
        attempts = (await self._handle.describe()).attempt
        return ToolCallResult(
            agent=self.agent,
            tool=self.tool,
            content=result.content,
            is_error=result.is_error,
            activity_id=self.id,
            activity_run_id=self.run_id,
            idempotency_key=self.idempotency_key,
            attempts=attempts,
        )


async def start_tool_call(
    client: Client,
    task_queue: str,
    agent: str,
    tool: str,
    arguments: dict[str, Any],
    *,
    id: str | None = None,
    idempotency_key: str | None = None,
    approved_by: str | None = None,
    indexed: bool = False,
) -> ToolCallHandle:
    """Start ``tool`` of ``agent`` as a standalone activity on ``task_queue``.

    See ``AgentClient.start_tool_call`` for what it checks and the rules for ``id``.
    ``indexed``: the namespace has the ``RatchetAgent`` search attribute; the call
    carries it, so ``RatchetAgent = "support"`` finds an agent's calls.
    """
    check_agent_name(agent)
    if not isinstance(arguments, dict):
        raise ConfigError(
            f"the arguments of tool {tool!r} must be a JSON object, got {type(arguments).__name__}"
        )
    if approved_by is not None and not approved_by.strip():
        raise ConfigError("approved_by is empty: name the person who approved the call")
    activity_id = id or f"{agent}.{tool}-{uuid.uuid4().hex[:12]}"
    spec = await hosted_agent_spec(client, task_queue, agent, for_call=activity_id)
    found, _ = checked_call(spec, tool, arguments, approved_by)
    key = idempotency_key or activity_id
    secret = secret_from_env()
    request = StandaloneToolRequest(
        agent=agent,
        tool=found,
        arguments=arguments,
        idempotency_key=key,
        heartbeat_seconds=spec.limits.tool_heartbeat_seconds,
        approved_by=approved_by,
        # Where the approval secret is, its holder is trusted to name the approver (as
        # with `ratchet approve`); workers that have it accept no name without a proof.
        approval_proof=(
            sign_approval(
                secret,
                run_id=STANDALONE_RUN_ID,
                call_id=activity_id,
                approve=True,
                approver=approved_by,
                raise_to=None,
            )
            if secret is not None and approved_by
            else None
        ),
    )
    try:
        handle = await client.start_activity(
            STANDALONE_TOOL_ACTIVITY,
            request,
            id=activity_id,
            task_queue=task_queue,
            result_type=ToolResult,
            # The options a run gives the tool (workflows/_tool_calls.py), so it behaves
            # the same: each attempt's timeout, the heartbeat that tells a dead worker,
            # and the tool's attempts. A worker's refusals are non-retryable errors.
            start_to_close_timeout=timedelta(seconds=found.timeout_seconds),
            heartbeat_timeout=timedelta(seconds=spec.limits.tool_heartbeat_seconds),
            retry_policy=RetryPolicy(maximum_attempts=found.max_attempts),
            # One id, one call: a second start while it runs attaches to it, and after it
            # completed returns its result (below); only a failed call's id runs again.
            id_conflict_policy=ActivityIDConflictPolicy.USE_EXISTING,
            id_reuse_policy=ActivityIDReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY,
            summary=f"{agent}.{tool}({short_arguments(arguments)})",
            search_attributes=(
                TypedSearchAttributes([SearchAttributePair(AGENT, agent)]) if indexed else None
            ),
        )
    except ActivityAlreadyStartedError as e:
        handle = client.get_activity_handle(activity_id, run_id=e.run_id, result_type=ToolResult)
    if id is not None:
        # An explicit id may name an earlier call: it must be this same call.
        key = await _same_call(handle, request, idempotency_key)
    return ToolCallHandle(client, agent, tool, activity_id, key, handle)


async def hosted_agent_spec(
    client: Client, task_queue: str, agent: str, *, for_call: str | None = None
) -> AgentSpec:
    """The agent as a worker on ``task_queue`` hosts it now: its snapshot activity, run as
    a standalone activity (``for_call``: the id of the call it prepares).

    Raises:
        ConfigError: no worker hosts the agent, or the server refuses standalone
            activities (the message names the dynamic config key).
    """
    check_agent_name(agent)
    await check_hosted(client, task_queue, agent)
    try:
        handle = await client.start_activity(
            SNAPSHOT_ACTIVITY,
            SnapshotRequest(agent=agent),
            id=f"{for_call or agent}.describe-{uuid.uuid4().hex[:6]}",
            task_queue=task_queue,
            result_type=AgentSpec,
            schedule_to_close_timeout=timedelta(seconds=_LOOKUP_SECONDS),
            retry_policy=RetryPolicy(maximum_attempts=3),
            summary=f"describe agent {agent} for a standalone tool call",
        )
    except RPCError as e:
        if "standalone activit" in e.message.lower():
            raise ConfigError(
                f"the Temporal server refuses standalone activities ({e.message}), so no "
                "tool can be called on its own: set the server's dynamic config "
                "activity.enableStandalone to true (the dev server has it on)"
            ) from None
        raise
    try:
        spec: AgentSpec = await handle.result()
    except ActivityFailureError as e:
        error_type, message = _failure_of(e.cause)
        if error_type in ("UnknownAgent", "ConfigError"):
            raise ConfigError(message) from None
        raise ConfigError(
            f"no worker on task queue {task_queue!r} could describe agent {agent!r} "
            f"({error_type}: {message}); check that a worker hosting it runs"
        ) from None
    finally:
        # A means, not a call: only the calls stay in the Standalone Activities listing.
        await _delete_activity(client, handle.id, handle.run_id or "")
    return spec


async def _delete_activity(client: Client, activity_id: str, run_id: str) -> None:
    """Delete a finished activity, retrying briefly: seen in CI, a first try just after
    its result could fail, which left the describe step in the listing."""
    request = DeleteActivityExecutionRequest(
        namespace=client.namespace, activity_id=activity_id, run_id=run_id
    )
    for attempt in range(5):
        try:
            await client.workflow_service.delete_activity_execution(request)
            return
        except RPCError as e:
            if e.status == RPCStatusCode.NOT_FOUND or attempt == 4:
                return
            await asyncio.sleep(0.5)


async def _same_call(
    handle: ActivityHandle[ToolResult], request: StandaloneToolRequest, key: str | None
) -> str:
    """The idempotency key of the call ``handle`` names, checked to be ``request``'s call."""
    described = await handle.describe(include_input=True)
    inputs = await described.input([StandaloneToolRequest]) if described.has_input() else None
    earlier = inputs[0] if inputs else None
    if (
        not isinstance(earlier, StandaloneToolRequest)
        or (earlier.agent, earlier.tool.name, earlier.arguments)
        != (request.agent, request.tool.name, request.arguments)
        or (key is not None and earlier.idempotency_key != key)
    ):
        what = (
            f"{earlier.agent}.{earlier.tool.name}({short_arguments(earlier.arguments)}) with "
            f"idempotency key {earlier.idempotency_key!r}"
            if isinstance(earlier, StandaloneToolRequest)
            else f"an activity of type {described.activity_type!r}"
        )
        raise ConfigError(
            f"activity id {handle.id!r} is taken by another call: {what}. Pass another id "
            "(or none, for a fresh one)"
        )
    return earlier.idempotency_key


def _failure_of(cause: BaseException | None) -> tuple[str, str]:
    """The taxonomy name and message of a standalone activity's failure."""
    if isinstance(cause, ApplicationError):
        return cause.type or "ApplicationError", cause.message
    if isinstance(cause, TimeoutError):
        if cause.type == TimeoutType.HEARTBEAT:
            return "ToolTimeout", "no heartbeat in time: the worker running it stopped or died"
        kind = cause.type.name.lower().replace("_", "-") if cause.type else "a"
        return "ToolTimeout", f"the attempt hit its {kind} timeout"
    return (type(cause).__name__ if cause else "ActivityError"), str(cause)


def _failure_text(failure: BaseException) -> str:
    error_type, message = _failure_of(failure)
    return f"{error_type}: {message}"
