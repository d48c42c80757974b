"""AgentClient: start, follow, inspect and list runs. The CLI is a thin shell over it."""

from __future__ import annotations

import asyncio
import base64
import binascii
import builtins
import hashlib
import os
import time
from collections.abc import AsyncIterator, Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar, overload

from temporalio.client import (
    Client,
    WorkflowExecution,
    WorkflowQueryFailedError,
    WorkflowUpdateFailedError,
)
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
)
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from ._connect import connect
from ._hosting import QueueHosting
from ._hosting import check_hosted as _check_hosted
from ._hosting import hosted_agents as _hosted_agents
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
    DEFAULT_TASK_QUEUE,
    WORKFLOW_TYPE,
    PendingApproval,
    RunResult,
)
from ._render import shorten
from ._run_start import RunStart, check_run_request, new_run_id, run_start
from ._runs import (
    ACCEPT_TIMEOUT,
    RUN_STATES,
    TEMPORAL_ONLY_STATES,
    RunHandle,
    RunInfo,
    RunPage,
    check_status,
    check_tenant,
    run_info,
)
from ._search import (
    AGENT,
    ALL,
    FORK_OF,
    RUN_ATTRIBUTES,
    STATUS,
    TENANT,
    registered_search_attributes,
)
from ._standalone_tools import ToolCallHandle, ToolCallProgress, ToolCallResult
from ._standalone_tools import start_tool_call as _start_tool_call
from .agent import PROVIDER_RE, check_agent_name
from .errors import (
    ConfigError,
)
from .output import TypedRunResult
from .streaming import DeltaStore
from .transcripts import TranscriptStore

__all__ = [
    "RUN_STATES",
    "AgentClient",
    "RunHandle",
    "RunInfo",
    "RunPage",
    "ToolCallHandle",
    "ToolCallProgress",
    "ToolCallResult",
    "check_status",
    "check_tenant",
]

T = TypeVar("T")


_EVERY_ATTRIBUTE = frozenset(key.name for key in ALL)
_RECHECK_MISSING_SECONDS = 1.0
"""How old an answer that lacks some search attributes may be before it is asked again:
at most one more call per second while a namespace is not (fully) registered."""


