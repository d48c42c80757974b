"""What every ratchet activity shares: the hosted agents and providers, the stores,
and sending one request to a model provider.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Coroutine, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import pydantic
from temporalio import activity
from temporalio.exceptions import ApplicationError

from .._heartbeat import answered, heartbeating, request_sent
from .._limiter_protocol import RateLimit
from .._protocol import ModelRequest
from .._ratelimit import limited_call
from .._store_outages import OutageTolerantStore
from .._unicode import valid_message
from ..agent import Agent, parse_model
from ..errors import ConfigError, TranscriptEntryMissing
from ..messages import Message
from ..models import Provider, ProviderRequest, ProviderResponse
from ..pricing import DEFAULT_PRICES, Price
from ..streaming import CallKey, DeltaStore, DeltaWriter, delta_store_for
from ..tools import ToolSpec
from ..transcripts import TranscriptStore, load_prompt, load_tools

if TYPE_CHECKING:
    from ..mcp._sessions import MCPSessions

__all__ = ["ActivitiesBase", "validation_summary"]

_log = logging.getLogger("ratchet.streaming")


class ActivitiesBase:
    """The state and lookups of a worker's activities (see ``ratchet.activities``)."""

    def __init__(
        self,
        agents: Mapping[str, Agent],
        providers: Mapping[str, Provider],
        prices: Mapping[str, Price] | None = None,
        store: TranscriptStore | None = None,
        payload_limit: int | None = None,
        rate_limits: Mapping[str, RateLimit] | None = None,
        deltas: DeltaStore | None = None,
        deps: Mapping[str, object] | None = None,
    ) -> None:
        self.agents = dict(agents)
        # Each agent's deps for its tools: looked up when a tool runs, never sent anywhere.
        self.deps = dict(deps or {})
        self.providers = dict(providers)
        self.prices = dict(DEFAULT_PRICES if prices is None else prices)
        self._store = store
        self._tolerant: OutageTolerantStore | None = None
        self.payload_limit = payload_limit
        self.rate_limits = dict(rate_limits or {})
        self._mcp: MCPSessions | None = None
        self.session_queue: str | None = None
        """This worker's own task queue, for the sessions of stateful MCP servers (set by
        the worker when a hosted agent has one)."""
        self._tools_cache: dict[str, list[ToolSpec]] = {}
        self._deltas = deltas
        self._deltas_resolved = deltas is not None

    @property
    def deltas(self) -> DeltaStore | None:
        """Where streamed replies go: by default the delta store beside the transcript
        store (None: a store of a kind without one; calls then do not stream)."""
        if not self._deltas_resolved:
            self._deltas_resolved = True
            try:
                self._deltas = delta_store_for(self.store.inner)
            except Exception as e:
                # Streaming is a live view: without its store, calls are made plain.
                _log.warning(
                    "streaming is off on this worker: no delta store (%s: %s)", type(e).__name__, e
                )
        return self._deltas

    @property
    def store(self) -> OutageTolerantStore:
        if self._store is None:
            # Opened on first use: runs recorded before linear history never need it.
            from ..transcripts import default_transcript_store

            self._store = default_transcript_store()
        if self._tolerant is None:
            # A brief outage of the store is waited out, not failed on (_store_outages).
            self._tolerant = OutageTolerantStore(self._store)
        return self._tolerant

    async def _tools(self, ref: str) -> list[ToolSpec]:
        # Kept per worker: a reference names one immutable list, and runs of an agent
        # share it, so most calls skip the store.
        if (tools := self._tools_cache.get(ref)) is not None:
            return tools
        with _missing_entries_fail_the_run():
            tools = await load_tools(self.store, ref, run_id=activity.info().workflow_id or "?")
        if len(self._tools_cache) >= 256:
            self._tools_cache.pop(next(iter(self._tools_cache)))
        self._tools_cache[ref] = tools
        return tools

    async def _prompt(self, head: str | None, appended: list[Message | str]) -> list[Message]:
        with _missing_entries_fail_the_run():
            return await load_prompt(
                self.store, head, appended, run_id=activity.info().workflow_id or "?"
            )

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

    @property
    def mcp(self) -> MCPSessions:
        """The worker's MCP sessions (the SDK is imported only by workers that use it)."""
        if self._mcp is None:
            from ..mcp._sessions import MCPSessions

            self._mcp = MCPSessions()
        return self._mcp

    async def close(self) -> None:
        """Close the worker's MCP sessions (their subprocesses and HTTP sessions)."""
        if self._mcp is not None:
            await self._mcp.close()

    async def _send(
        self,
        request: ModelRequest,
        provider: Provider,
        model_name: str,
        key: str,
        *,
        stream: bool = False,
    ) -> ProviderResponse:
        """Send one request to the provider, heartbeating; counted in the call's attempts.

        With shared limits for the provider it first waits for capacity, then settles
        the usage; the reservation is estimated from the request's full prompt. With
        ``stream`` (and a provider and store that can), the reply's deltas go to the
        delta store as they arrive.
        """
        asked = _provider_request(request, model_name)
        writer = self._delta_writer() if stream and provider.supports_streaming else None

        def send() -> Coroutine[Any, Any, ProviderResponse]:
            request_sent()
            if writer is not None:
                return provider.stream(asked, writer.add)
            return provider.complete(asked)

        limit = self.rate_limits.get(key)
        work = send() if limit is None else limited_call(key, limit, request, send)
        try:
            response = await heartbeating(work, request.heartbeat_seconds)
        finally:
            if writer is not None:
                await writer.close()
        # Recorded at once: if this attempt still fails, the next one counts it.
        answered(response.usage)
        # A lone surrogate in the reply (a model's "\ud800" escape) could go in no payload.
        message = valid_message(response.message)
        if message is not response.message:
            response = response.model_copy(update={"message": message})
        return response

    def _delta_writer(self) -> DeltaWriter | None:
        """A writer for this attempt's deltas; None when no delta store is configured."""
        store = self.deltas
        if store is None:
            return None
        info = activity.info()
        key = CallKey(execution=info.workflow_run_id or "", call_id=info.activity_id)
        return DeltaWriter(store, info.workflow_id or "", key, info.attempt)


def _provider_request(request: ModelRequest, model_name: str) -> ProviderRequest:
    """The public provider contract's view of the activity's input (the full prompt)."""
    return ProviderRequest(
        model=model_name,
        messages=request.messages,
        tools=request.tools,
        tool_mode=request.tool_mode,
        output=request.output,
        temperature=request.temperature,
        max_tokens=request.max_tokens,
        timeout_seconds=request.timeout_seconds,
        turn=request.turn,
    )


@contextlib.contextmanager
def _missing_entries_fail_the_run() -> Iterator[None]:
    """A lost store entry is not retried: the prompt could never be rebuilt exactly."""
    try:
        yield
    except TranscriptEntryMissing as e:
        raise ApplicationError(str(e), type="TranscriptEntryMissing", non_retryable=True) from e


def validation_summary(e: pydantic.ValidationError) -> str:
    """A validation error in one line the model can act on: ``field: problem; ...``."""
    return "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or 'arguments'}: {err['msg']}" for err in e.errors()
    )
