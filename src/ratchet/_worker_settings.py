"""What a worker process hosts and where it connects: :class:`WorkerSettings`.

Built from code, or from the ``ratchet worker`` flags with
:meth:`WorkerSettings.from_flags`; :func:`ratchet.worker.run_worker` runs it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from ._deps import Deps
from ._limiter_protocol import RateLimit
from ._protocol import DEFAULT_TASK_QUEUE
from .agent import PROVIDER_RE, Agent
from .errors import ConfigError
from .models import OpenAICompatible, Provider

__all__ = [
    "DEFAULT_DRAIN_SECONDS",
    "WorkerSettings",
    "describe_limit",
    "model_queue",
    "parse_model_queue",
    "parse_provider",
    "parse_rate_limit",
]


DEFAULT_DRAIN_SECONDS = 10.0
"""How long a stopping worker lets calls in flight finish (``WorkerSettings.drain_seconds``)."""


def model_queue(provider: str) -> str:
    """The conventional task queue of a provider's model calls: ``ratchet.model.<provider>``.

    Give agents ``Agent(model_task_queue=model_queue("openai"))`` and run
    :func:`~ratchet.worker.create_model_worker` workers for it.
    """
    return f"ratchet.model.{provider}"


@dataclass(frozen=True)
class WorkerSettings:
    """Everything one worker process needs; :func:`ratchet.worker.run_worker` runs it.

    Raises:
        ConfigError: there is nothing to host (no agents and no model queues).
    """

    agents: tuple[Agent, ...] = ()
    """The agents to host on ``task_queue`` (none: a model-only worker)."""
    task_queue: str = DEFAULT_TASK_QUEUE
    """The queue the agents' runs are started on."""
    rate_limits: Mapping[str, RateLimit] = field(default_factory=dict)
    """Provider name → limits shared by every worker (give all workers the same)."""
    model_queues: Mapping[str, str] = field(default_factory=dict)
    """Provider name → task queue: also serve that provider's model calls there."""
    providers: Mapping[str, Provider] = field(default_factory=dict)
    """Extra model providers by name, added to (and overriding) the defaults."""
    address: str | None = None
    """Temporal address; None: ``TEMPORAL_ADDRESS``, else 127.0.0.1:7233."""
    namespace: str | None = None
    """Temporal namespace; None: ``TEMPORAL_NAMESPACE``, else ``default``."""
    metrics_port: int | None = None
    """Serve Prometheus metrics on this port (None: off)."""
    metrics_host: str = "127.0.0.1"
    """The address the metrics port binds."""
    otlp_endpoint: str | None = None
    """Export traces to this OTLP/HTTP collector (None: off; needs the otel extra)."""
    transcript_store_url: str | None = None
    """``sqlite:///...`` or ``postgresql://...``; None: the default SQLite file."""
    deps: Deps = None
    """What the agents' tools get as ``ToolContext.deps``, as ``create_worker(deps=...)``
    takes it (``ratchet worker --deps module:attribute``)."""
    nexus: bool = False
    """Also serve the agents as the ``ratchet.nexus`` Nexus service
    (:mod:`ratchet.nexus`), for endpoints that target ``task_queue``."""
    drain_seconds: float = DEFAULT_DRAIN_SECONDS
    """On SIGTERM or SIGINT the worker stops taking work and gives the model and tool
    calls in flight this long to finish; those still running are then cancelled and the
    server retries them on another worker (with the same idempotency keys). Keep it
    under your platform's grace period (Kubernetes: 30 s by default)."""

    def __post_init__(self) -> None:
        drain = self.drain_seconds
        if (
            not isinstance(drain, int | float)
            or isinstance(drain, bool)
            or not (math.isfinite(drain) and 0 <= drain <= 3600)
        ):
            raise ConfigError(
                f"bad drain_seconds {drain!r} (ratchet worker --drain-seconds, or "
                "RATCHET_DRAIN_SECONDS): expected a number of seconds from 0 to 3600, e.g. 10"
            )
        if not self.agents and not self.model_queues:
            raise ConfigError(
                "nothing to host: give agents and/or model_queues "
                "(ratchet worker: --app module:attribute and/or --model-queue PROVIDER)"
            )
        if self.nexus and not self.agents:
            raise ConfigError(
                "the Nexus service runs agents, and this worker hosts none: "
                "give agents (ratchet worker --nexus needs --app module:attribute)"
            )

    @classmethod
    def from_flags(
        cls,
        *,
        app: str | None = None,
        task_queue: str = DEFAULT_TASK_QUEUE,
        rate_limits: Iterable[str] = (),
        model_queues: Iterable[str] = (),
        providers: Iterable[str] = (),
        address: str | None = None,
        namespace: str | None = None,
        metrics_port: int | None = None,
        metrics_host: str = "127.0.0.1",
        otlp_endpoint: str | None = None,
        transcript_store_url: str | None = None,
        deps: str | None = None,
        nexus: bool = False,
        drain_seconds: float = DEFAULT_DRAIN_SECONDS,
    ) -> WorkerSettings:
        """Settings from the ``ratchet worker`` flags, as strings.

        Args:
            app: ``module:attribute`` naming the agents (see :func:`ratchet._app.load_agents`).
            rate_limits: ``PROVIDER:rpm=N,tpm=N`` entries (see :func:`parse_rate_limit`).
            model_queues: ``PROVIDER`` or ``PROVIDER=QUEUE`` entries.
            providers: ``NAME=BASE_URL`` entries (see :func:`parse_provider`).
            deps: ``module:attribute`` naming the tools' deps: an object, a mapping of
                agent name to object, or a function ``(Agent) -> object``.
            nexus: also serve the ``ratchet.nexus`` Nexus service (``--nexus``).
            drain_seconds: how long a stopping worker lets calls in flight finish.

        Raises:
            ConfigError: a flag is malformed, the app does not load, or nothing is hosted;
                the message names the flag and shows the expected form.
        """
        from ._app import load_agents, load_object

        model_queues = list(model_queues)
        if app is None and not model_queues:
            raise ConfigError("nothing to host: give --app module:attribute and/or --model-queue")
        return cls(
            agents=tuple(load_agents(app)) if app is not None else (),
            task_queue=task_queue,
            rate_limits=dict(parse_rate_limit(r) for r in rate_limits),
            providers=dict(parse_provider(p) for p in providers),
            model_queues=dict(parse_model_queue(q) for q in model_queues),
            address=address,
            namespace=namespace,
            metrics_port=metrics_port,
            metrics_host=metrics_host,
            otlp_endpoint=otlp_endpoint,
            transcript_store_url=transcript_store_url,
            deps=load_object(deps, what="deps") if deps is not None else None,
            nexus=nexus,
            drain_seconds=drain_seconds,
        )