class AgentClient:
    """Start and steer agent runs.

    Example::

        client = await AgentClient.connect()
        result = await client.run("support", "Where is order 1042?")
    """

    def __init__(
        self,
        client: Client,
        *,
        task_queue: str = DEFAULT_TASK_QUEUE,
        deltas: DeltaStore | None = None,
    ) -> None:
        self.temporal = client
        self.task_queue = task_queue
        self.deltas = deltas
        """Where run handles read streamed replies from (None: the delta store of
        ``RATCHET_TRANSCRIPT_STORE``, else the embedded default, as workers use)."""
        self._registered: frozenset[str] | None = None
        self._registered_asked = 0.0
        """``time.monotonic()`` when ``_registered`` was asked."""
        self._hosting_seen: tuple[float, QueueHosting | None] | None = None
        """When the queue's workers were last described, and what they announced."""

    async def tenants_indexed(self) -> bool:
        """Whether the namespace has the ``RatchetTenant`` search attribute, so a
        tenant's runs can be listed (runs started without it never can be)."""
        return TENANT.name in await self._registered_attributes()

    async def _registered_attributes(self) -> frozenset[str]:
        """Which of ratchet's search attributes the namespace has.

        All of them: asked once, then kept. Some missing: asked again once the answer is
        a few seconds old, so a long-lived client (``ratchet serve``) notices that they
        were registered after it started, as its error messages ask, without a restart.
        """
        stale = time.monotonic() - self._registered_asked > _RECHECK_MISSING_SECONDS
        if self._registered is None or (self._registered < _EVERY_ATTRIBUTE and stale):
            self._registered = await registered_search_attributes(self.temporal)
            self._registered_asked = time.monotonic()
        return self._registered

    async def _queue_hosting(self) -> QueueHosting | None:
        """What the task queue's workers announce, asked at most every 30 s (one
        ``DescribeTaskQueue``); None when the server will not say."""
        now = time.monotonic()
        if self._hosting_seen is None or now - self._hosting_seen[0] > 30:
            try:
                hosting: QueueHosting | None = await _hosted_agents(self.temporal, self.task_queue)
            except RPCError:
                hosting = None
            self._hosting_seen = (now, hosting)
        return self._hosting_seen[1]

    async def has_search_attributes(self) -> bool:
        """Whether the namespace has ratchet's search attributes (kept once it has; asked
        again every few seconds while it has not): without them, listings filter by agent
        and status after each page."""
        return await self._registered_attributes() >= RUN_ATTRIBUTES

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
        ``max_concurrent_runs_per_tenant`` counts runs per tenant, the run's tasks
        carry it as Temporal's fairness key (servers with task queue fairness
        enabled then share workers fairly between tenants), and the run carries it
        in the ``RatchetTenant`` search attribute (when the namespace has it), so
        :meth:`list` can ask for one tenant's runs.

        With ``check_hosted=True`` the run starts only if a worker on the task queue
        hosts ``agent`` (asked in one RPC; workers that do not say what they host
        count as hosting it), or if a run with ``id`` exists to attach to.

        Raises:
            ConfigError: the agent name, prompt or model string is invalid; ``id``
                names a run of another agent or prompt (and ``attach`` is False); or,
                with ``check_hosted``, no worker hosts the agent (the message names the
                task queue and the agents that are hosted).
        """
        check_run_request(agent, prompt, model, tenant)
        existed = id is not None and await self.exists(id)
        hosting = None
        if check_hosted and not existed:
            hosting = await _check_hosted(self.temporal, self.task_queue, agent)
        run_id = id or new_run_id(agent)
        start = await self._run_start(
            agent, prompt, model=model, chat=chat, tenant=tenant, hosting=hosting
        )
        try:
            handle = await self.temporal.start_workflow(
                WORKFLOW_TYPE,
                start.input,
                id=run_id,
                task_queue=self.task_queue,
                result_type=RunResult,
                **start.options,
            )
        except WorkflowAlreadyStartedError:
            # Closed run with this id: attach to it rather than start a second one.
            handle = self.temporal.get_workflow_handle(run_id, result_type=RunResult)
        run = RunHandle(handle, self.temporal, existed=existed, deltas=self.deltas)
        if existed and not attach:
            existing = await run.input()
            if (existing.agent, existing.prompt) != (agent, prompt):
                raise ConfigError(
                    f"run {run_id!r} already exists, as a run of agent {existing.agent!r} "
                    f"with another prompt ({shorten(existing.prompt, 80)!r}); follow it with "
                    f"`ratchet run {existing.agent} --id {run_id} --attach` (from Python: "
                    "start(..., attach=True)), or choose another id"
                )
        return run

    async def _run_start(
        self,
        agent: str,
        prompt: str,
        *,
        model: str | None,
        chat: bool,
        tenant: str | None,
        hosting: QueueHosting | None = None,
    ) -> RunStart:
        """The input and options of a new run on this client's task queue (the Nexus
        operation of :mod:`ratchet.nexus` starts runs with them too)."""
        return run_start(
            agent,
            prompt,
            model=model,
            chat=chat,
            tenant=tenant,
            version=_run_version(hosting or await self._queue_hosting()),
            registered=await self._registered_attributes(),
        )

    async def exists(self, run_id: str) -> bool:
        """Whether a run (any workflow) has this id in the namespace."""
        try:
            await self.temporal.get_workflow_handle(run_id).describe()
        except RPCError as e:
            if e.status == RPCStatusCode.NOT_FOUND:
                return False
            raise
        return True

    @overload
    async def run(
        self, agent: str, prompt: str, *, id: str | None = None, model: str | None = None
    ) -> RunResult: ...

    @overload
    async def run(
        self,
        agent: str,
        prompt: str,
        *,
        id: str | None = None,
        model: str | None = None,
        output_type: type[T],
    ) -> TypedRunResult[T]: ...

    async def run(
        self,
        agent: str,
        prompt: str,
        *,
        id: str | None = None,
        model: str | None = None,
        output_type: Any = None,
    ) -> RunResult | TypedRunResult[Any]:
        """Start (or attach to) a run and wait for its result; with ``output_type`` (the
        agent's), the answer comes as that type (see :meth:`RunHandle.result`)."""
        handle = await self.start(agent, prompt, id=id, model=model)
        if output_type is None:
            return await handle.result()
        return await handle.result(output_type)

    async def start_tool_call(
        self,
        agent: str,
        tool: str,
        arguments: dict[str, Any] | None = None,
        *,
        id: str | None = None,
        idempotency_key: str | None = None,
        approved_by: str | None = None,
    ) -> ToolCallHandle:
        """Start one tool of ``agent`` on its own, outside any run, as a Temporal
        standalone activity on this client's task queue.

        A worker hosting the agent describes it first, and the call gets the options a
        run gives it: the tool's timeout and attempts, the agent's tool heartbeat, and
        its policy. A worker that dies mid-call has it retried on another, with the
        same ``ToolContext.idempotency_key``.

        Args:
            agent: the agent whose tool it is.
            tool: the tool's name (``ratchet tools AGENT``).
            arguments: the tool's arguments, checked against its JSON schema.
            id: the activity id (default: ``AGENT.TOOL-<random>``). One id is one call:
                starting it again while it runs, or after it completed, attaches to it
                (the same agent, tool and arguments, or ``ConfigError``); only a failed
                call's id runs again.
            idempotency_key: the key the tool sees (default: the activity id). Pass the
                key a call had in a run (``RUN_ID/turnN-toolM``) to redo that run's side
                effect by hand: a tool that deduplicates by key applies it at most once.
            approved_by: who approved the call, for a tool the agent's policy puts
                behind an approval (recorded with the call); without it such a call is
                refused.

        Raises:
            ConfigError: no worker hosts the agent; it has no such tool (the message
                lists its tools), or the tool is not an activity (a sub-agent, a
                handoff); bad arguments (the message names the field); the policy
                denies the call, or it needs an approval and ``approved_by`` is missing;
                ``id`` names another call.
        """
        return await _start_tool_call(
            self.temporal,
            self.task_queue,
            agent,
            tool,
            {} if arguments is None else arguments,
            id=id,
            idempotency_key=idempotency_key,
            approved_by=approved_by,
            indexed=AGENT.name in await self._registered_attributes(),
        )

    async def call_tool(
        self,
        agent: str,
        tool: str,
        arguments: dict[str, Any] | None = None,
        *,
        id: str | None = None,
        idempotency_key: str | None = None,
        approved_by: str | None = None,
    ) -> ToolCallResult:
        """Run one tool of ``agent`` durably, outside any run, and wait for its result
        (see :meth:`start_tool_call` for the arguments and what is refused).

        Raises:
            ConfigError: as :meth:`start_tool_call`.
            ToolCallFailed: the call failed for good (attempts spent, a fatal tool raised).
        """
        handle = await self.start_tool_call(
            agent,
            tool,
            arguments,
            id=id,
            idempotency_key=idempotency_key,
            approved_by=approved_by,
        )
        return await handle.result()

    async def fork(
        self,
        run_id: str,
        *,
        at: str,
        edit_message: str | None = None,
        instructions: str | None = None,
        model: str | None = None,
        id: str | None = None,
        store: TranscriptStore | None = None,
    ) -> RunHandle:
        """Start a new run from a step of a recorded one (running or closed).

        The fork's first model call sends exactly what the parent's model saw at the
        step (with the fork's changes); from then on it runs live. Its transcript is the
        parent's, shared by reference through the transcript store, and the parent's
        tool results are reused: no tool before the step runs again. It runs the
        parent's agent snapshot (a redeploy since does not change it) on this client's
        task queue, as a chat if the parent was one, for the parent's tenant.

        Args:
            run_id: the parent run.
            at: the step: ``turnN`` (that model call's prompt) or ``msg:K`` (the
                transcript up to message K, then a model call), as ``ratchet trace``
                numbers them.
            edit_message: replaces the user message the step ends with.
            instructions: replace the agent's instructions (the system message).
            model: replaces the agent's model.
            id: the fork's run id (default: ``<agent>-<12 hex digits>``).
            store: the workers' transcript store, to fork at a step whose prompt the
                parent's history alone cannot show (a fork of a fork).

        Raises:
            RunNotFound: no run has the id ``run_id``.
            ConfigError: ``at`` names no step of the run (the message lists the valid
                ones), ``edit_message`` is given for a step that does not end with a
                user message, an override is invalid, or ``id`` is taken.
        """
        from ._fork import plan_fork
        from ._history import read_run

        if id is not None and await self.exists(id):
            raise ConfigError(f"run {id!r} exists already: choose another id for the fork")
        events = [e async for e in read_run(self.temporal, run_id, store=store)]
        plan = plan_fork(
            events, at=at, edit_message=edit_message, instructions=instructions, model=model
        )
        parent, fork = plan.parent, plan.fork
        # The run's prompt (what listings show) is the parent's, unless the edit replaced it.
        opening = edit_message is not None and len(plan.prompt) == 2
        prompt = edit_message if edit_message is not None and opening else parent.prompt
        start = await self._run_start(
            parent.agent,
            prompt,
            model=model or parent.model,
            chat=parent.chat,
            tenant=parent.tenant,
        )
        options = dict(start.options)
        options["memo"] = {**options["memo"], "forked_from": {"run": run_id, "step": fork.step}}
        options["static_summary"] = f"{parent.agent}: fork of {run_id} at {fork.step}"
        if FORK_OF.name in await self._registered_attributes():
            known = options["search_attributes"] or TypedSearchAttributes([])
            pairs = [*known.search_attributes, SearchAttributePair(FORK_OF, run_id)]
            options["search_attributes"] = TypedSearchAttributes(pairs)
        # A fork is always a new run: an id taken meanwhile is refused, never attached to.
        options["id_conflict_policy"] = WorkflowIDConflictPolicy.FAIL
        try:
            handle = await self.temporal.start_workflow(
                WORKFLOW_TYPE,
                start.input.model_copy(update={"fork": fork}),
                id=id or new_run_id(parent.agent),
                task_queue=self.task_queue,
                result_type=RunResult,
                **options,
            )
        except WorkflowAlreadyStartedError as e:
            raise ConfigError(f"run {id!r} exists already: choose another id for the fork") from e
        return RunHandle(handle, self.temporal, deltas=self.deltas)

    async def pending(
        self, *, limit: int = 100, tenant: str | None = None
    ) -> list[tuple[str, PendingApproval]]:
        """Tool calls waiting for approval across runs, as (run id, call).

        Args:
            limit: look at this many runs at most.
            tenant: only runs of this tenant (as :meth:`list`).
        """
        indexed = await self.has_search_attributes()
        # Without search attributes every running run must be asked.
        waiting = await self.list(
            limit=limit, status="waiting-approval" if indexed else "running", tenant=tenant
        )
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
            self.temporal.get_workflow_handle(run_id, result_type=RunResult),
            self.temporal,
            deltas=self.deltas,
        )

    async def list(
        self,
        *,
        limit: int = 20,
        agent: str | None = None,
        status: str | None = None,
        tenant: str | None = None,
        started_after: datetime | None = None,
        started_before: datetime | None = None,
    ) -> builtins.list[RunInfo]:
        """The most recent runs, newest first.

        Args:
            limit: at most this many.
            agent: only runs of this agent.
            status: only runs in this state, one of :data:`RUN_STATES`.
            tenant: only this tenant's runs; the visibility query itself asks for them
                (the ``RatchetTenant`` search attribute), so no other tenant's run is
                ever fetched.
            started_after: only runs started at or after this (time-zone aware) time.
            started_before: only runs started before this time.

        Raises:
            ConfigError: a bad agent name, tenant or time, a status not in
                :data:`RUN_STATES`, or a tenant filter on a namespace without the
                ``RatchetTenant`` search attribute.
        """
        query, keep = await self._visibility_query(
            agent, status, tenant, started_after, started_before
        )
        runs: builtins.list[RunInfo] = []
        async for info in _infos(self.temporal.list_workflows(query), keep):
            runs.append(info)
            if len(runs) >= limit:
                break
        # The server lists running runs first, then by close time: show newest first.
        far_past = datetime.min.replace(tzinfo=UTC)
        return sorted(runs, key=lambda r: r.started or far_past, reverse=True)

    async def list_page(
        self,
        *,
        page_size: int = 20,
        page_token: str | None = None,
        agent: str | None = None,
        status: str | None = None,
        tenant: str | None = None,
        started_after: datetime | None = None,
        started_before: datetime | None = None,
    ) -> RunPage:
        """One page of runs, in the server's order (running runs first, then closed runs,
        most recently closed first), and the token of the next page.

        The filters are as for :meth:`list`; the same filters go with every page of a
        listing. Without ratchet's search attributes the agent and status filters are
        applied to each page after it is fetched, so a page may hold fewer runs.

        Args:
            page_size: at most this many runs (1-1000).
            page_token: ``next_page_token`` of the previous page; None: the first page.

        Raises:
            ConfigError: as for :meth:`list`; a page size out of range; a page token
                that no page gave.
        """
        if not 1 <= page_size <= 1000:
            raise ConfigError(f"page_size must be from 1 to 1000, got {page_size}")
        query, keep = await self._visibility_query(
            agent, status, tenant, started_after, started_before
        )
        token = _decode_page_token(page_token, query) if page_token is not None else None
        executions = self.temporal.list_workflows(query, page_size=page_size, next_page_token=token)
        try:
            await executions.fetch_next_page()
        except RPCError as e:
            if token is not None and e.status in (
                RPCStatusCode.INVALID_ARGUMENT,
                RPCStatusCode.UNKNOWN,
            ):
                raise ConfigError(f"bad page token {page_token!r}: the server refused it") from e
            raise
        runs = [info async for info in _infos(_aiter(executions.current_page or ()), keep)]
        next_token = executions.next_page_token
        return RunPage(runs, _encode_page_token(next_token, query) if next_token else None)

    async def _visibility_query(
        self,
        agent: str | None,
        status: str | None,
        tenant: str | None,
        started_after: datetime | None,
        started_before: datetime | None,
    ) -> tuple[str, Callable[[RunInfo], bool]]:
        """The visibility query for these filters, and the check of what it could not
        ask the server (agent and status, without search attributes)."""
        if agent is not None:
            check_agent_name(agent)
        if status is not None:
            status = check_status(status)
        if tenant is not None:
            check_tenant(tenant)
        after = _query_time("started_after", started_after)
        before = _query_time("started_before", started_before)
        if started_after and started_before and started_after >= started_before:
            raise ConfigError(
                f"started_after ({after}) is not before started_before ({before}): no run can match"
            )
        registered = await self._registered_attributes()
        indexed = registered >= RUN_ATTRIBUTES
        # Earlier executions of a long run are left out: its latest one is listed.
        query = f"WorkflowType = '{WORKFLOW_TYPE}' AND ExecutionStatus != 'ContinuedAsNew'"
        if indexed and agent:
            query += f" AND {AGENT.name} = '{agent}'"
        if status in TEMPORAL_ONLY_STATES:  # closed by Temporal: never reported by the run
            query += f" AND ExecutionStatus = '{TEMPORAL_ONLY_STATES[status]}'"
        elif indexed and status:
            query += f" AND {STATUS.name} = '{status}'"
        if tenant is not None:
            if TENANT.name not in registered:
                raise ConfigError(
                    f"cannot list the runs of tenant {tenant!r}: namespace "
                    f"{self.temporal.namespace!r} has no {TENANT.name} search attribute. "
                    "Register ratchet's search attributes (`ratchet up` does for the embedded "
                    "server; else `await ratchet.register_search_attributes(client)`); runs "
                    "started since then carry their tenant"
                )
            # check_tenant allows no quote, space or line break: nothing can escape the string.
            query += f" AND {TENANT.name} = '{tenant}'"
        if after:
            query += f" AND StartTime >= '{after}'"
        if before:
            query += f" AND StartTime < '{before}'"

        def keep(info: RunInfo) -> bool:
            return not (agent and info.agent != agent) and not (status and info.status != status)

        return query, keep

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
                rpc_timeout=ACCEPT_TIMEOUT,
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


