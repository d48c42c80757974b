"""Handoffs: another agent takes the conversation over, in the same run.

The target is read from the run's snapshot (``AgentSpec.team``), never looked up by
name on a worker, so the run reaches exactly the agent it started with. The
handoff activity stores the prompt under the target's instructions; its scheduling
in the history is the recorded decision (the trace's handoff line).
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from .._protocol import HAND_OFF_ACTIVITY, AgentSpec, HandoffResult
    from ..errors import RunErrorType
    from ..messages import ToolCall

from ._failures import failure_of
from ._status import Status
from ._transcript import Transcript

__all__ = ["hand_off"]

_LOST: list[RunErrorType] = ["TranscriptEntryMissing"]


async def hand_off(
    root: AgentSpec,
    source: AgentSpec,
    call: ToolCall,
    target_name: str,
    turn: int,
    *,
    transcript: Transcript,
    status: Status,
) -> AgentSpec:
    """Hand the conversation from ``source`` to ``target_name``; the target's snapshot."""
    target = root.member(target_name)
    head: str | None = None
    if transcript.by_reference:
        request = transcript.handoff_request(source, target, turn, call.id)
        try:
            result: HandoffResult = await workflow.execute_activity(
                HAND_OFF_ACTIVITY,
                request,
                result_type=HandoffResult,
                activity_id=f"turn{turn}-handoff",
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=RetryPolicy(maximum_attempts=10, non_retryable_error_types=_LOST),
                summary=f"handoff {source.name} → {target.name}",
            )
        except ActivityError as e:
            status.fail_from(failure_of(e), f"the handoff to {target.name!r} failed: ")
        head = result.head
    transcript.handed_off(target.instructions, head)
    status.handed_off(target.name)
    return target
