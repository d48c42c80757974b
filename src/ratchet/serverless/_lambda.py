"""``lambda_handler``: ratchet agents hosted by an AWS Lambda function, one invocation at a time."""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import AsyncGenerator, Callable, Iterable
from dataclasses import replace
from typing import Any

from temporalio.client import Client
from temporalio.common import VersioningBehavior, WorkerDeploymentVersion
from temporalio.contrib.aws.lambda_worker import LambdaWorkerConfig, run_worker
from temporalio.worker import WorkerDeploymentConfig

from .._connect import DEFAULT_ADDRESS, data_converter
from .._hosting import announce_agents
from .._protocol import DEFAULT_TASK_QUEUE
from .._worker_settings import WorkerSettings
from ..agent import Agent
from ..errors import ConfigError
from ..payloads import payload_limit
from ..transcripts import store_from_url
from ..worker import _nexus_options, _options, agent_worker_parts
from ._versions import MakeCurrent, make_current

__all__ = ["lambda_handler"]

_log = logging.getLogger("ratchet.serverless")

LambdaHandler = Callable[[Any, Any], None]

_promoted: set[tuple[str, str, str, str]] = set()
"""(address, namespace, deployment, build id) this process has already checked: a warm
container does not ask the server again at every invocation."""


def lambda_handler(
    agents: Iterable[Agent] = (),
    *,
    settings: WorkerSettings | None = None,
    deployment_name: str | None = None,
    build_id: str | None = None,
    current: MakeCurrent = "if-none",
    configure: Callable[[LambdaWorkerConfig], None] | None = None,
) -> LambdaHandler:
    """An AWS Lambda handler hosting ratchet agents, built on Temporal's Lambda worker.

    Each invocation connects, polls the agents' task queue, runs workflow tasks and
    activities (model calls, tools) until shortly before the invocation's deadline, then
    drains: it stops polling, gives activities in flight ``graceful_shutdown_timeout``
    (5 s) to finish, and returns. A call cut off by the drain is retried by the server on
    any worker (a heartbeat timeout or the worker's shutdown failure), with the same
    idempotency key; nothing a run recorded is redone. See the README's "Serverless
    workers" section for the deployment.

    Example (``handler.py``, the function's handler ``handler.handler``)::

        from ratchet.worker import WorkerSettings
        from ratchet.serverless import lambda_handler
        from myapp.agents import support

        handler = lambda_handler(
            settings=WorkerSettings(
                agents=(support,),
                transcript_store_url=os.environ["RATCHET_TRANSCRIPT_STORE"],
            ),
            build_id=os.environ["RATCHET_BUILD_ID"],
        )

    Args:
        agents: the agents to host (or give ``settings``).
        settings: what a ``ratchet worker`` process would host, as
            :func:`ratchet.worker.run_worker` takes it: agents, task queue, providers,
            rate limits, transcript store, tools' deps, address, namespace, OTLP
            endpoint. It, or ``RATCHET_TRANSCRIPT_STORE``, must name a shared
            transcript store (PostgreSQL): a run's next step may run in another
            container.
        deployment_name: the worker deployment (default: ``AWS_LAMBDA_FUNCTION_NAME``,
            else ``ratchet-<task queue>``).
        build_id: this code's version, e.g. the image tag or git commit (default:
            ``RATCHET_BUILD_ID``, else a published ``AWS_LAMBDA_FUNCTION_VERSION``).
        current: when this version becomes the deployment's current one (the version
            new tasks go to): ``if-none`` (default) only when the deployment has none
            yet, i.e. the first deployment; ``always`` at each cold start; ``never``.
        configure: called per invocation with Temporal's ``LambdaWorkerConfig`` after
            ratchet's settings, to tune the worker (concurrency, shutdown timeouts).

    Raises:
        ConfigError: the settings cannot run in a function (nothing to host, model-only
            queues, a metrics port, no shared transcript store), or no build id.
    """
    settings = _settings(agents, settings)
    version = WorkerDeploymentVersion(
        deployment_name=deployment_name or _default_deployment(settings.task_queue),
        build_id=build_id or _default_build_id(),
    )

    async def configure_invocation(config: LambdaWorkerConfig) -> AsyncGenerator[None, None]:
        connect_config = config.client_connect_config
        if settings.address:
            connect_config["target_host"] = settings.address
        connect_config.setdefault("target_host", DEFAULT_ADDRESS)
        if settings.namespace:
            connect_config["namespace"] = settings.namespace
        converter = await data_converter()
        connect_config["data_converter"] = converter
        if settings.otlp_endpoint:
            from ..telemetry import configure_tracing, tracing_interceptor

            tracer = configure_tracing(settings.otlp_endpoint)
            connect_config["interceptors"] = [tracing_interceptor(tracer)]
        store = store_from_url(settings.transcript_store_url)
        parts = agent_worker_parts(
            settings.agents,
            payload_limit=payload_limit(converter.external_storage),
            providers=settings.providers,
            rate_limits=settings.rate_limits,
            transcript_store=store,
            deps=settings.deps,
        )
        try:
            if parts.needs_session_queue:
                raise ConfigError(
                    "a serverless worker cannot host agents with stateful MCP servers "
                    f"({_stateful_servers(parts.hosted)}): their sessions live in one "
                    "long-lived process; host those agents on `ratchet worker`"
                )
            worker_config = config.worker_config
            worker_config.update(_options({}))  # type: ignore[typeddict-item]
            worker_config["task_queue"] = settings.task_queue
            worker_config["workflows"] = parts.workflows
            worker_config["activities"] = parts.activity_functions
            worker_config["identity"] = announce_agents(_identity(), parts.hosted)
            # WorkerSettings(nexus=True): also serve the agents as the ratchet.nexus service.
            worker_config.update(_nexus_options(settings))  # type: ignore[typeddict-item]
            worker_config["deployment_config"] = WorkerDeploymentConfig(
                version=version,
                use_worker_versioning=True,
                # A new version takes over running agents at their next workflow task:
                # ratchet keeps old runs replayable (RunInput.version and patches), and a
                # run waiting days for an approval must not need an old version alive.
                default_versioning_behavior=VersioningBehavior.AUTO_UPGRADE,
            )
            if configure is not None:
                configure(config)
            await _promote_once(connect_config, version, current)
            _log.info(
                "hosting %s on task queue %r as %s",
                ", ".join(sorted(parts.hosted)),
                settings.task_queue,
                version.to_canonical_string(),
            )
            yield
        finally:
            await parts.activities.close()
            await store.close()

    return run_worker(version, configure_invocation)