async def _infos(
    executions: AsyncIterator[WorkflowExecution], keep: Callable[[RunInfo], bool]
) -> AsyncIterator[RunInfo]:
    async for wf in executions:
        info = await run_info(wf)
        if info is not None and keep(info):
            yield info


async def _aiter(items: Iterable[WorkflowExecution]) -> AsyncIterator[WorkflowExecution]:
    for item in items:
        yield item


def _query_time(name: str, when: datetime | None) -> str | None:
    """``when`` as the RFC 3339 UTC time a visibility query takes."""
    if when is None:
        return None
    if when.tzinfo is None:
        raise ConfigError(f"{name} has no time zone: give an aware datetime, e.g. in UTC")
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _encode_page_token(token: bytes, query: str) -> str:
    """The server's page token, marked with the listing it continues."""
    return base64.urlsafe_b64encode(_listing_mark(query) + token).decode().rstrip("=")


def _decode_page_token(token: str, query: str) -> bytes:
    """The server's page token, if ``token`` is one :func:`_encode_page_token` made for
    this listing: the server answers a token it cannot read only after retrying for
    seconds, and then without saying what was wrong."""
    mark = _listing_mark(query)
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) <= len(mark) or raw[: len(mark)] != mark:
        raise ConfigError(
            f"bad page token {token!r}: pass the next_page_token of the previous page, "
            "with the same filters"
        )
    return raw[len(mark) :]


def _listing_mark(query: str) -> bytes:
    return hashlib.sha256(query.encode()).digest()[:8]


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


RUN_VERSION_ENV = "RATCHET_RUN_VERSION"
"""Set to 1 to start version-1 runs (``RunInput.version``), e.g. while rolling back
workers to a release from before version 2."""


def _run_version(hosting: QueueHosting | None) -> int:
    """The ``RunInput.version`` of a new run: 2, unless a worker from before version 2
    polls the queue (it would record the run the old way, which newer workers could not
    replay) or ``RATCHET_RUN_VERSION`` says 1."""
    if os.environ.get(RUN_VERSION_ENV, "").strip() == "1":
        return 1
    return 1 if hosting is not None and hosting.legacy else 2
