"""Building workers that host agents."""

from __future__ import annotations

import pkgutil
from collections.abc import Iterable, Mapping
from datetime import timedelta
from typing import Any

from temporalio.client import Client
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from ._protocol import DEFAULT_TASK_QUEUE
from .activities import AgentActivities
from .agent import Agent
from .errors import ConfigError
from .models import OpenAICompatible, Provider
from .payloads import payload_limit
from .pricing import DEFAULT_PRICES, Price
from .transcripts import TranscriptStore
from .workflow import AgentWorkflow

__all__ = ["create_worker", "default_providers", "workflow_runner"]


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


def _ratchet_modules() -> tuple[str, ...]:
    """ratchet's own modules and packages, except the workflow module itself.

    The sandbox re-executes every module it is not told to pass through, once per
    workflow run. Without this, each run rebuilt ratchet's pydantic models and
    re-imported the client, CLI and codec: about 1 MiB and 40 ms of worker CPU per
    run (measured by ``python -m bench``). These modules hold no per-run state, so
    loading them once is safe; ``ratchet.workflow`` stays sandboxed so the sandbox
    still guards the loop itself against non-deterministic calls.
    """
    import ratchet

    names = (info.name for info in pkgutil.iter_modules(ratchet.__path__, "ratchet."))
    return tuple(name for name in names if name != "ratchet.workflow")


def workflow_runner() -> SandboxedWorkflowRunner:
    """The sandbox configuration ratchet's workflow needs (also for ``Replayer``)."""
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
    **worker_options: Any,
) -> Worker:
    """A Temporal worker hosting ``agents``: the agent workflow and its activities.

    Args:
        client: a client from :func:`ratchet.connect` (it carries the pydantic converter).
        agents: the agents this worker hosts; runs name them by ``Agent.name``.
        task_queue: the queue to poll; clients must start runs on the same one.
        providers: model providers by prefix, added to (and overriding)
            :func:`default_providers`.
        prices: model string → :class:`~ratchet.pricing.Price`, added to (and
            overriding) :data:`~ratchet.pricing.DEFAULT_PRICES`.
        transcript_store: where model calls rebuild prompts from (see
            :mod:`ratchet.transcripts`); every worker of a run must share it. Default:
            a SQLite file in ratchet's data directory (one machine).
        worker_options: passed to :class:`temporalio.worker.Worker`.
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
    all_providers = {**default_providers(), **(providers or {})}
    acts = AgentActivities(
        hosted,
        all_providers,
        {**DEFAULT_PRICES, **(prices or {})},
        store=transcript_store,
        payload_limit=payload_limit(client.data_converter.external_storage),
    )
    options: dict[str, Any] = {
        # Passes ratchet's own modules and the I/O libraries through the sandbox (loaded
        # once, outside it); the workflow module itself stays sandboxed.
        "workflow_runner": workflow_runner(),
        # A killed worker's sticky queue is abandoned after this long instead of
        # Temporal's 5 s default, so another worker resumes the run sooner. A live
        # worker picks up its sticky tasks in milliseconds, so 1 s costs nothing.
        "sticky_queue_schedule_to_start_timeout": timedelta(seconds=1),
    }
    options.update(worker_options)
    return Worker(
        client,
        task_queue=task_queue,
        workflows=[AgentWorkflow],
        activities=[
            acts.snapshot_agent,
            acts.call_model,
            acts.run_tool,
            acts.compact_transcript,
        ],
        **options,
    )
