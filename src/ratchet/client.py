"""AgentClient: start, follow, inspect and list runs. The CLI is a thin shell over it."""

from __future__ import annotations

import asyncio
import builtins
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, get_args

from temporalio.api.enums.v1 import EventType
from temporalio.client import (
    Client,
    WorkflowExecution,
    WorkflowExecutionStatus,
    WorkflowFailureError,
    WorkflowHandle,
    WorkflowQueryFailedError,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
    WorkflowUpdateStage,
)
from temporalio.common import (
    Priority,
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import ApplicationError, CancelledError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from ._connect import connect
from ._history import read_run, run_input
from ._hosting import check_hosted as _check_hosted
from ._limiter_protocol import (
    LIMITER_CONFIGURE_UPDATE,
    LIMITER_STATUS_QUERY,
    LIMITER_WORKFLOW_TYPE,
    LimiterStatus,
    RateLimit,
    limiter_id,
    provider_of_limiter,
)
from ._protocol import (
    APPROVE_UPDATE,
    DEFAULT_TASK_QUEUE,
    END_CHAT_SIGNAL,
    PENDING_QUERY,
    SEND_UPDATE,
    STATUS_QUERY,
    WORKFLOW_TYPE,
    ApprovalAnswer,
    ApprovalRecord,
    ChatMessage,
    ChatReply,
    PendingApproval,
    RunInput,
    RunResult,
    RunState,
    RunStatus,
)
from ._render import shorten
from ._search import AGENT, COST, STATUS, TOKENS, TURNS, search_attributes_registered
from .agent import PROVIDER_RE, check_agent_name, parse_model
from .errors import (
    ApprovalError,
    BudgetExceeded,
    ConfigError,
    RatchetError,
    RunCancelled,
    RunFailed,
    RunNotFound,
)
from .events import MessageRecorded, ModelCallFinished, RunEvent, RunFinished
from .messages import Message
from .transcripts import TranscriptStore

__all__ = ["RUN_STATES", "AgentClient", "RunHandle", "RunInfo", "check_status"]


@dataclass(frozen=True)
class RunInfo:
    """One line of ``ratchet ls``."""

    id: str
    agent: str
    status: str
    """One of :data:`RUN_STATES`: ratchet's state (starting, queued, running,
    waiting-approval, waiting-input, completed, failed, cancelled), or Temporal's for a
    run it closed itself (terminated, timed_out)."""
    started: datetime | None
    closed: datetime | None
    turns: int | None = None
    """From search attributes, when the namespace has them."""
    tokens: int | None = None
    cost_usd: float | None = None


class RunHandle:
    """A handle to one run (a workflow execution), by its id."""

    def __init__(self, handle: WorkflowHandle[object, RunResult], client: Client) -> None:
        self._handle = handle
        self._client = client

    @property
    def id(self) -> str:
        """The run's workflow id."""
        return self._handle.id

    async def result(self) -> RunResult:
        """Wait for the run to finish.

        Raises:
            RunFailed: the run failed; ``error_type`` names the cause from the taxonomy.
        """
        try:
            return await self._handle.result()
        except WorkflowFailureError as e:
            if isinstance(e.cause, CancelledError):
                raise RunCancelled(self.id) from e
            cause = e.cause
            while cause.__cause__ is not None and not isinstance(cause, ApplicationError):
                cause = cause.__cause__
            if isinstance(cause, ApplicationError):
                if cause.type == "BudgetExceeded" and cause.details:
                    d = cause.details[0]
                    raise BudgetExceeded(
                        self.id, cause.message, d["budget"], d["used"], d["limit"]
                    ) from e
                raise RunFailed(self.id, cause.type or "ApplicationError", cause.message) from e
            raise RunFailed(self.id, type(cause).__name__, str(cause)) from e
        except RPCError as e:
            raise _not_found(self.id, e) from e

    async def status(self) -> RunStatus:
        """The run's live status (needs a worker to answer the query)."""
        status: RunStatus = await self._query(STATUS_QUERY, RunStatus)
        return status

    async def transcript(self) -> list[Message]:
        """Every message so far, the system instructions included, read from the event
        history of all the run's executions (no worker needed).

        A message enters the transcript when the workflow hands it to the model (tool
        results), or when the model answers; results recorded after the run's last
        model call close it.
        """
        messages: dict[int, Message] = {}
        async for event in self.events(follow=False):
            if isinstance(event, MessageRecorded):
                messages[event.index] = event.message
        return [messages[i] for i in sorted(messages)]

    async def events(
        self, after: int = 0, *, follow: bool = True, store: TranscriptStore | None = None
    ) -> AsyncIterator[RunEvent]:
        """The run's events (``ratchet.events``): the past ones, then the live ones.

        Each event comes once, in order. Past events are read from the event history;
        live ones arrive through the server's long poll on the history (one request
        waits until the run records something new), so following costs no polling.
        It ends after the run's final event (``run_finished``); across a
        continue-as-new it goes on with the next execution.

        Args:
            after: resume after this ``seq`` (0: from the start).
            follow: False stops at the end of what is recorded now.
            store: a transcript store, to show prompts the history alone cannot
                resolve (see :func:`ratchet.events.events_of`).

        Raises:
            RunNotFound: no run has that id.
        """
        async for event in read_run(self._client, self.id, store=store, follow=follow, after=after):
            yield event

    async def first_reply(self) -> str:
        """The agent's answer to the run's prompt: its first answer without tool calls.

        For a chat run this returns as soon as the agent answers the opening message,
        while the run stays open for :meth:`send`.

        Raises:
            RunFailed: the run ended before answering.
        """
        async for event in self.events():
            if isinstance(event, ModelCallFinished) and event.response is not None:
                if not event.response.tool_calls:
                    return event.response.content or ""
            elif isinstance(event, RunFinished):
                break
        return (await self.result()).output

    async def _query(self, name: str, result_type: Any) -> Any:
        try:
            # A query is answered by a worker; without one the server would hold it for
            # its full deadline, so fail fast and let callers say what is missing.
            return await self._handle.query(
                name, result_type=result_type, rpc_timeout=timedelta(seconds=5)
            )
        except RPCError as e:
            raise _not_found(self.id, e) from e

    async def input(self) -> RunInput:
        """What the run was started with (agent, prompt, model, chat, tenant)."""
        return await run_input(self._client, self.id)

    async def info(self) -> RunInfo:
        """The run's status as ``ratchet ls`` shows it, from the server (no worker needed):
        ratchet's state (``waiting-approval``, ``queued``, ``waiting-input``...) when
        the namespace has ratchet's search attributes, else Temporal's."""
        try:
            desc = await self._handle.describe()
        except RPCError as e:
            raise _not_found(self.id, e) from e
        info = await _run_info(desc)
        assert info is not None  # describe() names the latest execution
        return info

    async def temporal_status(self) -> str:
        """Temporal's view of the execution: running, completed, failed, ..."""
        try:
            desc = await self._handle.describe()
        except RPCError as e:
            raise _not_found(self.id, e) from e
        return _status_name(desc.status)

    async def follow(self) -> AsyncIterator[Message]:
        """Yield each transcript message as it is recorded, until the run ends.

        Built on :meth:`events` (no polling). Call :meth:`result` afterwards for the
        outcome.
        """
        async for event in self.events():
            if isinstance(event, MessageRecorded):
                yield event.message

    async def pending(self) -> list[PendingApproval]:
        """Tool calls of this run waiting for approval."""
        pending: list[PendingApproval] = await self._query(PENDING_QUERY, list[PendingApproval])
        return pending

    async def approve(
        self, call_id: str, *, approver: str, reason: str = "", raise_to: float | None = None
    ) -> ApprovalRecord:
        """Approve a waiting tool call; it runs and the agent goes on.

        For a spent budget waiting for a decision (``Limits(on_budget="ask")``, tool
        ``budget``), approving lets the run go on with the budget raised to
        ``raise_to`` (default: by its configured amount beyond what the run used);
        the record's ``raise_to`` says to what.

        Raises:
            ApprovalError: the call was answered already, or is not waiting, or
                ``raise_to`` is given for a tool call or is not above what was used.
        """
        return await self._answer(call_id, True, approver, reason, raise_to)

    async def deny(self, call_id: str, *, approver: str, reason: str = "") -> ApprovalRecord:
        """Deny a waiting tool call; the model is told who denied it and why."""
        return await self._answer(call_id, False, approver, reason)

    async def _answer(
        self, call_id: str, approve: bool, approver: str, reason: str, raise_to: float | None = None
    ) -> ApprovalRecord:
        answer = ApprovalAnswer(
            call_id=call_id, approve=approve, approver=approver, reason=reason, raise_to=raise_to
        )
        record: ApprovalRecord = await self._update(
            APPROVE_UPDATE, answer, ApprovalRecord, ApprovalError
        )
        return record

    async def send(self, text: str) -> ChatReply:
        """Send a follow-up message to a chat run and wait for the agent's reply.

        Messages are answered in the order they arrive, one at a time.

        Raises:
            ConfigError: the run is not a chat, has ended, or the message is empty.
        """
        reply: ChatReply = await self._update(
            SEND_UPDATE, ChatMessage(text=text), ChatReply, ConfigError
        )
        return reply

    async def end_chat(self) -> None:
        """Close a chat run once the messages already sent are answered."""
        try:
            await self._handle.signal(END_CHAT_SIGNAL)
        except RPCError as e:
            raise _not_found(self.id, e) from e

    async def _update(
        self, name: str, arg: Any, result_type: type[Any], refused: type[RatchetError]
    ) -> Any:
        """Run an update: refused ones raise ``refused``; a run no worker picks up fails
        fast instead of hanging (the update needs a worker to be accepted)."""
        try:
            update = await self._handle.start_update(
                name,
                arg,
                result_type=result_type,
                wait_for_stage=WorkflowUpdateStage.ACCEPTED,
                rpc_timeout=_ACCEPT_TIMEOUT,
            )
            return await update.result()
        except WorkflowUpdateFailedError as e:
            cause = e.cause
            message = cause.message if isinstance(cause, ApplicationError) else str(cause)
            raise refused(f"run {self.id}: {message}") from e
        except WorkflowUpdateRPCTimeoutOrCancelledError as e:
            raise RatchetError(
                f"run {self.id}: no worker took the request within "
                f"{_ACCEPT_TIMEOUT.total_seconds():.0f} s; is a worker running for its agent?"
            ) from e
        except RPCError as e:
            raise _not_found(self.id, e) from e

    async def cancel(self) -> None:
        """Ask the run to stop: in-flight model and tool calls are cancelled, the
        transcript is kept and :meth:`result` raises :class:`~ratchet.RunCancelled`."""
        try:
            await self._handle.cancel()
        except RPCError as e:
            raise _not_found(self.id, e) from e

    async def picked_up(self) -> bool:
        """Whether a worker has started working on the run (a workflow task started)."""
        try:
            async for event in self._handle.fetch_history_events():
                if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED:
                    return True
        except RPCError as e:
            raise _not_found(self.id, e) from e
        return False


class AgentClient:
    """Start and steer agent runs.

    Example::

        client = await AgentClient.connect()
        result = await client.run("support", "Where is order 1042?")
    """

    def __init__(self, client: Client, *, task_queue: str = DEFAULT_TASK_QUEUE) -> None:
        self.temporal = client
        self.task_queue = task_queue
        self._search_attributes: bool | None = None

    async def _has_search_attributes(self) -> bool:
        if self._search_attributes is None:
            self._search_attributes = await search_attributes_registered(self.temporal)
        return self._search_attributes

    @classmethod
    async def connect(
        cls,
        address: str | None = None,
        *,
        namespace: str | None = None,
        profile: str | None = None,
        task_queue: str = DEFAULT_TASK_QUEUE,
    ) -> AgentClient:
        """Connect using ``temporalio.envconfig`` settings (see :func:`ratchet.connect`)."""
        return cls(
            await connect(address, namespace=namespace, profile=profile), task_queue=task_queue
        )

    async def start(
        self,
        agent: str,
        prompt: str,
        *,
        id: str | None = None,
        model: str | None = None,
        chat: bool = False,
        tenant: str | None = None,
        attach: bool = False,
        check_hosted: bool = False,
    ) -> RunHandle:
        """Start a run, or attach to the run that already has this ``id``.

        Starting twice with the same id never starts a second run, whether the
        first is still running or has finished: the same agent and prompt again
        attach to it. A different agent or prompt under an existing id is refused
        unless ``attach=True`` (which attaches to the existing run as it is). With
        ``chat=True`` the run stays open after answering; send follow-ups with
        :meth:`RunHandle.send`.

        ``tenant`` names whose run it is: the agent's
        ``max_concurrent_runs_per_tenant`` counts runs per tenant, and the run's tasks
        carry it as Temporal's fairness key (servers with task queue fairness
        enabled then share workers fairly between tenants).

        With ``check_hosted=True`` the run starts only if a worker on the task queue
        hosts ``agent`` (asked in one RPC; workers that do not say what they host
        count as hosting it), or if a run with ``id`` exists to attach to.

        Raises:
            ConfigError: the agent name, prompt or model string is invalid; ``id``
                names a run of another agent or prompt (and ``attach`` is False); or,
                with ``check_hosted``, no worker hosts the agent (the message names the
                task queue and the agents that are hosted).
        """
        check_agent_name(agent)
        if not prompt.strip():
            raise ConfigError("the prompt is empty: tell the agent what to do")
        if model is not None:
            parse_model(model)
        if tenant is not None and not _TENANT_RE.match(tenant):
            raise ConfigError(
                f"bad tenant {tenant!r}: 1-64 letters, digits, '_', '-' or '.', e.g. acme"
            )
        if check_hosted:
            await _check_hosted(self.temporal, self.task_queue, agent, run_id=id)
        run_id = id or f"{agent}-{uuid.uuid4().hex[:12]}"
        indexed = await self._has_search_attributes()
        try:
            handle = await self.temporal.start_workflow(
                WORKFLOW_TYPE,
                RunInput(
                    agent=agent,
                    prompt=prompt,
                    model=model,
                    search_attributes=indexed,
                    chat=chat,
                    tenant=tenant,
                ),
                id=run_id,
                task_queue=self.task_queue,
                result_type=RunResult,
                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                memo={"agent": agent},
                search_attributes=(
                    TypedSearchAttributes(
                        [SearchAttributePair(AGENT, agent), SearchAttributePair(STATUS, "starting")]
                    )
                    if indexed
                    else None
                ),
                # A worker that dies holding a workflow task (milliseconds of work) hands
                # it to another after this, not after Temporal's 10 s default.
                task_timeout=timedelta(seconds=5),
                static_summary=f"{agent}: {shorten(prompt, 200)}",
                priority=Priority(fairness_key=tenant) if tenant else Priority.default,
            )
        except WorkflowAlreadyStartedError:
            # Closed run with this id: attach to it rather than start a second one.
            handle = self.temporal.get_workflow_handle(run_id, result_type=RunResult)
        run = RunHandle(handle, self.temporal)
        if id is not None and not attach:
            existing = await run.input()
            if (existing.agent, existing.prompt) != (agent, prompt):
                raise ConfigError(
                    f"run {run_id!r} already exists, as a run of agent {existing.agent!r} "
                    f"with another prompt ({shorten(existing.prompt, 80)!r}); attach to it "
                    "with attach=True (ratchet run --attach), or choose another id"
                )
        return run

    async def run(
        self, agent: str, prompt: str, *, id: str | None = None, model: str | None = None
    ) -> RunResult:
        """Start (or attach to) a run and wait for its result."""
        handle = await self.start(agent, prompt, id=id, model=model)
        return await handle.result()

    async def pending(self, *, limit: int = 100) -> list[tuple[str, PendingApproval]]:
        """Tool calls waiting for approval across runs, as (run id, call)."""
        indexed = await self._has_search_attributes()
        # Without search attributes every running run must be asked.
        waiting = await self.list(limit=limit, status="waiting-approval" if indexed else "running")
        out: list[tuple[str, PendingApproval]] = []
        for run in waiting:
            try:
                calls = await self.get(run.id).pending()
            except (WorkflowQueryFailedError, RPCError):
                continue  # closed meanwhile, or no worker to answer
            out.extend((run.id, c) for c in calls)
        return out

    def get(self, run_id: str) -> RunHandle:
        """A handle to an existing run."""
        if not run_id.strip():
            raise ConfigError("the run id is empty")
        return RunHandle(
            self.temporal.get_workflow_handle(run_id, result_type=RunResult), self.temporal
        )

    async def list(
        self, *, limit: int = 20, agent: str | None = None, status: str | None = None
    ) -> list[RunInfo]:
        """The most recent runs, newest first.

        Args:
            limit: at most this many.
            agent: only runs of this agent.
            status: only runs in this state, one of :data:`RUN_STATES`.

        Raises:
            ConfigError: a bad agent name, or a status not in :data:`RUN_STATES`.
        """
        if agent is not None:
            check_agent_name(agent)
        if status is not None:
            status = check_status(status)
        indexed = await self._has_search_attributes()
        query = f"WorkflowType = '{WORKFLOW_TYPE}'"
        if indexed and agent:
            query += f" AND {AGENT.name} = '{agent}'"
        if status in _TEMPORAL_ONLY_STATES:  # closed by Temporal: never reported by the run
            query += f" AND ExecutionStatus = '{_TEMPORAL_ONLY_STATES[status]}'"
        elif indexed and status:
            query += f" AND {STATUS.name} = '{status}'"
        runs: list[RunInfo] = []
        async for wf in self.temporal.list_workflows(query):
            info = await _run_info(wf)
            if info is None:
                continue  # an earlier execution of a long run: its latest one is listed
            if (agent and info.agent != agent) or (status and info.status != status):
                continue
            runs.append(info)
            if len(runs) >= limit:
                break
        # The server lists running runs first, then by close time: show newest first.
        far_past = datetime.min.replace(tzinfo=UTC)
        return sorted(runs, key=lambda r: r.started or far_past, reverse=True)

    async def limits(self) -> builtins.list[LimiterStatus]:
        """Every provider limiter: its limits, the usage of its current window, its queue.

        A limiter no worker answers for within 5 s (all its workers are down) is
        left out (``ratchet limits`` names it).
        """
        answered, _ = await self._all_limiters()
        return answered

    async def _all_limiters(
        self,
    ) -> tuple[builtins.list[LimiterStatus], builtins.list[tuple[str, str]]]:
        """The limiters' statuses, and (provider, task queue) of those nobody answers for."""
        query = f"WorkflowType = '{LIMITER_WORKFLOW_TYPE}' AND ExecutionStatus = 'Running'"
        found = [(wf.id, wf.task_queue) async for wf in self.temporal.list_workflows(query)]
        # Together: limiters nobody answers for cost the 5 s query timeout once, not
        # once each.
        results = await asyncio.gather(
            *(self._limiter_status(i) for i, _ in found), return_exceptions=True
        )
        answered: builtins.list[LimiterStatus] = []
        unanswered: builtins.list[tuple[str, str]] = []
        for (workflow_id, queue), result in zip(found, results, strict=True):
            if isinstance(result, LimiterStatus):
                answered.append(result)
            elif isinstance(result, RPCError) and result.status in _NO_WORKER:
                unanswered.append((provider_of_limiter(workflow_id), queue))
            elif isinstance(result, WorkflowQueryFailedError) or (
                isinstance(result, RPCError) and result.status == RPCStatusCode.NOT_FOUND
            ):
                continue  # ended since it was listed, or between runs (continue-as-new)
            else:
                raise result
        return sorted(answered, key=lambda s: s.provider), sorted(unanswered)

    async def limits_of(self, provider: str) -> LimiterStatus:
        """One provider's limiter status.

        Raises:
            ConfigError: the provider has no limiter (yet).
        """
        _check_provider(provider)
        try:
            return await self._limiter_status(limiter_id(provider))
        except RPCError as e:
            raise _no_limiter(provider, e) from e

    async def set_limits(
        self,
        provider: str,
        *,
        rpm: int | None = None,
        tpm: int | None = None,
        window_seconds: float | None = None,
    ) -> LimiterStatus:
        """Change a provider's limits while it runs; the next grant uses them.

        Args:
            provider: the provider's registered name, e.g. ``openai``.
            rpm: requests per window; 0 removes the limit; None keeps it.
            tpm: tokens per window; 0 removes the limit; None keeps it.
            window_seconds: the window; None keeps it.

        Raises:
            ConfigError: bad values, or the provider has no limiter (it starts with the
                first model call of a worker configured with ``rate_limits`` for it).
        """
        current = (await self.limits_of(provider)).limit
        changes: dict[str, Any] = {}
        for name, value in (("rpm", rpm), ("tpm", tpm)):
            if value is not None:
                if value < 0:
                    raise ConfigError(f"{name} must be >= 0 (0 removes the limit), got {value}")
                changes[name] = value or None
        if window_seconds is not None:
            changes["window_seconds"] = window_seconds
        try:
            limit = RateLimit.model_validate({**current.model_dump(), **changes})
        except ValueError as e:
            raise ConfigError(f"bad limits for provider {provider!r}: {e}") from e
        handle = self.temporal.get_workflow_handle(limiter_id(provider))
        try:
            status: LimiterStatus = await handle.execute_update(
                LIMITER_CONFIGURE_UPDATE,
                limit,
                result_type=LimiterStatus,
                rpc_timeout=_ACCEPT_TIMEOUT,
            )
        except WorkflowUpdateFailedError as e:
            cause = e.cause
            message = cause.message if isinstance(cause, ApplicationError) else str(cause)
            raise ConfigError(f"provider {provider!r}: {message}") from e
        except RPCError as e:
            raise _no_limiter(provider, e) from e
        return status

    async def _limiter_status(self, workflow_id: str) -> LimiterStatus:
        handle = self.temporal.get_workflow_handle(workflow_id)
        status: LimiterStatus = await handle.query(
            LIMITER_STATUS_QUERY, result_type=LimiterStatus, rpc_timeout=timedelta(seconds=5)
        )
        return status


# How a query to a workflow no worker polls for ends: our 5 s rpc_timeout expires
# (the client reports CANCELLED "Timeout expired"), the server's deadline passes, or
# the server knows no poller.
_NO_WORKER = (
    RPCStatusCode.CANCELLED,
    RPCStatusCode.DEADLINE_EXCEEDED,
    RPCStatusCode.FAILED_PRECONDITION,
)


def _check_provider(provider: str) -> None:
    if not PROVIDER_RE.match(provider):
        raise ConfigError(
            f"bad provider name {provider!r}: lower-case letters, digits, '_' and '-', e.g. openai"
        )


def _no_limiter(provider: str, e: RPCError) -> Exception:
    if e.status == RPCStatusCode.NOT_FOUND:
        return ConfigError(
            f"provider {provider!r} has no limiter: it starts with the first model call of a "
            "worker given rate limits for it (create_worker(rate_limits=...), "
            "`ratchet worker --rate-limit`); `ratchet limits` lists the running ones"
        )
    return e


_ACCEPT_TIMEOUT = timedelta(seconds=30)
_TEMPORAL_ONLY_STATES = {"terminated": "Terminated", "timed_out": "TimedOut"}
_TENANT_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_RATCHET_STATE = {"canceled": "cancelled"}

RUN_STATES: tuple[str, ...] = (*get_args(RunState), "terminated", "timed_out")
"""Every status a run can have in ``ratchet ls``: ratchet's, and Temporal's own for runs
it closed itself (terminated, timed out)."""


def check_status(status: str) -> str:
    """``status`` if it is one of :data:`RUN_STATES`, else a ConfigError saying which are."""
    if status in RUN_STATES:
        return status
    hint = " (ratchet spells it 'cancelled')" if status == "canceled" else ""
    raise ConfigError(f"unknown status {status!r}{hint}; use one of: {', '.join(RUN_STATES)}")


async def _run_info(wf: WorkflowExecution) -> RunInfo | None:
    """One run as ``ratchet ls`` shows it; None for an earlier execution of a long run."""
    attrs = wf.typed_search_attributes
    temporal_state = _status_name(wf.status)
    if temporal_state == "continued_as_new":
        return None
    name = attrs.get(AGENT) or str((await wf.memo()).get("agent", "?"))
    # A run closed by Temporal itself (terminated, timed out) never reported it.
    state = (
        temporal_state
        if temporal_state in ("terminated", "timed_out")
        else attrs.get(STATUS) or _RATCHET_STATE.get(temporal_state, temporal_state)
    )
    return RunInfo(
        id=wf.id,
        agent=name,
        status=state,
        started=wf.start_time,
        closed=wf.close_time,
        turns=attrs.get(TURNS),
        tokens=attrs.get(TOKENS),
        cost_usd=attrs.get(COST),
    )


def _status_name(status: WorkflowExecutionStatus | None) -> str:
    return status.name.lower() if status is not None else "unknown"


def _not_found(run_id: str, e: RPCError) -> Exception:
    if e.status == RPCStatusCode.NOT_FOUND and "already completed" in e.message:
        return ConfigError(f"run {run_id!r} has already ended")
    if e.status == RPCStatusCode.NOT_FOUND:
        return RunNotFound(f"no run with id {run_id!r}; list runs with `ratchet ls`")
    return e
