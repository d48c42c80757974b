"""Tool calls: checking the model's calls, the policy gate, and the tool activity.

Model output can never fail a workflow task: malformed calls, unknown tools and
invalid arguments go back to the model as tool errors, within a bounded number of
repair turns.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from datetime import timedelta
from typing import Any, assert_never

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, TimeoutError, TimeoutType

with workflow.unsafe.imports_passed_through():
    from .._protocol import (
        TOOL_ACTIVITY,
        AgentSpec,
        ApprovalRecord,
        Carried,
        ToolRequest,
        ToolResult,
    )
    from .._render import short_arguments
    from .._schema import parse_call
    from ..errors import RunErrorType
    from ..messages import Message, ToolCall
    from ..policy import PolicyDecision
    from ..team import handoff_message

from ._approvals import Approvals
from ._failures import failure_of
from ._fixtures import FixtureReplay
from ._mcp_sessions import MCPPins
from ._status import Status
from ._subagents import SubAgents
from ._transcript import Transcript

__all__ = ["ToolCalls"]

_FATAL_TOOL_ERRORS: tuple[RunErrorType, ...] = ("ToolFailed", "PayloadTooLarge")
"""Tool failures that end the run (the others go back to the model)."""


class ToolCalls:
    """The tool calls of a run of ``spec``, and the streak of turns with invalid calls."""

    def __init__(
        self,
        spec: AgentSpec,
        transcript: Transcript,
        status: Status,
        approvals: Approvals,
        subagents: SubAgents,
        pins: MCPPins,
        carried: Carried | None,
        replay: FixtureReplay | None = None,
    ) -> None:
        self._spec = spec
        self._replay = replay
        """An eval case's run: calls are answered from recorded results, no tool runs."""
        self._transcript = transcript
        self._status = status
        self._approvals = approvals
        self._subagents = subagents
        self._pins = pins
        self._rejected_by_tool: set[str] = set()
        self.repair_streak = carried.repair_streak if carried else 0
        """Turns in a row with an invalid call (``Limits.max_repair_turns``)."""
        self._shares = 1
        self.handoff: tuple[ToolCall, str] | None = None
        """The handoff the model asked for in the latest turn: (its call, the target)."""

    async def run(self, turn: int, calls: list[ToolCall]) -> list[Message | None]:
        """Run the valid calls in parallel; answer invalid ones with an error message.

        Returns the tool messages in the order of the calls (None for a call whose
        approval is handed to the next execution).
        """
        pending: list[Awaitable[Message | None]] = []
        had_invalid = False
        self.handoff = None
        # Sub-agents called at once split the budgets left between them.
        self._shares = max(1, sum(1 for c in calls if (t := self._spec.tool(c.name)) and t.agent))
        for index, call in enumerate(calls):
            arguments, problem = parse_call(self._spec, call)
            if problem is not None:
                had_invalid = True
                pending.append(_ready(Message.tool(call, problem, is_error=True)))
            else:
                pending.append(self._gated(turn, index, call, arguments))
        self._status.set_step(
            f"{len(calls)} tool call(s) (turn {turn}): " + ", ".join(c.name for c in calls)
        )
        messages: list[Message | None] = list(await asyncio.gather(*pending))
        self._status.tools_called(len(calls))
        # Arguments the tool's own validation rejected (constraints the schema check in
        # here does not cover, e.g. ranges) count as invalid calls too.
        had_invalid = had_invalid or any(c.id in self._rejected_by_tool for c in calls)
        self.repair_streak = self.repair_streak + 1 if had_invalid else 0
        return messages

    async def finish(
        self, turn: int, calls: list[ToolCall], results: dict[str, Message | None]
    ) -> None:
        """Run the calls of an unfinished turn that have no result yet, into ``results``."""
        self.handoff = None
        for c in calls:
            # A handoff the previous execution took (its tool message is in results).
            result, tool = results.get(c.id), self._spec.tool(c.name)
            if result is not None and not result.is_error and tool and tool.handoff:
                self.handoff = self.handoff or (c, tool.handoff)
        todo = [(i, c) for i, c in enumerate(calls) if results.get(c.id) is None]
        done = await asyncio.gather(
            *(self._gated(turn, i, c, parse_call(self._spec, c)[0]) for i, c in todo)
        )
        for (_, c), message in zip(todo, done, strict=True):
            results[c.id] = message

    def check_repairs(self, results: list[Message]) -> None:
        """Fail the run when the model made invalid calls too many turns in a row."""
        limit = self._spec.limits.max_repair_turns
        if self.repair_streak > limit:
            self._status.fail(
                "RepairLimitExceeded",
                f"the model made invalid tool calls {self.repair_streak} turns in a row "
                f"(Limits.max_repair_turns={limit}); last problem: "
                f"{next(m.content for m in reversed(results) if m.is_error)}",
            )

    def message_answered(self) -> None:
        self.repair_streak = 0

    async def _gated(
        self, turn: int, index: int, call: ToolCall, arguments: dict[str, Any]
    ) -> Message | None:
        """Apply the agent's policy to one call, then run it if allowed (or approved)."""
        tool = self._spec.tool(call.name)
        assert tool is not None  # parse_call checked it
        decision = self._spec.policy.decide(call.name, arguments, side_effects=tool.side_effects)
        approval = None
        match decision.decision:
            case "allow":
                pass
            case "deny":
                why = f": {decision.reason}" if decision.reason else ""
                return Message.tool(
                    call,
                    f"error: the policy denies this call (rule {decision.rule!r}){why}. "
                    "Do not retry it; tell the user it is not allowed.",
                    is_error=True,
                )
            case "require_approval":
                approval = await self._approvals.wait(
                    self._spec,
                    f"turn{turn}-tool{index}",
                    tool=call.name,
                    arguments=arguments,
                    rule=decision.rule,
                    reason=decision.reason,
                )
                if approval is None:
                    return None  # still waiting: the next execution asks again
                if not approval.approved:
                    why = f": {approval.reason}" if approval.reason else ""
                    return Message.tool(
                        call,
                        f"error: {approval.approver} denied this call{why}. "
                        "Do not retry it; tell the user.",
                        is_error=True,
                    )
            case _:
                assert_never(decision.decision)
        if tool.handoff is not None:
            return self._hand_off(call, tool.handoff)
        if self._replay is not None:
            return self._replay.answer(call, arguments)
        if tool.agent is not None:
            return await self._subagents.call(
                self._spec, tool, f"turn{turn}-tool{index}", call, arguments, shares=self._shares
            )
        return await self._run(turn, index, call, arguments, decision, approval)

    def _hand_off(self, call: ToolCall, target: str) -> Message:
        """Take the turn's first handoff; the run hands over once the turn's calls are done."""
        if self.handoff is not None:
            return Message.tool(
                call,
                f"error: this turn already hands off to {self.handoff[1]!r}; one handoff per turn.",
                is_error=True,
            )
        self.handoff = (call, target)
        return Message.tool(call, handoff_message(self._spec.name, target))

    async def _run(
        self,
        turn: int,
        index: int,
        call: ToolCall,
        arguments: dict[str, Any],
        decision: PolicyDecision,
        approval: ApprovalRecord | None,
    ) -> Message:
        spec = self._spec
        tool = spec.tool(call.name)
        assert tool is not None  # parse_call checked it
        pinned: str | None = None
        if tool.mcp_stateful and tool.mcp_server is not None:
            try:
                pinned = await self._pins.queue(spec.name, tool.mcp_server)
            except ActivityError as e:
                self._pins.failed(tool.mcp_server)
                return Message.tool(
                    call,
                    f"error: no worker could take a session with MCP server "
                    f"{tool.mcp_server!r}: {failure_of(e).message}",
                    is_error=True,
                )
        try:
            result = await workflow.execute_activity(
                TOOL_ACTIVITY,
                ToolRequest(
                    agent=spec.name,
                    call=call,
                    arguments=arguments,
                    heartbeat_seconds=spec.limits.tool_heartbeat_seconds,
                    # Only a rule that decided something is worth recording.
                    policy=decision if decision.rule != "policy.default" else None,
                    approval=approval,
                    store=self._transcript.by_reference,
                    mcp_server=tool.mcp_server,
                    mcp_tool=tool.mcp_tool,
                    mcp_pinned=pinned is not None,
                ),
                task_queue=pinned,
                # A pinned worker that is gone never starts the call: say so in time.
                schedule_to_start_timeout=(
                    timedelta(seconds=tool.mcp_connect_seconds) if pinned else None
                ),
                result_type=ToolResult,
                # Explicit and unique per run, so the idempotency key derived from it is stable.
                activity_id=f"turn{turn}-tool{index}",
                start_to_close_timeout=timedelta(seconds=tool.timeout_seconds),
                heartbeat_timeout=timedelta(seconds=spec.limits.tool_heartbeat_seconds),
                retry_policy=RetryPolicy(maximum_attempts=tool.max_attempts),
                summary=f"tool {call.name}({short_arguments(arguments)})",
            )
        except ActivityError as e:
            if pinned is not None and _never_started(e):
                assert tool.mcp_server is not None
                self._pins.lost(tool.mcp_server, pinned)
                return Message.tool(
                    call,
                    f"error: the session with MCP server {tool.mcp_server!r} was held by a "
                    "worker that is gone, and its state with it; the next call starts a "
                    "new session.",
                    is_error=True,
                )
            failure = failure_of(e)
            if failure.type in _FATAL_TOOL_ERRORS:
                self._status.fail_from(failure)
            return Message.tool(
                call, f"tool {call.name!r} failed: {failure.message}", is_error=True
            )
        if result.invalid_arguments:
            self._rejected_by_tool.add(call.id)
        if result.message_ref is not None:
            self._transcript.mark_stored(result.message_ref)
        return Message.tool(call, result.content, is_error=result.is_error)


def _never_started(error: ActivityError) -> bool:
    """The call timed out waiting for a worker to start it."""
    cause = error.cause
    return isinstance(cause, TimeoutError) and cause.type == TimeoutType.SCHEDULE_TO_START


async def _ready(message: Message) -> Message:
    return message
