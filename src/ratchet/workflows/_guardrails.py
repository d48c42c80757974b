"""Input guardrails: each user message is checked before a model sees it.

Only agents whose snapshot names input guardrails take this path; runs of other
agents, and every run recorded before guardrails (their snapshots have none),
schedule nothing new, so their histories replay unchanged.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from .._protocol import INPUT_CHECK_ACTIVITY, AgentSpec, InputCheckRequest, InputCheckResult
    from ..errors import RunErrorType

from ._failures import failure_of
from ._status import Status

__all__ = ["check_input"]

_NOT_RETRIED: list[RunErrorType] = ["UnknownAgent", "ConfigError"]


async def check_input(spec: AgentSpec, text: str, *, status: Status) -> None:
    """Run the agent's input guardrails on the user message ``text``; end the run with
    ``GuardrailTripped`` if one trips."""
    limits = spec.limits
    turn = status.current.turn + 1
    request = InputCheckRequest(
        agent=spec.name,
        turn=turn,
        text=text,
        guardrails=spec.input_guardrails,
        heartbeat_seconds=limits.tool_heartbeat_seconds,
    )
    status.set_step("checking the input")
    try:
        result: InputCheckResult = await workflow.execute_activity(
            INPUT_CHECK_ACTIVITY,
            request,
            result_type=InputCheckResult,
            # The turn the message would start: unique, and read back by the trace.
            activity_id=f"turn{turn}-input",
            # A model guardrail is a model call: it gets the model's time.
            start_to_close_timeout=timedelta(
                seconds=max(limits.output_check_seconds, limits.model_timeout_seconds)
            ),
            heartbeat_timeout=timedelta(seconds=limits.tool_heartbeat_seconds),
            retry_policy=RetryPolicy(maximum_attempts=3, non_retryable_error_types=_NOT_RETRIED),
            summary=f"check input · turn {turn}",
        )
    except ActivityError as e:
        status.fail_from(failure_of(e), "the input guardrails failed: ")
    for check in result.checks:
        if check.usage.total_tokens or check.cost_usd is not None:
            status.account(check.usage, check.cost_usd)
    tripped = result.tripped
    if tripped is not None:
        status.fail(
            "GuardrailTripped",
            f"input guardrail {tripped.guardrail!r} rejected the message: {tripped.message}",
            details={"guardrail": tripped.guardrail, "reason": tripped.message},
        )
