"""The activities behind every run: snapshot the agent, call the model, run a tool.

They are the only place where ratchet does I/O for a run. Each takes a single
versioned model (see ``_protocol``) and raises ``ApplicationError`` with a
taxonomy type, so Temporal knows what to retry.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import time
from collections.abc import Coroutine, Iterator, Mapping
from typing import TYPE_CHECKING, Any, assert_never

import pydantic
from temporalio import activity
from temporalio.exceptions import ApplicationError

from ._heartbeat import Attempts, answered, counted_attempts, heartbeating, request_sent
from ._limiter_protocol import RateLimit
from ._protocol import (
    COMPACT_ACTIVITY,
    HAND_OFF_ACTIVITY,
    INPUT_CHECK_ACTIVITY,
    MODEL_ACTIVITY,
    OUTPUT_CHECK_ACTIVITY,
    PIN_SESSION_ACTIVITY,
    REFRESH_TOOLS_ACTIVITY,
    SNAPSHOT_ACTIVITY,
    STANDALONE_TOOL_ACTIVITY,
    TOOL_ACTIVITY,
    AgentSpec,
    CompactRequest,
    CompactResult,
    GuardrailCheck,
    HandoffRequest,
    HandoffResult,
    InputCheckRequest,
    InputCheckResult,
    ModelRequest,
    ModelResponse,
    OutputCheck,
    OutputCheckRequest,
    OutputCheckResult,
    SessionPin,
    SessionPinRequest,
    SnapshotRequest,
    StandaloneToolRequest,
    ToolRequest,
    ToolResult,
    ToolsRefresh,
    ToolsRefreshRequest,
)
from ._ratelimit import limited_call
from ._standalone_tools import approval_record, checked_call
from ._store_outages import OutageTolerantStore
from ._unicode import valid_message, valid_text
from .agent import Agent, parse_model
from .errors import (
    ApprovalError,
    ConfigError,
    InputRejected,
    OutputRejected,
    RetryableToolError,
    TranscriptEntryMissing,
)
from .guardrails import InputGuardrail, ModelGuardrail, parse_verdict
from .messages import Message, ToolCall, Usage, handed_over, message_hash, opening_messages
from .models import Provider, ProviderRequest, ProviderResponse
from .output import OutputValidator
from .pricing import DEFAULT_PRICES, Price, cost_of
from .streaming import CallKey, DeltaStore, DeltaWriter, delta_store_for
from .telemetry import instrument_model_call, instrument_tool_call
from .tools import ToolContext, ToolSpec

if TYPE_CHECKING:
    from .mcp._sessions import MCPSessions
from .transcripts import TranscriptStore, load_prompt, load_tools, save_messages, save_tools

__all__ = ["AgentActivities"]

_log = logging.getLogger("ratchet.streaming")


class AgentActivities:
    """Activity implementations bound to the agents and providers a worker hosts."""

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
            from .transcripts import default_transcript_store

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
            from .mcp._sessions import MCPSessions

            self._mcp = MCPSessions()
        return self._mcp

    async def close(self) -> None:
        """Close the worker's MCP sessions (their subprocesses and HTTP sessions)."""
        if self._mcp is not None:
            await self._mcp.close()

    @activity.defn(name=REFRESH_TOOLS_ACTIVITY)
    async def refresh_mcp_tools(self, request: ToolsRefreshRequest) -> ToolsRefresh:
        """Discover the tools of some of an agent's MCP servers again."""
        from .mcp._tools import discover

        agent = self._agent(request.agent)
        taken = {t.name for t in request.keep}
        tools = list(request.keep)
        for name in request.servers:
            server = agent.mcp_servers.get(name)
            if server is None:
                raise ApplicationError(
                    f"agent {agent.name!r} has no MCP server named {name!r} on this worker "
                    "any more; its tools cannot be refreshed",
                    type="ConfigError",
                    non_retryable=True,
                )
            tools += await discover(self.mcp, agent.name, server, taken)
        ref = await save_tools(self.store, tools) if request.store and tools else None
        return ToolsRefresh(tools=tools, tools_ref=ref)

    @activity.defn(name=PIN_SESSION_ACTIVITY)
    async def pin_mcp_session(self, request: SessionPinRequest) -> SessionPin:
        """Take a run's session with a stateful MCP server: this worker will hold it."""
        if self.session_queue is None:
            raise ApplicationError(
                f"this worker has no task queue of its own for MCP sessions (agent "
                f"{request.agent!r}, server {request.server!r}); build it with create_worker",
                type="ConfigError",
                non_retryable=True,
            )
        return SessionPin(task_queue=self.session_queue)

    @activity.defn(name=SNAPSHOT_ACTIVITY)
    async def snapshot_agent(self, request: SnapshotRequest) -> AgentSpec:
        """Record the agent's current definition; the run uses only this snapshot.

        The tools of the agent's MCP servers are discovered here, so the snapshot
        records them and a replay never contacts a server.
        """
        agent = self._agent(request.agent)
        try:
            spec = agent.spec(model=request.model)
        except ConfigError as e:
            raise ApplicationError(str(e), type="ConfigError", non_retryable=True) from e
        self._provider(spec.model)
        for member in spec.team.values():
            self._provider(member.model)
        spec = await self._with_mcp_tools(agent, spec)
        if spec.team:
            team = {
                name: await self._with_mcp_tools(self._agent(name), member)
                for name, member in spec.team.items()
            }
            spec = spec.model_copy(update={"team": team})
        if request.prompt is not None:
            # The same messages the workflow opens the transcript with (same hashes).
            opening = opening_messages(spec.instructions, request.prompt)
            await save_messages(self.store, None, opening)
            # Stored once: model calls carry a reference, not every schema again.
            spec = await self._tools_stored(spec)
            if spec.team:
                team = {name: await self._tools_stored(m) for name, m in spec.team.items()}
                spec = spec.model_copy(update={"team": team})
        return spec

    async def _with_mcp_tools(self, agent: Agent, spec: AgentSpec) -> AgentSpec:
        if not agent.mcp_servers:
            return spec
        from .mcp._tools import discover

        taken = {t.name for t in spec.tools}
        found: list[ToolSpec] = []
        for server in agent.mcp_servers.values():
            found += await discover(self.mcp, agent.name, server, taken)
        return spec.model_copy(update={"tools": [*spec.tools, *found]})

    async def _tools_stored(self, spec: AgentSpec) -> AgentSpec:
        if not spec.tools:
            return spec
        return spec.model_copy(update={"tools_ref": await save_tools(self.store, spec.tools)})

    @activity.defn(name=HAND_OFF_ACTIVITY)
    async def hand_off(self, request: HandoffRequest) -> HandoffResult:
        """Restart the prompt under the handoff target's instructions, in the store."""
        prompt = await self._prompt(request.head, request.appended)
        head = await save_messages(self.store, None, handed_over(prompt, request.instructions))
        assert head is not None  # a handed-over prompt has its system message
        return HandoffResult(head=head)

    @activity.defn(name=MODEL_ACTIVITY)
    @instrument_model_call
    async def call_model(self, request: ModelRequest) -> ModelResponse:
        """One model call; heartbeats while waiting so a dead worker is noticed quickly."""
        # Counts this call's requests and tokens over all its attempts (see _heartbeat).
        with counted_attempts() as attempts:
            return await self._call_model(request, attempts)

    async def _call_model(self, request: ModelRequest, attempts: Attempts) -> ModelResponse:
        provider, model_name, key = self._provider_ref(request.model)
        new: list[Message] = []
        if request.linear:
            # Rebuild the exact prompt from the store.
            prompt = await self._prompt(request.transcript_ref, request.appended)
            new = prompt[len(prompt) - len(request.appended) :]
            request = request.model_copy(update={"messages": prompt})
            if request.tools_ref and not request.tools:
                tools = await self._tools(request.tools_ref)
                request = request.model_copy(update={"tools": tools})
        try:
            if request.linear:
                _check_window(request.messages, request.context_window_tokens)
            reply = await self._send(request, provider, model_name, key, stream=request.stream)
        except ApplicationError as e:
            if request.linear and e.type == "ContextTooLong":
                # The compaction that follows starts from this prompt's head: store it.
                await save_messages(self.store, request.transcript_ref, new)
            raise
        head: str | None = None
        if request.linear:
            # The new messages and the answer in one write (after the answer: a failed
            # attempt's retry sends the same new messages again).
            head = await save_messages(self.store, request.transcript_ref, [*new, reply.message])
        # Every request the provider saw counts (it may bill failed ones), and so do the
        # tokens of earlier attempts that got an answer. The cost is fixed here and
        # recorded with the call.
        usage = attempts.usage()
        response = ModelResponse(
            message=reply.message,
            usage=usage,
            model=reply.model,
            finish_reason=reply.finish_reason,
            attempt=activity.info().attempt,
            cost_usd=cost_of(request.model, usage, self.prices),
            transcript_ref=head,
            wire=reply.wire,
            warnings=reply.warnings,
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

    @activity.defn(name=TOOL_ACTIVITY)
    @instrument_tool_call
    async def run_tool(self, request: ToolRequest) -> ToolResult:
        """Run one tool call. Ordinary exceptions become an error result for the model."""
        info = activity.info()
        return await self._run_call(
            request, f"{info.workflow_id}/{info.activity_id}", info.workflow_id or ""
        )

    @activity.defn(name=STANDALONE_TOOL_ACTIVITY)
    async def run_tool_standalone(self, request: StandaloneToolRequest) -> ToolResult:
        """Run one tool call outside any run (``AgentClient.call_tool``).

        No workflow checked it, so the agent's policy and the tool's schema are applied
        here, with this worker's definition of the agent; then the call takes the same
        path as in a run, with the caller's idempotency key.
        """
        agent = self._agent(request.agent)
        name = request.tool.name
        try:
            spec = agent.spec()
            if request.tool.mcp_server is not None and spec.tool(name) is None:
                # Discovered from the agent's MCP server when the client looked it up.
                if request.tool.mcp_server not in agent.mcp_servers:
                    raise ConfigError(
                        f"agent {agent.name!r} has no MCP server {request.tool.mcp_server!r} "
                        f"on this worker (tool {name!r})"
                    )
                spec = spec.model_copy(update={"tools": [*spec.tools, request.tool]})
            tool, decision = checked_call(spec, name, request.arguments, request.approved_by)
        except ConfigError as e:
            raise ApplicationError(str(e), type="ConfigError", non_retryable=True) from None
        info = activity.info()
        call_id = info.activity_id
        try:
            approval = approval_record(
                call_id,
                name,
                decision,
                request.approved_by,
                request.approval_proof,
                info.scheduled_time,
            )
        except (ApprovalError, ConfigError) as e:
            raise ApplicationError(str(e), type="ApprovalError", non_retryable=True) from None
        call = ToolRequest(
            agent=agent.name,
            call=ToolCall(id=call_id, name=name, arguments=json.dumps(request.arguments)),
            arguments=request.arguments,
            heartbeat_seconds=request.heartbeat_seconds,
            policy=decision if decision.rule != "policy.default" else None,
            approval=approval,
            mcp_server=tool.mcp_server,
            mcp_tool=tool.mcp_tool,
        )

        async def run(_: AgentActivities, call: ToolRequest) -> ToolResult:
            # A standalone call belongs to no run: its ToolContext.run_id is "".
            return await self._run_call(call, request.idempotency_key, "")

        return await instrument_tool_call(run)(self, call)

    async def _run_call(
        self, request: ToolRequest, idempotency_key: str, run_id: str
    ) -> ToolResult:
        """A tool call, in a run or on its own, with the idempotency key it gets."""
        agent = self._agent(request.agent)
        name = request.call.name
        info = activity.info()
        if request.mcp_server is not None:
            return await self._run_mcp_tool(agent, request, idempotency_key)
        tool = agent.tools.get(name)
        if tool is None:
            return ToolResult(
                content=f"error: tool {name!r} is no longer available on agent {agent.name!r}",
                is_error=True,
            )
        ctx = ToolContext(
            idempotency_key=idempotency_key,
            run_id=run_id,
            attempt=info.attempt,
            deps=self.deps.get(agent.name),
        )
        try:
            content = await heartbeating(
                tool.invoke(request.arguments, ctx), request.heartbeat_seconds
            )
        except pydantic.ValidationError as e:
            return ToolResult(
                content=f"error: invalid arguments for {name!r}: {_validation_summary(e)}",
                is_error=True,
                invalid_arguments=True,
            )
        except RetryableToolError as e:
            # Not chained, like model errors: a retried attempt's failure must stay small.
            raise ApplicationError(f"tool {name!r}: {e}", type="RetryableToolError") from None
        except Exception as e:
            if tool.fatal:
                raise ApplicationError(
                    f"tool {name!r} (declared fatal) raised {type(e).__name__}: {e}",
                    type="ToolFailed",
                    non_retryable=True,
                ) from e
            activity.logger.info("tool %s raised %s: %s", name, type(e).__name__, e)
            return ToolResult(content=f"error: {type(e).__name__}: {e}", is_error=True)
        result = ToolResult(content=_truncate(content, tool.max_result_chars, name))
        return await self._finished(request, result)

    async def _run_mcp_tool(
        self, agent: Agent, request: ToolRequest, idempotency_key: str
    ) -> ToolResult:
        from .mcp._tools import call_tool, render_result, session_key

        name = request.call.name
        server = agent.mcp_servers.get(request.mcp_server or "")
        if server is None or request.mcp_tool is None:
            return ToolResult(
                content=f"error: MCP server {request.mcp_server!r} of tool {name!r} is no "
                f"longer configured on agent {agent.name!r}",
                is_error=True,
            )
        called = await heartbeating(
            call_tool(
                self.mcp,
                # A stateful server: the run's own session, on this (pinned) worker.
                session_key(agent.name, server, activity.info().workflow_id)
                if request.mcp_pinned
                else session_key(agent.name, server),
                server,
                request.mcp_tool,
                request.arguments,
                idempotency_key,
            ),
            request.heartbeat_seconds,
        )

        async def save_blob(digest: str, body: str) -> None:
            await self.store.put({digest: body}, [])

        content = await render_result(called, save_blob)
        result = ToolResult(content=_truncate(content, 100_000, name), is_error=called.is_error)
        return await self._finished(request, result)

    async def _finished(self, request: ToolRequest, result: ToolResult) -> ToolResult:
        """Check a tool result's size, and store its message (linear history)."""
        name = request.call.name
        # A tool's text may hold a lone surrogate (bytes decoded with surrogateescape).
        result = result.model_copy(update={"content": valid_text(result.content)})
        size = len(result.content.encode())
        if self.payload_limit is not None and size > self.payload_limit:
            # Fail now with the facts, instead of a completion Temporal refuses.
            raise ApplicationError(
                f"the result of tool {name!r} is {size:,} bytes, over the payload limit "
                f"of {self.payload_limit:,} bytes. Configure external payload storage "
                "(ratchet.payloads; RATCHET_PAYLOAD_STORE) or lower the tool's "
                "max_result_chars.",
                type="PayloadTooLarge",
                non_retryable=True,
            )
        if request.store:
            # Stored by hash now, so the next model call refers to it instead of
            # carrying it through the history a second time.
            message = Message.tool(request.call, result.content, is_error=result.is_error)
            await save_messages(self.store, None, [message])
            result = result.model_copy(update={"message_ref": message_hash(message)})
        return result

    @activity.defn(name=OUTPUT_CHECK_ACTIVITY)
    async def check_output(self, request: OutputCheckRequest) -> OutputCheckResult:
        """Judge a final answer the workflow found well-formed: validate it with the output
        type itself (pydantic), then run the agent's output validators in order.

        A rejection is a result (the model is told and tries again). A validator that
        raises anything but ``OutputRejected`` fails the attempt: Temporal retries it,
        then the run fails with the exception's type.
        """
        agent = self._agent(request.agent)
        checks: list[OutputCheck] = []
        value: Any = request.output
        data: Any = request.output
        if agent.output is not None:
            data = json.loads(request.output)
            value = data
            if request.typed and agent.output_adapter is not None:
                try:
                    value = agent.output_adapter.validate_json(request.output)
                except pydantic.ValidationError as e:
                    problem = _validation_summary(e)
                    return OutputCheckResult(
                        checks=[
                            OutputCheck(check=agent.output.name, accepted=False, message=problem)
                        ]
                    )
                checks.append(OutputCheck(check=agent.output.name, accepted=True))
                data = agent.output_adapter.dump_python(value, mode="json")
        for name in request.validators:
            validator = agent.output_validators.get(name)
            if validator is None:
                checks.append(
                    OutputCheck(check=name, accepted=True, message="not on the agent any more")
                )
                continue
            try:
                verdict = await heartbeating(_called(validator, value), request.heartbeat_seconds)
            except OutputRejected as e:
                verdict = e.message or "rejected"
            except Exception as e:
                # Not chained, like tool errors: a retried attempt's failure must stay small.
                raise ApplicationError(
                    f"output validator {name!r} raised {type(e).__name__}: {e}",
                    type=type(e).__name__,
                ) from None
            if verdict:
                checks.append(OutputCheck(check=name, accepted=False, message=str(verdict)))
                break
            checks.append(OutputCheck(check=name, accepted=True))
        return OutputCheckResult(checks=checks, data=data)

    @activity.defn(name=INPUT_CHECK_ACTIVITY)
    async def check_input(self, request: InputCheckRequest) -> InputCheckResult:
        """Run the agent's input guardrails on a user message, in order, until one trips.

        A tripped check is a result (the workflow ends the run). A guardrail that raises
        anything but ``InputRejected`` fails the attempt: Temporal retries it, then the
        run fails with the exception's type.
        """
        agent = self._agent(request.agent)
        checks: list[GuardrailCheck] = []
        for name in request.guardrails:
            rail = agent.input_guardrails.get(name)
            if rail is None:
                checks.append(
                    GuardrailCheck(guardrail=name, passed=True, message="not on the agent any more")
                )
                continue
            started = time.monotonic()
            if isinstance(rail, ModelGuardrail):
                check = await self._ask_guardrail_model(request, rail)
            else:
                check = await self._run_guardrail_code(request, name, rail)
            checks.append(check.model_copy(update={"duration_seconds": time.monotonic() - started}))
            if not check.passed:
                break
        return InputCheckResult(checks=checks)

    async def _run_guardrail_code(
        self, request: InputCheckRequest, name: str, rail: InputGuardrail
    ) -> GuardrailCheck:
        try:
            verdict = await heartbeating(_called(rail, request.text), request.heartbeat_seconds)
        except InputRejected as e:
            verdict = e.message or "rejected"
        except Exception as e:
            # Not chained, like tool errors: a retried attempt's failure must stay small.
            raise ApplicationError(
                f"input guardrail {name!r} raised {type(e).__name__}: {e}", type=type(e).__name__
            ) from None
        if verdict:
            return GuardrailCheck(guardrail=name, passed=False, message=verdict)
        return GuardrailCheck(guardrail=name, passed=True)

    async def _ask_guardrail_model(
        self, request: InputCheckRequest, rail: ModelGuardrail
    ) -> GuardrailCheck:
        provider, model_name, key = self._provider_ref(rail.model)
        ask = ModelRequest(
            agent=request.agent,
            model=rail.model,
            turn=request.turn,
            messages=[Message.system(rail.system_prompt()), Message.user(request.text)],
            heartbeat_seconds=request.heartbeat_seconds,
        )
        with counted_attempts() as asking:
            reply = await self._send(ask, provider, model_name, key)
        usage = asking.usage()
        allowed, reason = parse_verdict(reply.message.content or "")
        return GuardrailCheck(
            guardrail=rail.name,
            passed=allowed,
            message=reason if not allowed else "",
            usage=usage,
            cost_usd=cost_of(rail.model, usage, self.prices),
        )

    @activity.defn(name=COMPACT_ACTIVITY)
    async def compact_transcript(self, request: CompactRequest) -> CompactResult:
        """Shrink a prompt that does not fit the context: drop or summarize older turns."""
        prompt = await self._prompt(request.head, [])
        keep, old = _split_for_compaction(prompt, request.context_window_tokens)
        if not old:
            raise ApplicationError(
                f"the prompt of turn {request.turn} (about {_tokens(prompt):,} tokens) does not "
                "fit the model's context window and nothing is left to drop: the system "
                "prompt, pinned messages and the latest turn alone are too long. Use a model "
                "with a larger window, or lower the tools' max_result_chars.",
                type="ContextTooLong",
                non_retryable=True,
            )
        summary: Message | None = None
        usage = Usage()
        cost: float | None = None
        match request.strategy:
            case "drop_oldest":
                pass
            case "summarize":
                summary, usage, cost = await self._summarize(request, old)
            case _:
                assert_never(request.strategy)
        kept = _merge(prompt, keep, summary)
        head = await save_messages(self.store, None, kept)
        assert head is not None
        return CompactResult(
            head=head,
            kept=[message_hash(m) for m in kept],
            dropped=len(old),
            summary=summary,
            usage=usage,
            cost_usd=cost,
        )

    async def _summarize(
        self, request: CompactRequest, old: list[Message]
    ) -> tuple[Message, Usage, float | None]:
        """Have the model summarize ``old``: the summary message, its usage and cost."""
        provider, model_name, key = self._provider_ref(request.model)
        ask = ModelRequest(
            agent=request.agent,
            model=request.model,
            turn=request.turn,
            messages=[
                Message.system(_SUMMARY_INSTRUCTIONS),
                Message.user("\n\n".join(_render_for_summary(m) for m in old)),
            ],
            timeout_seconds=request.timeout_seconds,
            heartbeat_seconds=request.heartbeat_seconds,
        )
        with counted_attempts() as summarizing:
            reply = await self._send(ask, provider, model_name, key)
        usage = summarizing.usage()
        summary = Message.system(
            f"Summary of {len(old)} earlier messages: {reply.message.content or ''}"
        )
        return summary, usage, cost_of(request.model, usage, self.prices)


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


async def _called(validator: OutputValidator | InputGuardrail, value: Any) -> str | None:
    """A validator's verdict; a plain function runs in a thread, as it may block."""
    verdict: Any
    if inspect.iscoroutinefunction(validator):
        verdict = await validator(value)
    else:
        verdict = await asyncio.to_thread(validator, value)
        if inspect.isawaitable(verdict):
            verdict = await verdict
    return None if verdict is None else str(verdict)


@contextlib.contextmanager
def _missing_entries_fail_the_run() -> Iterator[None]:
    """A lost store entry is not retried: the prompt could never be rebuilt exactly."""
    try:
        yield
    except TranscriptEntryMissing as e:
        raise ApplicationError(str(e), type="TranscriptEntryMissing", non_retryable=True) from e


_SUMMARY_INSTRUCTIONS = (
    "Summarize the conversation below for the assistant who continues it: keep facts, "
    "decisions, open questions and tool results that matter. Be brief."
)


def _tokens(messages: list[Message]) -> int:
    """A rough token estimate (4 characters a token): no tokenizer for every model."""
    chars = 0
    for m in messages:
        chars += len(m.content or "") + 8
        for c in m.tool_calls or []:
            chars += len(c.arguments) + len(c.name)
    return chars // 4


def _check_window(prompt: list[Message], window: int | None) -> None:
    if window is not None and (tokens := _tokens(prompt)) > window:
        raise ApplicationError(
            f"the prompt is about {tokens:,} tokens, over the model's context window of "
            f"{window:,} (Limits.context_window_tokens)",
            type="ContextTooLong",
            non_retryable=True,
        )


def _split_for_compaction(
    prompt: list[Message], window: int | None
) -> tuple[list[int], list[Message]]:
    """Which messages to keep (indices) and which older ones to drop or summarize.

    Kept always: system messages, pinned messages and the latest turn. The rest is cut
    in units (an assistant message with its tool results is one unit, never split),
    oldest first: until the estimate fits in 3/4 of the window, or half of the units
    when no window is configured (the provider said "too long" without a number).
    """
    units: list[list[int]] = []
    for i, m in enumerate(prompt):
        if m.role == "system" or m.pinned:
            continue
        if m.role == "tool" and units and prompt[units[-1][0]].tool_calls:
            units[-1].append(i)
        else:
            units.append([i])
    # The latest turn stays: from the last user message on (or the last unit).
    last_user = max((n for n, u in enumerate(units) if prompt[u[0]].role == "user"), default=-1)
    droppable = units[: max(last_user, len(units) - 1) if last_user < 0 else last_user]
    if window is None:
        cut = droppable[: max(1, len(droppable) // 2)] if droppable else []
    else:
        cut = []
        total = _tokens(prompt)
        target = window * 3 // 4
        for unit in droppable:
            if total <= target:
                break
            cut.append(unit)
            total -= _tokens([prompt[i] for i in unit])
        if not cut and droppable:
            cut = droppable[:1]
    dropped = {i for u in cut for i in u}
    keep = [i for i in range(len(prompt)) if i not in dropped]
    return keep, [prompt[i] for i in sorted(dropped)]


def _merge(prompt: list[Message], keep: list[int], summary: Message | None) -> list[Message]:
    """The kept messages in order, with the summary where the dropped ones were."""
    out = [prompt[i] for i in keep]
    if summary is not None:
        first_dropped = next((n for n, i in enumerate(keep) if i != n), len(keep))
        out.insert(first_dropped, summary)
    return out


def _render_for_summary(m: Message) -> str:
    calls = "".join(f" [calls {c.name}({c.arguments})]" for c in m.tool_calls or [])
    return f"{m.role}{f' ({m.name})' if m.name else ''}: {m.content or ''}{calls}"


_MAX_RESPONSE_BYTES = 1_000_000


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
