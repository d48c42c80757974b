"""Final answers of agents with an output type or output validators: checked, then
accepted or sent back for repair.

Each final answer is checked in the workflow against the schema the snapshot
recorded (pure, so a replay decides the same). A well-formed answer is then judged
in the output check activity, when there is something the schema cannot say: the
output type's own pydantic validation (models, dataclasses, ``TypedDict``s) and the
agent's output validators (user code, which may do I/O). An answer that fails goes
back to the model with what was wrong, ``Limits.max_repair_turns`` times in a row at
most; the next one ends the run with ``OutputValidationError``.

Agents with neither never get here: their runs, and every run recorded before
structured output, take the loop's plain-answer path unchanged.
"""

from __future__ import annotations

import json
from datetime import timedelta
from enum import Enum
from typing import Any, Literal

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from .._final_answer import (
        Offered,
        accepted_messages,
        answer_text,
        answers_are_checked,
        needs_worker_check,
        offered_answer,
        rejected_problem,
        repair_messages,
    )
    from .._protocol import (
        OUTPUT_CHECK_ACTIVITY,
        AgentSpec,
        Carried,
        ModelResponse,
        OutputCheckRequest,
        OutputCheckResult,
    )
    from ..errors import RunErrorType

from ._failures import failure_of
from ._status import Status
from ._transcript import Transcript

__all__ = ["REPAIRED", "FinalAnswers", "parsed_output"]


class _Repaired(Enum):
    REPAIRED = "repaired"


REPAIRED: Literal[_Repaired.REPAIRED] = _Repaired.REPAIRED
"""The answer went back to the model: the loop goes on with the next turn."""

_NOT_RETRIED: list[RunErrorType] = ["UnknownAgent"]


class FinalAnswers:
    """The final answers of a run of ``spec``, and the streak of answers sent back."""

    def __init__(
        self, spec: AgentSpec, transcript: Transcript, status: Status, carried: Carried | None
    ) -> None:
        self._spec = spec
        self._transcript = transcript
        self._status = status
        self.repair_streak = carried.output_repairs if carried else 0
        """Final answers in a row sent back for repair (``Limits.max_repair_turns``)."""

    @property
    def checked(self) -> bool:
        """The agent has an output type or output validators (else answers are text as is)."""
        return answers_are_checked(self._spec)

    async def settle(self, turn: int, response: ModelResponse) -> str | _Repaired | None:
        """The accepted answer's text, ``REPAIRED``, or None when the reply calls tools."""
        message = response.message
        offered = offered_answer(self._spec, message, response.wire)
        if offered is None:
            return None
        problem = offered.problem
        value = offered.value
        if problem is None and needs_worker_check(self._spec):
            result = await self._check(turn, offered)
            rejection = result.rejection
            if rejection is not None:
                problem = rejected_problem(rejection.check, rejection.message, offered)
            else:
                value = result.data
        if problem is None:
            self._transcript.add_all(accepted_messages(message, offered))
            self.repair_streak = 0
            return answer_text(self._spec, value)
        self._repair(turn, problem)
        self._transcript.add_all(repair_messages(message, offered, problem))
        return REPAIRED

    def _repair(self, turn: int, problem: str) -> None:
        """Count an answer sent back; fail the run past ``Limits.max_repair_turns``."""
        self.repair_streak += 1
        limit = self._spec.limits.max_repair_turns
        if self.repair_streak > limit:
            self._status.fail(
                "OutputValidationError",
                f"the model's final answer failed its checks {self.repair_streak} times in a "
                f"row (Limits.max_repair_turns={limit}); last problem: {problem}",
                details={"problem": problem},
            )
        self._status.set_step(f"final answer of turn {turn} sent back for repair")

    async def _check(self, turn: int, offered: Offered) -> OutputCheckResult:
        spec = self._spec
        limits = spec.limits
        output = spec.output
        request = OutputCheckRequest(
            agent=spec.name,
            turn=turn,
            output=answer_text(spec, offered.value),
            typed=output is not None and output.typed_check,
            validators=spec.output_validators,
            heartbeat_seconds=limits.tool_heartbeat_seconds,
        )
        self._status.set_step(f"checking the final answer (turn {turn})")
        try:
            result: OutputCheckResult = await workflow.execute_activity(
                OUTPUT_CHECK_ACTIVITY,
                request,
                result_type=OutputCheckResult,
                activity_id=f"turn{turn}-output",
                start_to_close_timeout=timedelta(seconds=limits.output_check_seconds),
                heartbeat_timeout=timedelta(seconds=limits.tool_heartbeat_seconds),
                retry_policy=RetryPolicy(
                    maximum_attempts=3, non_retryable_error_types=_NOT_RETRIED
                ),
                summary=f"check output · turn {turn}",
            )
        except ActivityError as e:
            self._status.fail_from(failure_of(e), f"the output check of turn {turn} failed: ")
        return result


def parsed_output(spec: AgentSpec, answer: str) -> Any:
    """``RunResult.data``: a structured answer's JSON value; None for text."""
    if spec.output is None:
        return None
    try:
        return json.loads(answer)
    except (ValueError, RecursionError):  # never: structured answers are written as JSON
        return None
