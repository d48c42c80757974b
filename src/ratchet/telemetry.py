"""Observability: OpenTelemetry traces and Prometheus metrics for workers and clients.

Both are off by default and cost nothing then: no tracer provider is configured,
no interceptor is installed and the metric meter is Temporal's no-op meter.

**Tracing** goes through ``temporalio.contrib.opentelemetry``: the interceptor
from :func:`tracing_interceptor` makes the client's ``StartWorkflow`` span the
parent of the workflow's spans and of every activity's ``RunActivity`` span. Inside
the model and tool activities ratchet adds one span per call, with the
OpenTelemetry GenAI semantic-convention attributes (``chat <model>`` with
``gen_ai.usage.input_tokens`` and friends, ``execute_tool <tool>`` with
``gen_ai.tool.name`` and ``gen_ai.tool.call.id``). Activities never run on
replay and the interceptor creates no workflow span on replay, so a replayed
workflow task duplicates no span. Tracing needs the ``otel`` extra
(``pip install 'ratchet[otel]'``); ratchet imports and runs without it.

**Metrics** are recorded through Temporal's own metric meter
(``activity.metric_meter()``), so they are served on the same Prometheus
endpoint as Temporal's SDK metrics (``temporal_activity_execution_latency``...)
and need no extra dependency. Connect the worker's client with the runtime from
:func:`metrics_runtime`. ratchet's metrics, labelled by ``agent``, ``model`` and
``tool`` (plus Temporal's ``namespace``, ``task_queue``, ``activity_type``):

=============================  =========  ===========================================
``ratchet_model_calls``        counter    model calls that returned a response
``ratchet_model_errors``       counter    failed model call attempts, by ``error_type``
``ratchet_model_tokens``       counter    tokens, by ``type`` (``input`` / ``output``)
``ratchet_model_cost_usd``     histogram  USD per priced model call (``_sum`` is the total)
``ratchet_tool_calls``         counter    tool call attempts
``ratchet_tool_errors``        counter    tool calls that raised or returned an error
=============================  =========  ===========================================

Example:
    A worker that exports traces over OTLP and serves metrics on port 9464::

        from ratchet import connect, create_worker
        from ratchet.telemetry import configure_tracing, metrics_runtime, tracing_interceptor

        provider = configure_tracing("http://collector:4318")
        client = await connect(
            interceptors=[tracing_interceptor(provider)], runtime=metrics_runtime(9464)
        )
        worker = create_worker(client, [agent])  # workers inherit the client's interceptor
"""

from __future__ import annotations

import contextvars
import functools
import logging
import os
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

from temporalio import activity
from temporalio.common import MetricMeter
from temporalio.exceptions import ApplicationError
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig
from temporalio.worker import ActivityInboundInterceptor, ExecuteActivityInput

from ._protocol import ModelRequest, ModelResponse, ToolRequest, ToolResult
from .agent import parse_model
from .errors import ConfigError

if TYPE_CHECKING:
    import opentelemetry.trace as trace_api
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.trace import Span, Tracer
    from temporalio.contrib.opentelemetry import TracingInterceptor

__all__ = [
    "COST_BUCKETS_USD",
    "METRIC_MODEL_CALLS",
    "METRIC_MODEL_COST",
    "METRIC_MODEL_ERRORS",
    "METRIC_MODEL_TOKENS",
    "METRIC_TOOL_CALLS",
    "METRIC_TOOL_ERRORS",
    "configure_tracing",
    "instrument_model_call",
    "instrument_tool_call",
    "metrics_runtime",
    "record_cost",
    "tracing_interceptor",
]

METRIC_MODEL_CALLS = "ratchet_model_calls"
METRIC_MODEL_ERRORS = "ratchet_model_errors"
METRIC_MODEL_TOKENS = "ratchet_model_tokens"
METRIC_MODEL_COST = "ratchet_model_cost_usd"
METRIC_TOOL_CALLS = "ratchet_tool_calls"
METRIC_TOOL_ERRORS = "ratchet_tool_errors"

COST_BUCKETS_USD: tuple[float, ...] = (0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0)
"""Histogram buckets of ``ratchet_model_cost_usd`` (USD per model call)."""

_INSTRUMENTATION = "ratchet"
_INSTALL_HINT = "install the otel extra: pip install 'ratchet[otel]'"

logger = logging.getLogger(__name__)

# The tracer of the worker's tracing interceptor, set for the duration of each activity.
# None (the default) means tracing is off: the activities create no span at all.
_tracer: contextvars.ContextVar[Tracer | None] = contextvars.ContextVar(
    "ratchet_tracer", default=None
)


