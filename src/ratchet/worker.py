"""Building workers that host agents, and running a whole worker process.

:func:`run_worker` is the one place a worker process is assembled from
:class:`WorkerSettings`: ``ratchet worker`` and serverless handlers go through it,
and so do the tests of worker processes. :func:`create_worker` and
:func:`create_model_worker` build the single Temporal workers it runs, for programs
that assemble their own.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pkgutil
import signal
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from temporalio.client import Client
from temporalio.worker import UnsandboxedWorkflowRunner, Worker, WorkflowRunner
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from ._approval_check import verify_approval_answer
from ._deps import Deps, resolve_deps
from ._hosting import announce_agents
from ._limiter_protocol import RateLimit
from ._protocol import DEFAULT_TASK_QUEUE
from ._slot_activities import check_runs, request_slot
from ._worker_logging import install_expected_failure_filter
from ._worker_settings import WorkerSettings, describe_limit, model_queue
from .activities import AgentActivities
from .agent import Agent
from .errors import ConfigError
from .models import OpenAICompatible, Provider
from .payloads import describe_storage, payload_limit
from .pricing import DEFAULT_PRICES, Price
from .streaming import DeltaStore
from .transcripts import TranscriptStore
from .workflows import AgentWorkflow, EvalWorkflow, LimiterWorkflow, SlotsWorkflow

__all__ = [
    "AgentWorkerParts",
    "WorkerSettings",
    "agent_worker_parts",
    "create_model_worker",
    "create_worker",
    "default_providers",
    "model_queue",
    "run_worker",
    "workflow_runner",
]


def default_providers() -> dict[str, Provider]:
    """``local`` (the embedded model started by ``ratchet up``) and ``openai``.

    ``openai`` reads ``OPENAI_BASE_URL`` and ``OPENAI_API_KEY`` from the worker's
    environment, so it also serves any OpenAI-compatible endpoint.
    """
    return {
        "local": OpenAICompatible(
            base_url=_local_llm_base_url,
            api_key="local",
            tool_mode="json_schema",
            answer_after_tool=True,
            # llama-server serves one model and ignores the name; this one reads well in logs.
            model_name="SmolLM2-135M-Instruct",
            unavailable_hint="The embedded model is not running: start it with `ratchet up`.",
        ),
        "openai": OpenAICompatible(),
    }


_PASSTHROUGH = ("openai", "httpx", "httpx2", "typer", "rich", "platformdirs", "pydantic")


_SANDBOXED = "ratchet.workflows"
"""The workflow package: under the sandbox guard, every module under it is re-imported
for each run, so the sandbox checks all of it."""

SANDBOX_ENV = "RATCHET_WORKFLOW_SANDBOX"
"""Set to 1 to run ratchet's workflows in Temporal's sandbox (see ``workflow_runner``)."""


def _ratchet_modules() -> tuple[str, ...]:
    """ratchet's own modules and packages, except the workflows package.

    The sandbox re-executes every module it is not told to pass through, once per
    workflow run. Without this, each run rebuilt ratchet's pydantic models and
    re-imported the client, CLI and codec: about 1 MiB and 40 ms of worker CPU per
    run (measured by ``python -m bench``). These modules hold no per-run state, so
    loading them once is safe.
    """
    import ratchet

    names = (info.name for info in pkgutil.iter_modules(ratchet.__path__, "ratchet."))
    return tuple(name for name in names if name != _SANDBOXED)


def workflow_runner(sandboxed: bool | None = None) -> WorkflowRunner:
    """How ratchet's workflows run (also for ``Replayer``).

    By default without Temporal's sandbox. The sandbox guards workflow code against
    non-deterministic calls (clocks, I/O, randomness) by re-importing it for every run
    behind checking proxies: for the agent loop that cost about 30 ms of worker CPU and
    0.4 MiB of memory per run (``python -m bench``, issue 18), more than the rest of a
    run's work. No user code runs in ratchet's workflows (tools, guardrails, validators
    and providers run in activities), and ratchet's own workflow code is checked under
    the sandbox in its test suite: every golden history replays sandboxed, and runs
    are executed sandboxed (``tests/test_determinism.py``).

    Args:
        sandboxed: True: the sandbox guard, with ``ratchet.workflows`` re-imported per
            run and checked; None: as the ``RATCHET_WORKFLOW_SANDBOX`` environment
            variable says (``1``), else without.
    """
    if sandboxed is None:
        sandboxed = os.environ.get(SANDBOX_ENV, "").strip() == "1"
    if not sandboxed:
        return UnsandboxedWorkflowRunner()
    return SandboxedWorkflowRunner(
        restrictions=SandboxRestrictions.default.with_passthrough_modules(
            *_PASSTHROUGH, *_ratchet_modules()
        )
    )


def _local_llm_base_url() -> str | None:
    # Resolved at each call, so a worker started before `ratchet up` still finds the model.
    from .local import local_llm_base_url

    return local_llm_base_url()


def create_worker(
    client: Client,
    agents: Iterable[Agent],
    *,
    task_queue: str = DEFAULT_TASK_QUEUE,
    providers: Mapping[str, Provider] | None = None,
    prices: Mapping[str, Price] | None = None,
    transcript_store: TranscriptStore | None = None,
    rate_limits: Mapping[str, RateLimit] | None = None,
    delta_store: DeltaStore | None = None,
    deps: Deps = None,
    **worker_options: Any,
) -> Worker:
    """A Temporal worker hosting ``agents``: the agent workflow and its activities.

    Args:
        client: a client from :func:`ratchet.connect` (it carries the pydantic converter).
        agents: the agents this worker hosts; runs name them by ``Agent.name``. Their
            sub-agents (``Agent.as_tool``) and handoff targets are hosted too.
        task_queue: the queue to poll; clients must start runs on the same one.
        providers: model providers by prefix, added to (and overriding)
            :func:`default_providers`.
        prices: model string → :class:`~ratchet.pricing.Price`, added to (and
            overriding) :data:`~ratchet.pricing.DEFAULT_PRICES`.
        transcript_store: where model calls rebuild prompts from (see
            :mod:`ratchet.transcripts`); every worker of a run must share it. Default:
            a SQLite file in ratchet's data directory (one machine).
        rate_limits: provider name → :class:`~ratchet.RateLimit`: model calls to these
            providers wait for capacity from the provider's limiter workflow, shared by
            every worker (give all workers the same limits).
        delta_store: where streamed replies go for subscribers (see
            :mod:`ratchet.streaming`). Default: the one beside ``transcript_store``
            (``<name>-deltas.sqlite``, or the same PostgreSQL database).
        deps: what tools get as ``ToolContext.deps`` (a database pool, an HTTP client):
            one object for every agent; a mapping of agent name to object; or a plain
            function ``(Agent) -> object``, called once per hosted agent here. They stay
            in this process (never in a run's history); closing them is the caller's job.
        worker_options: passed to :class:`temporalio.worker.Worker`.

    Raises:
        ConfigError: e.g. ``deps`` maps an agent this worker does not host.
    """
    parts = agent_worker_parts(
        agents,
        payload_limit=payload_limit(client.data_converter.external_storage),
        providers=providers,
        prices=prices,
        transcript_store=transcript_store,
        rate_limits=rate_limits,
        delta_store=delta_store,
        deps=deps,
    )
    acts = parts.activities
    options = _options(worker_options)
    # Clients read this to refuse runs of agents no worker hosts (ratchet._hosting).
    options.setdefault("identity", announce_agents(client.identity, parts.hosted))
    companion: Worker | None = None
    if parts.needs_session_queue:
        # Stateful MCP servers: each run's session lives here, reached by this queue.
        acts.session_queue = f"{task_queue}.mcp-sessions.{uuid.uuid4().hex[:12]}"
        companion = Worker(
            client,
            task_queue=acts.session_queue,
            activities=[acts.run_tool],
            **{k: v for k, v in options.items() if k in _COMPANION_OPTIONS},
        )
    return _AgentWorker(
        client,
        closing=acts,
        companion=companion,
        task_queue=task_queue,
        workflows=parts.workflows,
        activities=parts.activity_functions,
        **options,
    )


_COMPANION_OPTIONS = ("identity", "interceptors", "graceful_shutdown_timeout")
"""The options the MCP session queue's worker shares with its agent worker."""


@dataclass(frozen=True)
class AgentWorkerParts:
    """What a worker hosting some agents registers, built without a client or a worker.

    :func:`create_worker` builds its worker from these; so does
    :func:`ratchet.serverless.lambda_handler`, whose worker Temporal's Lambda
    integration creates for each invocation.
    """

    hosted: Mapping[str, Agent]
    """Every agent the worker runs, the sub-agents and handoff targets included."""
    activities: AgentActivities
    """The activities' shared state; ``close()`` it when the worker has stopped."""
    workflows: list[type]
    activity_functions: list[Callable[..., Any]]

    @property
    def needs_session_queue(self) -> bool:
        """Whether an agent has a stateful MCP server, whose sessions live in one process."""
        return any(s.stateful for a in self.hosted.values() for s in a.mcp_servers.values())


def agent_worker_parts(
    agents: Iterable[Agent],
    *,
    payload_limit: int | None,
    providers: Mapping[str, Provider] | None = None,
    prices: Mapping[str, Price] | None = None,
    transcript_store: TranscriptStore | None = None,
    rate_limits: Mapping[str, RateLimit] | None = None,
    delta_store: DeltaStore | None = None,
    deps: Deps = None,
) -> AgentWorkerParts:
    """The workflows and activities hosting ``agents`` (arguments as :func:`create_worker`).

    Args:
        payload_limit: the largest payload the client's data converter keeps in the
            history (:func:`ratchet.payloads.payload_limit` of its external storage).

    Raises:
        ConfigError: no agent, two agents share a name, or ``deps`` maps an agent
            that is not hosted.
    """
    hosted: dict[str, Agent] = {}
    for agent in agents:
        if not isinstance(agent, Agent):
            raise ConfigError(f"{agent!r} is not a ratchet.Agent")
        if agent.name in hosted:
            raise ConfigError(f"two agents are named {agent.name!r}")
        hosted[agent.name] = agent
    if not hosted:
        raise ConfigError("a worker needs at least one agent to host")
    for agent in list(hosted.values()):
        # A sub-agent's run and a handed-off conversation's tools run here too.
        for name, reached in agent.reachable().items():
            if hosted.setdefault(name, reached) is not reached:
                raise ConfigError(
                    f"two different agents are named {name!r} (one reached through the "
                    f"sub-agents or handoffs of agent {agent.name!r}); give them distinct names"
                )
    acts = _activities(
        payload_limit,
        hosted,
        providers,
        prices,
        rate_limits,
        transcript_store,
        delta_store,
        deps=resolve_deps(deps, hosted),
    )
    return AgentWorkerParts(
        hosted=hosted,
        activities=acts,
        # An eval's cases are runs of the agents hosted here (ratchet.evals).
        workflows=[AgentWorkflow, LimiterWorkflow, SlotsWorkflow, EvalWorkflow],
        activity_functions=[
            acts.snapshot_agent,
            acts.pin_mcp_session,
            acts.refresh_mcp_tools,
            acts.hand_off,
            acts.call_model,
            acts.run_tool,
            # Tools called on their own, outside any run (AgentClient.call_tool).
            acts.run_tool_standalone,
            acts.check_output,
            acts.check_input,
            acts.compact_transcript,
            request_slot,
            check_runs,
            verify_approval_answer,
        ],
    )


class _AgentWorker(Worker):
    """A worker that closes its activities' resources (MCP sessions) when it stops."""

    def __init__(
        self,
        *args: Any,
        closing: AgentActivities,
        companion: Worker | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self._closing = closing
        self.companion = companion
        """The worker of this worker's own queue, for stateful MCP sessions."""

    async def shutdown(self) -> None:
        """Stop both workers at once, each draining its calls in flight."""
        if self.companion is None:
            await super().shutdown()
        else:
            await asyncio.gather(super().shutdown(), self.companion.shutdown())

    async def run(self) -> None:
        """Run, with the companion worker polling this worker's own queue if any."""
        companion = self.companion
        running = asyncio.create_task(companion.run()) if companion is not None else None
        try:
            await super().run()
        finally:
            if companion is not None and running is not None:
                await companion.shutdown()
                await asyncio.gather(running, return_exceptions=True)
            await self._closing.close()


def create_model_worker(
    client: Client,
    provider: str,
    *,
    task_queue: str | None = None,
    rate_limit: RateLimit | None = None,
    providers: Mapping[str, Provider] | None = None,
    prices: Mapping[str, Price] | None = None,
    transcript_store: TranscriptStore | None = None,
    delta_store: DeltaStore | None = None,
    **worker_options: Any,
) -> Worker:
    """A worker for one provider's model calls, on that provider's own task queue.

    With ``rate_limit.rpm`` set, the Temporal server itself caps how fast activities
    are handed out on the queue, across all its workers
    (``max_task_queue_activities_per_second = rpm / window_seconds``), and the
    provider's limiter enforces the exact sliding-window request and token limits.

    Args:
        client: a client from :func:`ratchet.connect`.
        provider: the provider's registered name (``openai``, ``local``, or one of
            ``providers``).
        task_queue: the queue to poll; default :func:`model_queue` of ``provider``.
        rate_limit: the provider's limits; None: unlimited.
        providers: extra providers, as in :func:`create_worker`.
        prices: extra prices, as in :func:`create_worker`.
        transcript_store: the store the agents' workers use, as in :func:`create_worker`.
        delta_store: where streamed replies go, as in :func:`create_worker`.
        worker_options: passed to :class:`temporalio.worker.Worker`.
    """
    limits = {provider: rate_limit} if rate_limit else None
    acts = _activities(
        payload_limit(client.data_converter.external_storage),
        {},
        providers,
        prices,
        limits,
        transcript_store,
        delta_store,
    )
    if provider not in acts.providers:
        known = ", ".join(sorted(acts.providers))
        raise ConfigError(f"no provider named {provider!r} (known: {known}); pass providers=")
    options = _options(worker_options)
    options.setdefault("identity", announce_agents(client.identity, ()))
    if rate_limit is not None and rate_limit.requests_per_second is not None:
        options.setdefault("max_task_queue_activities_per_second", rate_limit.requests_per_second)
    return Worker(
        client,
        task_queue=task_queue or model_queue(provider),
        workflows=[LimiterWorkflow],
        # Compaction summarizes with the model, on the agent's model queue too.
        activities=[acts.call_model, acts.compact_transcript],
        **options,
    )


def _activities(
    limit: int | None,
    agents: Mapping[str, Agent],
    providers: Mapping[str, Provider] | None,
    prices: Mapping[str, Price] | None,
    rate_limits: Mapping[str, RateLimit] | None,
    transcript_store: TranscriptStore | None,
    delta_store: DeltaStore | None = None,
    deps: Mapping[str, object] | None = None,
) -> AgentActivities:
    all_providers = {**default_providers(), **(providers or {})}
    for name in rate_limits or {}:
        if name not in all_providers:
            known = ", ".join(sorted(all_providers))
            raise ConfigError(f"rate_limits names provider {name!r}, which is unknown ({known})")
    return AgentActivities(
        agents,
        all_providers,
        {**DEFAULT_PRICES, **(prices or {})},
        store=transcript_store,
        payload_limit=limit,
        rate_limits=rate_limits,
        deltas=delta_store,
        deps=deps,
    )


def _options(worker_options: Mapping[str, Any]) -> dict[str, Any]:
    # Every ratchet worker logs expected, typed failures as one line (ratchet._worker_logging).
    install_expected_failure_filter()
    options: dict[str, Any] = {
        # Without the sandbox unless RATCHET_WORKFLOW_SANDBOX=1 (see workflow_runner).
        "workflow_runner": workflow_runner(),
        # A killed worker's sticky queue is abandoned after this long instead of
        # Temporal's 5 s default, so another worker resumes the run sooner. A live
        # worker picks up its sticky tasks in milliseconds, so 1 s costs nothing.
        "sticky_queue_schedule_to_start_timeout": timedelta(seconds=1),
        # The SDK forwards heartbeats to the server at most every 0.8 x the heartbeat
        # timeout: with ratchet's 2 s default that left 0.4 s for any stall before a
        # live call counted as dead and was sent to the provider again (seen in CI
        # under load). At most 1 s between forwarded heartbeats leaves about 1 s.
        "max_heartbeat_throttle_interval": timedelta(seconds=1),
    }
    options.update(worker_options)
    return options


async def run_worker(
    settings: WorkerSettings,
    *,
    stop: asyncio.Event | None = None,
    on_ready: Callable[[list[str]], None] | None = None,
    on_stopping: Callable[[int], None] | None = None,
    on_drained: Callable[[int], None] | None = None,
) -> None:
    """Connect, build the workers ``settings`` describe, and run them until stopped.

    Stopping drains: the workers stop taking work, and the model and tool calls in
    flight get ``settings.drain_seconds`` to finish before they are cancelled (the
    server then retries them on another worker). Runs themselves never wait: their
    next steps go to the other workers as soon as this one stops polling.

    Args:
        settings: what to host and where to connect.
        stop: set it to shut down gracefully; None: until SIGTERM or SIGINT (a second
            signal then stops the process at once, as the signal's default does).
        on_ready: called once every worker polls, with one line per thing the
            process serves (agents, model queues, limits, payload storage).
        on_stopping: called when stopping begins, with the number of calls in flight.
        on_drained: called when the workers have stopped, with the number of calls
            still running when the drain ended (cut off and handed back to the server).

    Raises:
        ConfigError: a setting is unusable (unknown provider, a namespace that does
            not exist, ...); the message says which.
        ConnectionFailed: the Temporal server cannot be reached.
    """
    from ._connect import connect
    from .telemetry import configure_tracing, metrics_runtime, tracing_interceptor
    from .transcripts import store_from_url

    s = settings
    runtime = None
    if s.metrics_port is not None:
        runtime = metrics_runtime(s.metrics_port, host=s.metrics_host)
    tracing = [tracing_interceptor(configure_tracing(s.otlp_endpoint))] if s.otlp_endpoint else []
    client = await connect(s.address, namespace=s.namespace, interceptors=tracing, runtime=runtime)
    store = store_from_url(s.transcript_store_url)
    try:
        workers, lines = _assemble(client, s, store)
        lines.append(describe_storage(client.data_converter.external_storage))
        async with contextlib.AsyncExitStack() as stack:
            for w in workers:
                await stack.enter_async_context(w)
            if on_ready is not None:
                on_ready(lines)
            if stop is None:
                stop = stack.enter_context(_termination_signals())
            await stop.wait()
            if on_stopping is not None:
                on_stopping(sum(_calls_in_flight(w) for w in workers))
            # All at once: each stops polling now and drains for drain_seconds (leaving
            # the stack would shut them down one after another, each draining in turn).
            stopping = asyncio.ensure_future(asyncio.gather(*(w.shutdown() for w in workers)))
            done, _ = await asyncio.wait({stopping}, timeout=s.drain_seconds)
            # What still runs now is what the SDK cuts off and hands back.
            cut_off = 0 if done else sum(_calls_in_flight(w) for w in workers)
            await stopping
            if on_drained is not None:
                on_drained(cut_off)
    except RuntimeError as e:  # e.g. the namespace does not exist
        detail = str(e.__cause__ or e).split(": Status {")[0]
        raise ConfigError(f"the worker could not start: {detail}") from e
    finally:
        await store.close()


def _assemble(
    client: Client, s: WorkerSettings, store: TranscriptStore
) -> tuple[list[Worker], list[str]]:
    """The workers of a process, and a line describing each thing they serve."""
    workers: list[Worker] = []
    lines: list[str] = []
    if s.agents:
        workers.append(
            create_worker(
                client,
                s.agents,
                task_queue=s.task_queue,
                providers=s.providers,
                rate_limits=s.rate_limits,
                transcript_store=store,
                deps=s.deps,
                graceful_shutdown_timeout=timedelta(seconds=s.drain_seconds),
                **_nexus_options(s),
            )
        )
        names = ", ".join(a.name for a in s.agents)
        lines.append(f"hosting {names} on task queue {s.task_queue!r}")
        if s.nexus:
            lines.append(
                f"serving them as Nexus service 'ratchet.nexus' (endpoints targeting "
                f"namespace {client.namespace!r}, task queue {s.task_queue!r})"
            )
    for name, queue in s.model_queues.items():
        workers.append(
            create_model_worker(
                client,
                name,
                task_queue=queue,
                rate_limit=s.rate_limits.get(name),
                providers=s.providers,
                transcript_store=store,
                graceful_shutdown_timeout=timedelta(seconds=s.drain_seconds),
            )
        )
        lines.append(f"serving {name} model calls on task queue {queue!r}")
    for name, limit in s.rate_limits.items():
        lines.append(f"limits of {name}: {describe_limit(limit)} (shared by every worker)")
    return workers, lines


def _nexus_options(s: WorkerSettings) -> dict[str, Any]:
    """The worker options that serve the agents as the ``ratchet.nexus`` service."""
    if not s.nexus:
        return {}
    from .nexus import AgentsServiceHandler

    return {"nexus_service_handlers": [AgentsServiceHandler(s.agents, task_queue=s.task_queue)]}


@contextlib.contextmanager
def _termination_signals() -> Iterator[asyncio.Event]:
    """An event set by the first SIGTERM or SIGINT, so the worker shuts down gracefully.

    The first signal gives both signals back their default action (``SIG_DFL``, not
    Python's KeyboardInterrupt): a second one (an impatient Ctrl-C, a supervisor's
    repeat) ends the process at once, which loses nothing, as the server hands the
    unfinished calls to another worker. The handlers go when the block ends.
    """
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    signals = (signal.SIGTERM, signal.SIGINT)
    installed = True

    def restore() -> None:
        nonlocal installed
        if installed:
            installed = False
            for sig in signals:
                loop.remove_signal_handler(sig)
                signal.signal(sig, signal.SIG_DFL)

    def first() -> None:
        restore()
        stop.set()

    for sig in signals:
        loop.add_signal_handler(sig, first)
    try:
        yield stop
    finally:
        if installed:
            for sig in signals:
                loop.remove_signal_handler(sig)


def _calls_in_flight(worker: Worker) -> int:
    """The activities ``worker`` (and its MCP session worker) is running now."""
    # The SDK keeps no public count; its activity worker's task map is the count
    # (tests/test_worker_drain.py checks the count a stopping worker prints).
    running = getattr(getattr(worker, "_activity_worker", None), "_running_activities", {})
    count = len(running) if isinstance(running, Mapping) else 0
    if isinstance(worker, _AgentWorker) and worker.companion is not None:
        count += _calls_in_flight(worker.companion)
    return count