def parse_rate_limit(text: str) -> tuple[str, RateLimit]:
    """``openai:rpm=500,tpm=200000[,window=60,margin=1,max_tokens=1024]`` → (provider, limit)."""
    provider, sep, rest = text.partition(":")
    names = {
        "rpm": "rpm",
        "tpm": "tpm",
        "window": "window_seconds",
        "margin": "margin_seconds",
        "max_tokens": "default_max_tokens",
    }
    fields: dict[str, str] = {}
    for part in rest.split(",") if sep else []:
        key, eq, value = part.partition("=")
        if not eq or key.strip() not in names:
            fields = {}
            break
        fields[names[key.strip()]] = value.strip()
    if not fields or not PROVIDER_RE.match(provider):
        raise ConfigError(
            f"bad --rate-limit {text!r}: expected PROVIDER:rpm=N,tpm=N (optional window=S, "
            "margin=S, max_tokens=N), e.g. openai:rpm=500,tpm=200000"
        )
    try:
        return provider, RateLimit.model_validate(fields)
    except ValueError as e:
        raise ConfigError(f"bad --rate-limit {text!r}: {e}") from e


def parse_provider(text: str) -> tuple[str, Provider]:
    """``NAME=BASE_URL`` → an OpenAI-compatible provider whose key is in ``$NAME_API_KEY``."""
    name, eq, url = text.partition("=")
    if not eq or not PROVIDER_RE.match(name) or "://" not in url:
        raise ConfigError(
            f"bad --provider {text!r}: expected NAME=BASE_URL, e.g. vllm=http://gpu:8000/v1"
        )
    key_env = f"{name.upper().replace('-', '_')}_API_KEY"
    return name, OpenAICompatible(base_url=url, api_key_env=key_env)


def parse_model_queue(text: str) -> tuple[str, str]:
    """``PROVIDER`` or ``PROVIDER=QUEUE`` → (provider, task queue)."""
    name, eq, queue = text.partition("=")
    if not PROVIDER_RE.match(name) or (eq and not queue):
        raise ConfigError(f"bad --model-queue {text!r}: expected PROVIDER or PROVIDER=QUEUE")
    return name, queue or model_queue(name)


def describe_limit(limit: RateLimit) -> str:
    """``500 requests/min, 200000 tokens/min``: a limit as people read it."""
    per = "min" if limit.window_seconds == 60 else f"{limit.window_seconds:g} s"
    rpm = "-" if limit.rpm is None else f"{limit.rpm}"
    tpm = "-" if limit.tpm is None else f"{limit.tpm}"
    return f"{rpm} requests/{per}, {tpm} tokens/{per}"