# --- configuration -----------------------------------------------------------------------


def configure_tracing(
    otlp_endpoint: str | None = None,
    *,
    exporter: SpanExporter | None = None,
    service_name: str | None = None,
    set_global: bool = True,
) -> TracerProvider:
    """Create an OpenTelemetry SDK tracer provider that exports ratchet's spans.

    Args:
        otlp_endpoint: base URL of an OTLP/HTTP collector, e.g. ``http://collector:4318``
            (``/v1/traces`` is appended unless the URL already ends with it). Without it,
            ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` / ``OTEL_EXPORTER_OTLP_ENDPOINT`` are used
            when set.
        exporter: an extra span exporter (e.g. ``InMemorySpanExporter`` in tests, or
            ``ConsoleSpanExporter``); spans are handed to it synchronously as they end.
        service_name: the ``service.name`` resource attribute; default
            ``OTEL_SERVICE_NAME``, else ``"ratchet"``.
        set_global: also install the provider as OpenTelemetry's global tracer
            provider (OpenTelemetry allows this once per process).

    Returns:
        The provider; pass it to :func:`tracing_interceptor`. Call its ``shutdown()``
        to flush pending spans (it also flushes at interpreter exit).

    Raises:
        ConfigError: the OpenTelemetry SDK is not installed, or there is nowhere to
            export to (no endpoint, no environment variable and no exporter).
    """
    try:
        from opentelemetry import trace
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
    except ImportError as e:
        raise ConfigError(f"tracing needs the OpenTelemetry SDK: {_INSTALL_HINT}") from e

    from_env = any(
        os.environ.get(v)
        for v in ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
    )
    if not otlp_endpoint and not from_env and exporter is None:
        raise ConfigError(
            "tracing has nowhere to export: pass an OTLP endpoint (e.g. "
            "http://127.0.0.1:4318) or set OTEL_EXPORTER_OTLP_ENDPOINT"
        )
    name = service_name or os.environ.get("OTEL_SERVICE_NAME") or "ratchet"
    provider = TracerProvider(resource=Resource.create({"service.name": name}))
    if otlp_endpoint or from_env:
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        except ImportError as e:
            raise ConfigError(f"OTLP export needs the OTLP exporter: {_INSTALL_HINT}") from e
        endpoint = _traces_url(otlp_endpoint) if otlp_endpoint else None
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    if exporter is not None:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    if set_global:
        trace.set_tracer_provider(provider)
    return provider


def _traces_url(endpoint: str) -> str:
    if "://" not in endpoint:
        raise ConfigError(
            f"bad OTLP endpoint {endpoint!r}: expected a URL such as http://127.0.0.1:4318"
        )
    url = endpoint.rstrip("/")
    return url if url.endswith("/v1/traces") else url + "/v1/traces"


def tracing_interceptor(
    tracer_provider: trace_api.TracerProvider | None = None,
    *,
    always_create_workflow_spans: bool = False,
) -> TracingInterceptor:
    """The interceptor that traces clients, workflows and activities, GenAI spans included.

    It is a :class:`temporalio.contrib.opentelemetry.TracingInterceptor` that also
    turns on ratchet's ``chat`` and ``execute_tool`` spans inside the activities. Use it
    in *one* place: ``connect(interceptors=[...])`` (the client and every worker built
    on it) or ``create_worker(..., interceptors=[...])`` (that worker only); both would
    record every span twice.

    Args:
        tracer_provider: an OpenTelemetry tracer provider (from
            :func:`configure_tracing`); default: the global one.
        always_create_workflow_spans: create workflow spans even for runs started by a
            client without tracing (see ``TracingInterceptor``); such spans may be orphans.

    Raises:
        ConfigError: ``opentelemetry-api`` is not installed.
    """
    try:
        from opentelemetry import trace
    except ImportError as e:
        raise ConfigError(f"tracing needs OpenTelemetry: {_INSTALL_HINT}") from e
    from importlib.metadata import PackageNotFoundError, version

    try:
        ratchet_version: str | None = version("ratchet")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        ratchet_version = None
    tracer = trace.get_tracer(_INSTRUMENTATION, ratchet_version, tracer_provider=tracer_provider)
    return _interceptor_class()(tracer, always_create_workflow_spans=always_create_workflow_spans)


