"""The activities behind every run: snapshot the agent, call the model, run a tool.

They are the only place where ratchet does I/O for a run. Each takes a single
versioned model (see ``_protocol``) and raises ``ApplicationError`` with a
taxonomy type, so Temporal knows what to retry.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine, Mapping
from typing import Any, TypeVar

import pydantic
from temporalio import activity
from temporalio.exceptions import ApplicationError

from ._limiter import RateLimit
from ._protocol import (
    MODEL_ACTIVITY,
    SNAPSHOT_ACTIVITY,
    TOOL_ACTIVITY,
    AgentSpec,
    ModelRequest,
    ModelResponse,
    SnapshotRequest,
    ToolRequest,
    ToolResult,
)
from ._ratelimit import limited_call
from .agent import Agent, parse_model
from .errors import ConfigError, RetryableToolError
from .models import Provider
from .pricing import DEFAULT_PRICES, Price, cost_of
from .telemetry import instrument_model_call, instrument_tool_call
from .tools import ToolContext

__all__ = ["AgentActivities"]


class AgentActivities:
    """Activity implementations bound to the agents and providers a worker hosts."""

    def __init__(
        self,
        agents: Mapping[str, Agent],
        providers: Mapping[str, Provider],
        prices: Mapping[str, Price] | None = None,
        rate_limits: Mapping[str, RateLimit] | None = None,
    ) -> None:
        self.agents = dict(agents)
        self.providers = dict(providers)
        self.prices = dict(DEFAULT_PRICES if prices is None else prices)
        self.rate_limits = dict(rate_limits or {})

    def _agent(self, name: str) -> Agent:
        agent = self.agents.get(name)
        if agent is None:
            hosted = ", ".join(sorted(self.agents)) or "(none)"
            raise ApplicationError(
                f"no agent named {name!r} is hosted on task queue "
                f"{activity.info().task_queue!r}; hosted agents: {hosted}. "
                "Check the name, or start a worker that hosts it.",
                type="UnknownAgent",
                non_retryable=True,
            )
        return agent

    def _provider(self, model: str) -> tuple[Provider, str]:
        provider, name, _ = self._provider_ref(model)
        return provider, name

    def _provider_ref(self, model: str) -> tuple[Provider, str, str]:
        """The provider, the model name it knows, and the provider's registered name."""
        try:
            ref = parse_model(model)
        except ConfigError as e:
            raise ApplicationError(str(e), type="ConfigError", non_retryable=True) from e
        provider = self.providers.get(ref.provider)
        if provider is None:
            known = ", ".join(sorted(self.providers))
            raise ApplicationError(
                f"model {model!r}: no provider {ref.provider!r} is configured on this worker "
                f"(configured: {known}); register it with create_worker(providers=...)",
                type="ConfigError",
                non_retryable=True,
            )
        return provider, ref.name, ref.provider

    @activity.defn(name=SNAPSHOT_ACTIVITY)
    async def snapshot_agent(self, request: SnapshotRequest) -> AgentSpec:
        """Record the agent's current definition; the run uses only this snapshot."""
        agent = self._agent(request.agent)
        try:
            spec = agent.spec(model=request.model)
        except ConfigError as e:
            raise ApplicationError(str(e), type="ConfigError", non_retryable=True) from e
        self._provider(spec.model)
        return spec

    @activity.defn(name=MODEL_ACTIVITY)
    @instrument_model_call
    async def call_model(self, request: ModelRequest) -> ModelResponse:
        """One model call; heartbeats while waiting so a dead worker is noticed quickly."""
        provider, model_name, key = self._provider_ref(request.model)
        limit = self.rate_limits.get(key)
        if limit is None:
            work = provider.complete(request, model_name)
        else:
            # Shared limits: wait for capacity (heartbeating), then settle the usage.
            work = limited_call(key, limit, request, lambda: provider.complete(request, model_name))
        response = await _heartbeating(work, request.heartbeat_seconds)
        # Attempts before this one failed; the provider may still bill them, so they are
        # counted as requests. The cost is fixed here and recorded with the call.
        response = response.model_copy(
            update={
                "usage": response.usage.model_copy(update={"requests": activity.info().attempt}),
                "attempt": activity.info().attempt,
                "cost_usd": cost_of(request.model, response.usage, self.prices),
            }
        )
        size = len(response.model_dump_json())
        if size > _MAX_RESPONSE_BYTES:
            raise ApplicationError(
                f"the model's response is {size:,} bytes; ratchet's limit is "
                f"{_MAX_RESPONSE_BYTES:,} (Temporal rejects payloads over 2 MB). "
                "Lower the agent's max_tokens.",
                type="PayloadTooLarge",
                non_retryable=True,
            )
        return response

    @activity.defn(name=TOOL_ACTIVITY)
    @instrument_tool_call
    async def run_tool(self, request: ToolRequest) -> ToolResult:
        """Run one tool call. Ordinary exceptions become an error result for the model."""
        agent = self._agent(request.agent)
        name = request.call.name
        tool = agent.tools.get(name)
        if tool is None:
            return ToolResult(
                content=f"error: tool {name!r} is no longer available on agent {agent.name!r}",
                is_error=True,
            )
        info = activity.info()
        ctx = ToolContext(
            idempotency_key=f"{info.workflow_id}/{info.activity_id}",
            run_id=info.workflow_id or "",
            attempt=info.attempt,
        )
        try:
            content = await _heartbeating(
                tool.invoke(request.arguments, ctx), request.heartbeat_seconds
            )
            return ToolResult(content=_truncate(content, tool.max_result_chars, name))
        except pydantic.ValidationError as e:
            return ToolResult(
                content=f"error: invalid arguments for {name!r}: {_validation_summary(e)}",
                is_error=True,
                invalid_arguments=True,
            )
        except RetryableToolError as e:
            raise ApplicationError(f"tool {name!r}: {e}", type="RetryableToolError") from e
        except Exception as e:
            if tool.fatal:
                raise ApplicationError(
                    f"tool {name!r} (declared fatal) raised {type(e).__name__}: {e}",
                    type="ToolFailed",
                    non_retryable=True,
                ) from e
            activity.logger.info("tool %s raised %s: %s", name, type(e).__name__, e)
            return ToolResult(content=f"error: {type(e).__name__}: {e}", is_error=True)


_MAX_RESPONSE_BYTES = 1_000_000
T = TypeVar("T")


async def _heartbeating(work: Coroutine[Any, Any, T], heartbeat_seconds: float) -> T:
    """Await ``work`` while heartbeating.

    Heartbeats tell Temporal the worker is alive (a crashed worker's activity is
    retried elsewhere after ``heartbeat_seconds``) and deliver cancellation: when
    the run is cancelled, the next heartbeat cancels ``work``.
    """
    task = asyncio.ensure_future(work)
    interval = max(0.1, min(heartbeat_seconds / 3, 5.0))
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=interval)
            if done:
                return task.result()
            activity.heartbeat()
    finally:
        if not task.done():
            task.cancel()
            with contextlib.suppress(BaseException):
                await task


def _truncate(content: str, limit: int, tool_name: str) -> str:
    if len(content) <= limit:
        return content
    return (
        content[:limit]
        + f"\n[ratchet: the result of {tool_name!r} was cut from {len(content):,} to "
        f"{limit:,} characters (the tool's max_result_chars); ask for less, e.g. narrow "
        "the query]"
    )


def _validation_summary(e: pydantic.ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or 'arguments'}: {err['msg']}" for err in e.errors()
    )