def _settings(agents: Iterable[Agent], settings: WorkerSettings | None) -> WorkerSettings:
    agents = tuple(agents)
    if settings is None:
        if not agents:
            raise ConfigError("lambda_handler needs agents to host: agents=[...] or settings=")
        queue = os.environ.get("TEMPORAL_TASK_QUEUE") or DEFAULT_TASK_QUEUE
        settings = WorkerSettings(agents=agents, task_queue=queue)
    elif agents:
        if settings.agents:
            raise ConfigError("give the agents either as agents= or in settings, not both")
        settings = replace(settings, agents=agents)
    if not settings.agents:
        raise ConfigError(
            "a serverless worker hosts agents, and these settings have none "
            "(model-only workers run as `ratchet worker --model-queue`)"
        )
    if settings.model_queues:
        queues = ", ".join(sorted(settings.model_queues))
        raise ConfigError(
            f"a serverless worker runs one task queue, so it cannot also serve model "
            f"queues ({queues}); drop model_queues, or run them on `ratchet worker`"
        )
    if settings.metrics_port is not None:
        raise ConfigError(
            "a serverless worker cannot serve a Prometheus metrics port (nothing scrapes "
            "a function between invocations); export traces with otlp_endpoint instead"
        )
    if not (settings.transcript_store_url or os.environ.get("RATCHET_TRANSCRIPT_STORE")):
        raise ConfigError(
            "a serverless worker needs a transcript store every worker shares, since a "
            "run's next step may run in another container: set RATCHET_TRANSCRIPT_STORE "
            "or WorkerSettings(transcript_store_url='postgresql://user:password@host/db')"
        )
    return settings


def _default_deployment(task_queue: str) -> str:
    return os.environ.get("AWS_LAMBDA_FUNCTION_NAME") or f"ratchet-{task_queue}"


def _default_build_id() -> str:
    explicit = os.environ.get("RATCHET_BUILD_ID", "").strip()
    if explicit:
        return explicit
    # $LATEST names whatever code was uploaded last: two different codes under one
    # build id would break versioning's promise, so only published versions count.
    published = os.environ.get("AWS_LAMBDA_FUNCTION_VERSION", "")
    if published and published != "$LATEST":
        return published
    raise ConfigError(
        "no build id for this serverless worker: pass lambda_handler(build_id=...) or set "
        "RATCHET_BUILD_ID (e.g. the image tag or git commit), or publish Lambda versions "
        "(AWS_LAMBDA_FUNCTION_VERSION)"
    )


def _identity() -> str:
    where = os.environ.get("AWS_LAMBDA_LOG_STREAM_NAME") or socket.gethostname()
    return f"{os.getpid()}@{where}"


def _stateful_servers(hosted: Any) -> str:
    names = sorted(
        f"{agent.name}.{name}"
        for agent in hosted.values()
        for name, server in agent.mcp_servers.items()
        if server.stateful
    )
    return ", ".join(names)


async def _promote_once(
    connect_config: Any, version: WorkerDeploymentVersion, current: MakeCurrent
) -> None:
    if current == "never":
        return
    key = (
        str(connect_config.get("target_host")),
        str(connect_config.get("namespace", "default")),
        version.deployment_name,
        version.build_id,
    )
    if key in _promoted:
        return
    client = await Client.connect(**connect_config)
    await make_current(client, version, current)
    _promoted.add(key)
