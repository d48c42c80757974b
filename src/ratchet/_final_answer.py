"""Which reply is a final answer, whether it is the agent's output type, and what the
model is told when it is not.

Pure: the workflow decides with it, and the history reader (``ratchet.events``) runs
it again to say which answers were sent back and why, with the same words.

A final answer comes in one of two ways:

- as a call of the ``final_result`` tool (``native`` tool mode, agents with an output
  type): its arguments are the answer (``{"result": ...}`` for a schema that is not an
  object). A repair goes back as that call's tool result; other calls of the same
  reply never run (the final answer ends the turn), and get a result saying so.
- as the reply's text: the envelope's answer (``json_schema`` mode), or plain text.
  A repair goes back as a user message.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, NamedTuple

from ._schema import check_value
from .messages import Message, ToolCall
from .output import OUTPUT_TOOL, WRAP_KEY, OutputSpec

if TYPE_CHECKING:
    from .agent import AgentSpec
    from .models import WireFormat

__all__ = [
    "ACCEPTED",
    "NOT_RUN",
    "Offered",
    "accepted_messages",
    "answer_text",
    "answers_are_checked",
    "needs_worker_check",
    "offered_answer",
    "rejected_problem",
    "repair_messages",
]

ACCEPTED = "Final answer accepted."
"""The result of a ``final_result`` call whose answer was accepted."""

NOT_RUN = (
    "error: not run: this reply also gave the final answer, which ends the turn. Call the "
    "tools you need first; give the final answer once you have their results."
)
"""The result of a tool call made in the same reply as a ``final_result`` call."""


class Offered(NamedTuple):
    """A final answer the model offered."""

    call: ToolCall | None
    """The ``final_result`` call it came in; None: the reply's text."""
    value: Any
    """The answer: the output type's JSON value (unwrapped), or the text."""
    problem: str | None
    """Why it is not the output type, as the model is told; None: it is."""


def offered_answer(spec: AgentSpec, message: Message, wire: WireFormat | None) -> Offered | None:
    """The final answer ``message`` offers; None when it calls tools instead."""
    output = spec.output
    calls = message.tool_calls or []
    if output is not None:
        final = next((c for c in calls if c.name == OUTPUT_TOOL), None)
        if final is not None:
            return _from_call(output, final)
    if calls:
        return None
    text = message.content or ""
    if output is None:
        return Offered(None, text, None)
    return _from_text(output, text, _asked_by(wire))


def _asked_by(wire: WireFormat | None) -> str:
    """How the request asked for the output: ``envelope`` (json_schema mode), ``tool``
    (native mode's final_result tool), or ``nothing`` (a provider that does not say, or
    ignored the output type: the model saw no schema)."""
    if wire is None or not wire.structured:
        return "nothing"
    return "envelope" if wire.tool_mode == "json_schema" else "tool"


def answers_are_checked(spec: AgentSpec) -> bool:
    """The agent has an output type or output validators: a final answer counts once
    its checks accept it (an ``output_checked`` event with its ``answer``)."""
    return spec.output is not None or bool(spec.output_validators)


def needs_worker_check(spec: AgentSpec) -> bool:
    """A well-formed answer is judged in the output check activity too: by the output
    type itself (``OutputSpec.typed_check``) or by output validators."""
    output = spec.output
    return bool(spec.output_validators) or (output is not None and output.typed_check)


def answer_text(spec: AgentSpec, value: Any) -> str:
    """The run's answer text (``RunResult.output``): the JSON of a structured answer."""
    if spec.output is None:
        return str(value)
    return json.dumps(value, ensure_ascii=False)


def rejected_problem(check: str, message: str, offered: Offered) -> str:
    """What the model is told when ``check`` (a validator, or the output type) rejected
    an answer with ``message``."""
    again = (
        f"Call {OUTPUT_TOOL} again with a corrected answer."
        if offered.call is not None
        else "Answer again, corrected."
    )
    return f"the final answer was rejected by {check}: {message.rstrip('.')}. {again}"


def repair_messages(message: Message, offered: Offered, problem: str) -> list[Message]:
    """What goes back to the model for an answer that was not accepted."""
    if offered.call is None:
        return [Message.user(f"error: {problem}")]
    return _results(message, offered.call, f"error: {problem}", is_error=True)


def accepted_messages(message: Message, offered: Offered) -> list[Message]:
    """The transcript's results for an accepted answer's reply: every call gets one, so
    the transcript stays valid for a next model call (a chat's next message)."""
    if offered.call is None:
        return []
    return _results(message, offered.call, ACCEPTED, is_error=False)


def _results(message: Message, final: ToolCall, content: str, *, is_error: bool) -> list[Message]:
    return [
        Message.tool(c, content, is_error=is_error)
        if c.id == final.id
        else Message.tool(c, NOT_RUN, is_error=True)
        for c in message.tool_calls or []
    ]


def _from_call(output: OutputSpec, call: ToolCall) -> Offered:
    parameters = output.parameters()
    again = f"Call {OUTPUT_TOOL} again with arguments matching this schema: " + json.dumps(
        parameters
    )
    try:
        arguments = json.loads(call.arguments) if call.arguments.strip() else {}
    except (ValueError, RecursionError) as e:
        return Offered(
            call, None, f"the arguments of {OUTPUT_TOOL} are not valid JSON ({e}). {again}"
        )
    if not isinstance(arguments, dict):
        return Offered(call, None, f"the arguments of {OUTPUT_TOOL} must be a JSON object. {again}")
    problems = check_value(parameters, arguments, path="arguments")
    if problems:
        return Offered(
            call,
            None,
            f"the final answer is not a valid {output.name}: {'; '.join(problems)}. {again}",
        )
    return Offered(call, arguments[WRAP_KEY] if output.wrapped else arguments, None)


def _from_text(output: OutputSpec, text: str, asked: str) -> Offered:
    schema = json.dumps(output.json_schema)
    if asked == "tool":
        again = (
            f"Call the {OUTPUT_TOOL} tool with the answer as its arguments (schema: "
            f"{json.dumps(output.parameters())}); do not answer in text."
        )
    else:
        again = f"Answer again with only JSON matching this schema: {schema}"
    if output.text_allowed and asked != "envelope":
        value: Any = text  # a str output may come as plain text
    else:
        try:
            value = json.loads(text)
        except (ValueError, RecursionError) as e:
            if asked == "tool":
                return Offered(None, None, f"the final answer must be a {output.name}. {again}")
            return Offered(None, None, f"the final answer is not valid JSON ({e}). {again}")
    problems = check_value(output.json_schema, value, path="answer")
    if problems:
        return Offered(
            None,
            None,
            f"the final answer is not a valid {output.name}: {'; '.join(problems)}. {again}",
        )
    return Offered(None, value, None)
