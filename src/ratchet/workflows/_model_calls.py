"""Model calls: the model activity, and shrinking a prompt that outgrew the context window."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from .._protocol import (
        COMPACT_ACTIVITY,
        MODEL_ACTIVITY,
        AgentSpec,
        CompactRequest,
        CompactResult,
        ModelRequest,
        ModelResponse,
    )
    from ..errors import MODEL_ERRORS, ModelErrorType, RunErrorType

from ._failures import failure_of
from ._status import Status
from ._transcript import Transcript

__all__ = ["ModelCalls"]

_NON_RETRYABLE_MODEL_ERRORS: list[RunErrorType] = [
    k.name for k in MODEL_ERRORS.values() if not k.retryable
]
_CONTEXT_TOO_LONG: ModelErrorType = "ContextTooLong"


class ModelCalls:
    """The model calls of a run of ``spec``: one per turn, plus compactions."""

    def __init__(self, spec: AgentSpec, transcript: Transcript, status: Status) -> None:
        self._spec = spec
        self._transcript = transcript
        self._status = status

    async def call(self, turn: int) -> ModelResponse:
        """The model's reply to the transcript; fails the run when there is none.

        A prompt over the context window is shrunk with the agent's strategy (an
        activity) and the call retried, a bounded number of times.
        """
        spec = self._spec
        problem = self._transcript.oversized(spec.limits, turn)
        if problem is not None:
            self._status.fail("PayloadTooLarge", problem)
        retries = self._transcript.compactions_per_turn
        for attempt in range(retries + 1):
            request = self._transcript.model_request(spec, turn)
            activity_id = f"turn{turn}-model" + (f"-{attempt + 1}" if attempt else "")
            try:
                return await self._call(request, activity_id)
            except ActivityError as e:
                failure = failure_of(e)
                if failure.type != _CONTEXT_TOO_LONG or attempt == retries:
                    self._status.fail_from(failure, f"model call of turn {turn} failed: ")
            await self._compact(turn, self._transcript.stored_prompt(), attempt)
        raise AssertionError("unreachable")  # the loop returns or fails

    async def _call(self, request: ModelRequest, activity_id: str) -> ModelResponse:
        spec = self._spec
        limits = spec.limits
        lost: list[RunErrorType] = ["TranscriptEntryMissing", "PayloadTooLarge"]
        response: ModelResponse = await workflow.execute_activity(
            MODEL_ACTIVITY,
            request,
            result_type=ModelResponse,
            task_queue=spec.model_task_queue,
            activity_id=activity_id,
            # The attempt's own HTTP timeout fires first; this is the backstop. A call
            # may first wait for its provider's rate limiter, heartbeating.
            start_to_close_timeout=timedelta(
                seconds=limits.model_timeout_seconds + limits.model_queue_seconds + 10
            ),
            heartbeat_timeout=timedelta(seconds=limits.model_heartbeat_seconds),
            retry_policy=RetryPolicy(
                initial_interval=timedelta(seconds=limits.model_retry_initial_seconds),
                backoff_coefficient=2.0,
                maximum_interval=timedelta(seconds=limits.model_retry_max_seconds),
                maximum_attempts=limits.model_max_attempts,
                non_retryable_error_types=[
                    *_NON_RETRYABLE_MODEL_ERRORS,
                    *(lost if request.linear else []),
                ],
            ),
            summary=f"model {spec.model} · turn {request.turn}",
        )
        return response

    async def _compact(self, turn: int, head: str, attempt: int) -> None:
        spec = self._spec
        limits = spec.limits
        self._status.set_step(
            f"shrinking the prompt to fit the context ({limits.context_strategy})"
        )
        lost: RunErrorType = "TranscriptEntryMissing"
        try:
            result: CompactResult = await workflow.execute_activity(
                COMPACT_ACTIVITY,
                CompactRequest(
                    agent=spec.name,
                    model=spec.model,
                    turn=turn,
                    head=head,
                    strategy=limits.context_strategy,
                    context_window_tokens=limits.context_window_tokens,
                    timeout_seconds=limits.model_timeout_seconds,
                    heartbeat_seconds=limits.model_heartbeat_seconds,
                ),
                result_type=CompactResult,
                task_queue=spec.model_task_queue,
                activity_id=f"turn{turn}-compact" + (f"-{attempt + 1}" if attempt else ""),
                start_to_close_timeout=timedelta(seconds=limits.model_timeout_seconds + 10),
                heartbeat_timeout=timedelta(seconds=limits.model_heartbeat_seconds),
                retry_policy=RetryPolicy(
                    initial_interval=timedelta(seconds=limits.model_retry_initial_seconds),
                    maximum_interval=timedelta(seconds=limits.model_retry_max_seconds),
                    maximum_attempts=limits.model_max_attempts,
                    non_retryable_error_types=[*_NON_RETRYABLE_MODEL_ERRORS, lost],
                ),
                summary=f"{limits.context_strategy} · turn {turn}",
            )
        except ActivityError as e:
            self._status.fail_from(failure_of(e), f"shrinking the prompt of turn {turn} failed: ")
        self._transcript.compacted(result.head)
        self._status.compacted()
        if result.usage.requests:
            self._status.account(result.usage, result.cost_usd)
