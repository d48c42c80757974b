"""AgentClient: start, follow, inspect and list runs. The CLI is a thin shell over it."""

from __future__ import annotations

import asyncio
import builtins
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from temporalio.client import (
    Client,
    WorkflowQueryFailedError,
    WorkflowUpdateFailedError,
)
from temporalio.common import (
    Priority,
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from ._connect import connect
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
    DEFAULT_TASK_QUEUE,
    WORKFLOW_TYPE,
    PendingApproval,
    RunInput,
    RunResult,
)
from ._render import shorten
from ._runs import (
    ACCEPT_TIMEOUT,
    RUN_STATES,
    TEMPORAL_ONLY_STATES,
    TENANT_RE,
    RunHandle,
    RunInfo,
    check_status,
    run_info,
)
from ._search import AGENT, STATUS, search_attributes_registered
from .agent import PROVIDER_RE, check_agent_name, parse_model
from .errors import (
    ConfigError,
)
from .streaming import DeltaStore

__all__ = ["RUN_STATES", "AgentClient", "RunHandle", "RunInfo", "check_status"]


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
        if tenant is not None and not TENANT_RE.match(tenant):
            raise ConfigError(
                f"bad tenant {tenant!r}: 1-64 letters, digits, '_', '-' or '.', e.g. acme"
            )
        existed = id is not None and await self._exists(id)
        if check_hosted and not existed:
            await _check_hosted(self.temporal, self.task_queue, agent)
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

    async def _exists(self, run_id: str) -> bool:
        try:
            await self.temporal.get_workflow_handle(run_id).describe()
        except RPCError as e:
            if e.status == RPCStatusCode.NOT_FOUND:
                return False
            raise
        return True

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
            self.temporal.get_workflow_handle(run_id, result_type=RunResult),
            self.temporal,
            deltas=self.deltas,
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
        if status in TEMPORAL_ONLY_STATES:  # closed by Temporal: never reported by the run
            query += f" AND ExecutionStatus = '{TEMPORAL_ONLY_STATES[status]}'"
        elif indexed and status:
            query += f" AND {STATUS.name} = '{status}'"
        runs: list[RunInfo] = []
        async for wf in self.temporal.list_workflows(query):
            info = await run_info(wf)
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