@functools.cache
def _interceptor_class() -> type[TracingInterceptor]:
    # Defined on first use: importing temporalio.contrib.opentelemetry imports opentelemetry.
    from temporalio.contrib.opentelemetry import TracingInterceptor

    class RatchetTracingInterceptor(TracingInterceptor):
        def intercept_activity(
            self, next: ActivityInboundInterceptor
        ) -> ActivityInboundInterceptor:
            return _EnableGenAISpans(super().intercept_activity(next), self.tracer)

    return RatchetTracingInterceptor


class _EnableGenAISpans(ActivityInboundInterceptor):
    def __init__(self, next: ActivityInboundInterceptor, tracer: Tracer) -> None:
        super().__init__(next)
        self._tracer = tracer

    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        token = _tracer.set(self._tracer)
        try:
            return await super().execute_activity(input)
        finally:
            _tracer.reset(token)


def metrics_runtime(port: int, *, host: str = "127.0.0.1") -> Runtime:
    """A Temporal runtime that serves Prometheus metrics on ``http://host:port/metrics``.

    Connect the worker's client with it (``connect(runtime=...)``); the endpoint then
    serves Temporal's SDK metrics (prefixed ``temporal_``) and ratchet's (``ratchet_``).

    Args:
        port: TCP port of the metrics endpoint.
        host: address to bind; the default serves this machine only, ``0.0.0.0`` lets a
            Prometheus server elsewhere scrape it.

    Raises:
        ConfigError: the port is out of range or cannot be bound.
    """
    if not 0 < port < 65536:
        raise ConfigError(f"bad metrics port {port}: expected 1-65535")
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        return Runtime(
            telemetry=TelemetryConfig(
                metrics=PrometheusConfig(
                    bind_address=address,
                    histogram_bucket_overrides={METRIC_MODEL_COST: list(COST_BUCKETS_USD)},
                )
            )
        )
    except Exception as e:  # the bridge raises a plain exception when the bind fails
        raise ConfigError(f"cannot serve metrics on {address}: {e}") from e


# --- recording -----------------------------------------------------------------------------


def _meter() -> MetricMeter:
    """The activity's meter (Temporal's no-op meter when metrics are off or outside one)."""
    try:
        return activity.metric_meter()
    except RuntimeError:
        return MetricMeter.noop


def _count(name: str, description: str, value: int, labels: dict[str, str]) -> None:
    if value <= 0:
        return
    try:
        _meter().create_counter(name, description).add(value, labels)
    except Exception:  # metrics must never fail a model or tool call
        logger.debug("could not record %s", name, exc_info=True)


def record_cost(agent: str, model: str, usd: float) -> None:
    """Record the cost of one model call in ``ratchet_model_cost_usd``.

    :func:`instrument_model_call` already records ``ModelResponse.cost_usd``; call this
    for costs that do not come from a model response. Outside an activity, or when
    the worker has no metrics, it does nothing.

    Args:
        agent: the agent's name.
        model: the model string, e.g. ``"openai:gpt-4o-mini"``.
        usd: the cost in US dollars (negative values are ignored).
    """
    if usd < 0:
        return
    try:
        _meter().create_histogram_float(METRIC_MODEL_COST, "USD cost per model call", "USD").record(
            usd, {"agent": agent, "model": model}
        )
    except Exception:
        logger.debug("could not record %s", METRIC_MODEL_COST, exc_info=True)


def _error_type(e: BaseException) -> str:
    if isinstance(e, ApplicationError) and e.type:
        return e.type
    return type(e).__name__


@contextmanager
def _span(name: str, kind_name: str, attributes: dict[str, Any]) -> Iterator[Span | None]:
    """A span under the current (``RunActivity``) span, or None when tracing is off."""
    tracer = _tracer.get()
    if tracer is None:
        yield None
        return
    from opentelemetry.trace import SpanKind, Status, StatusCode

    with tracer.start_as_current_span(
        name,
        kind=SpanKind[kind_name],
        attributes=attributes,
        record_exception=False,
        set_status_on_exception=False,
    ) as span:
        try:
            yield span
        except BaseException as e:
            if span.is_recording():
                span.set_attribute("error.type", _error_type(e))
                span.set_status(Status(StatusCode.ERROR, str(e)[:500]))
                if isinstance(e, Exception):
                    span.record_exception(e)
            raise


S = TypeVar("S")


