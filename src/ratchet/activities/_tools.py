"""The tool call activities: in a run, or on its own (a standalone activity), with
its idempotency key, heartbeats, size checks and the result stored by hash.
"""

from __future__ import annotations

import json

import pydantic
from temporalio import activity
from temporalio.exceptions import ApplicationError

from .._heartbeat import heartbeating
from .._protocol import (
    STANDALONE_TOOL_ACTIVITY,
    TOOL_ACTIVITY,
    StandaloneToolRequest,
    ToolRequest,
    ToolResult,
)
from .._standalone_tools import approval_record, checked_call
from .._unicode import valid_text
from ..agent import Agent
from ..errors import ApprovalError, ConfigError, RetryableToolError
from ..messages import Message, ToolCall, message_hash
from ..telemetry import instrument_tool_call
from ..tools import ToolContext
from ..transcripts import save_messages
from ._base import ActivitiesBase, validation_summary

__all__ = ["ToolCallActivities"]


class ToolCallActivities(ActivitiesBase):
    """One tool call per activity."""

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

        async def run(_: ToolCallActivities, call: ToolRequest) -> ToolResult:
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
                content=f"error: invalid arguments for {name!r}: {validation_summary(e)}",
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
        from ..mcp._tools import call_tool, render_result, session_key

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


def _truncate(content: str, limit: int, tool_name: str) -> str:
    if len(content) <= limit:
        return content
    return (
        content[:limit]
        + f"\n[ratchet: the result of {tool_name!r} was cut from {len(content):,} to "
        f"{limit:,} characters (the tool's max_result_chars); ask for less, e.g. narrow "
        "the query]"
    )
