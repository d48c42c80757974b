"""The check activities: a final answer against its output type and validators, a
user message against the input guardrails (code or a model).
"""

from __future__ import annotations

import inspect
import json
import time
from typing import Any

import pydantic
from temporalio import activity
from temporalio.exceptions import ApplicationError

from .._heartbeat import counted_attempts, heartbeating
from .._protocol import (
    INPUT_CHECK_ACTIVITY,
    OUTPUT_CHECK_ACTIVITY,
    GuardrailCheck,
    InputCheckRequest,
    InputCheckResult,
    ModelRequest,
    OutputCheck,
    OutputCheckRequest,
    OutputCheckResult,
)
from ..errors import InputRejected, OutputRejected
from ..guardrails import InputGuardrail, ModelGuardrail, parse_verdict
from ..messages import Message
from ..output import OutputValidator
from ..pricing import cost_of
from ..tools import in_tool_thread
from ._base import ActivitiesBase, validation_summary

__all__ = ["CheckActivities"]


class CheckActivities(ActivitiesBase):
    """Output checks and input guardrails."""

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
                    problem = validation_summary(e)
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


async def _called(validator: OutputValidator | InputGuardrail, value: Any) -> str | None:
    """A validator's verdict; a plain function runs in a thread, as it may block."""
    verdict: Any
    if inspect.iscoroutinefunction(validator):
        verdict = await validator(value)
    else:
        # Ratchet's tool threads, not the loop's default executor: a stopping worker
        # does not wait for a blocked validator (see ratchet.tools.busy_tool_threads).
        verdict = await in_tool_thread(validator, value)
        if inspect.isawaitable(verdict):
            verdict = await verdict
    return None if verdict is None else str(verdict)