def instrument_model_call(
    fn: Callable[[S, ModelRequest], Awaitable[ModelResponse]],
) -> Callable[[S, ModelRequest], Coroutine[Any, Any, ModelResponse]]:
    """Decorate the model activity: a ``chat`` span and the model metrics per call.

    Place it under ``@activity.defn``. The span (only when the worker traces) carries
    ``gen_ai.operation.name="chat"``, ``gen_ai.system`` (the provider prefix of the
    model string, e.g. ``openai``), ``gen_ai.request.model``, ``gen_ai.response.model``,
    ``gen_ai.usage.input_tokens``, ``gen_ai.usage.output_tokens`` and
    ``gen_ai.response.finish_reasons``; a failed attempt sets ``error.type``.
    """

    @functools.wraps(fn)
    async def wrapper(self: S, request: ModelRequest) -> ModelResponse:
        try:
            ref = parse_model(request.model)
            system, requested = ref.provider, ref.name
        except ConfigError:  # the activity reports it; the span just names what it got
            system, requested = "unknown", request.model
        labels = {"agent": request.agent, "model": request.model}
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": "chat",
            "gen_ai.system": system,
            "gen_ai.provider.name": system,
            "gen_ai.request.model": requested,
            "gen_ai.agent.name": request.agent,
            "ratchet.turn": request.turn,
            "ratchet.attempt": activity.info().attempt,
        }
        if request.temperature is not None:
            attributes["gen_ai.request.temperature"] = request.temperature
        if request.max_tokens is not None:
            attributes["gen_ai.request.max_tokens"] = request.max_tokens
        try:
            with _span(f"chat {requested}", "CLIENT", attributes) as span:
                response = await fn(self, request)
                if span is not None and span.is_recording():
                    span.set_attributes(_response_attributes(response))
        except Exception as e:  # a cancelled call is not a model error
            _count(
                METRIC_MODEL_ERRORS,
                "failed model call attempts",
                1,
                {**labels, "error_type": _error_type(e)},
            )
            raise
        _count(METRIC_MODEL_CALLS, "model calls that returned a response", 1, labels)
        usage = response.usage
        tokens = "tokens used by model calls"
        _count(METRIC_MODEL_TOKENS, tokens, usage.input_tokens, {**labels, "type": "input"})
        _count(METRIC_MODEL_TOKENS, tokens, usage.output_tokens, {**labels, "type": "output"})
        if response.cost_usd is not None:
            record_cost(request.agent, request.model, response.cost_usd)
        return response

    return wrapper


def _response_attributes(response: ModelResponse) -> dict[str, Any]:
    attributes: dict[str, Any] = {
        "gen_ai.response.model": response.model,
        "gen_ai.usage.input_tokens": response.usage.input_tokens,
        "gen_ai.usage.output_tokens": response.usage.output_tokens,
    }
    if response.finish_reason:
        attributes["gen_ai.response.finish_reasons"] = [response.finish_reason]
    if response.cost_usd is not None:
        attributes["ratchet.cost_usd"] = response.cost_usd
    return attributes


def instrument_tool_call(
    fn: Callable[[S, ToolRequest], Awaitable[ToolResult]],
) -> Callable[[S, ToolRequest], Coroutine[Any, Any, ToolResult]]:
    """Decorate the tool activity: an ``execute_tool`` span and the tool metrics per call.

    Place it under ``@activity.defn``. The span (only when the worker traces) carries
    ``gen_ai.operation.name="execute_tool"``, ``gen_ai.tool.name`` and
    ``gen_ai.tool.call.id``. A tool that raised or returned an error result sets
    ``error.type`` and counts in ``ratchet_tool_errors``.
    """

    @functools.wraps(fn)
    async def wrapper(self: S, request: ToolRequest) -> ToolResult:
        name = request.call.name
        labels = {"agent": request.agent, "tool": name}
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": "execute_tool",
            "gen_ai.tool.name": name,
            "gen_ai.tool.call.id": request.call.id,
            "gen_ai.tool.type": "function",
            "gen_ai.agent.name": request.agent,
            "ratchet.attempt": activity.info().attempt,
        }
        _count(METRIC_TOOL_CALLS, "tool call attempts", 1, labels)
        try:
            with _span(f"execute_tool {name}", "INTERNAL", attributes) as span:
                result = await fn(self, request)
                if result.is_error and span is not None and span.is_recording():
                    from opentelemetry.trace import Status, StatusCode

                    span.set_attribute("error.type", "ToolError")
                    span.set_status(Status(StatusCode.ERROR, result.content[:500]))
        except Exception:  # a cancelled call is not a tool error
            _count(METRIC_TOOL_ERRORS, "tool calls that failed", 1, labels)
            raise
        if result.is_error:
            _count(METRIC_TOOL_ERRORS, "tool calls that failed", 1, labels)
        return result

    return wrapper
