"""How runs look in a terminal: one line per step, shared by the CLI and the demo."""

from __future__ import annotations

import json
from typing import Any

from . import events as ev
from .messages import Message

__all__ = [
    "answer_prefix",
    "describe_event",
    "describe_message",
    "describe_tool_start",
    "plural",
    "short_arguments",
    "shorten",
    "without_error_prefix",
]


def plural(n: int, word: str) -> str:
    """``1 turn``, ``2 turns``."""
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def shorten(text: str, limit: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def short_arguments(arguments: dict[str, Any]) -> str:
    """``order_id=1042, reason="late"``, cut at 80 characters: a tool call's summary."""
    text = ", ".join(f"{k}={json.dumps(v)}" for k, v in arguments.items())
    return text if len(text) <= 80 else text[:77] + "..."


def _call_text(name: str, arguments: str) -> str:
    try:
        args = json.loads(arguments) if arguments.strip() else {}
    except ValueError:
        return f"{name}({shorten(arguments, 80)})  [malformed JSON]"
    if isinstance(args, dict):
        return f"{name}(" + ", ".join(f"{k}={json.dumps(v)}" for k, v in args.items()) + ")"
    return f"{name}({shorten(arguments, 80)})"


def answer_prefix(turn: int) -> str:
    """How the line of a model's answer starts; a streamed answer follows it piece by piece."""
    return f"model     turn {turn}: answer "


def describe_message(message: Message, turn: int) -> str | None:
    """A one-line description of a transcript message, or None for the system prompt."""
    if message.role == "system":
        return None
    if message.role == "user":
        return f"user      {shorten(message.content or '')}"
    if message.role == "assistant" and message.tool_calls:
        calls = ", ".join(_call_text(c.name, c.arguments) for c in message.tool_calls)
        return f"model     turn {turn}: call {calls}"
    if message.role == "assistant":
        return answer_prefix(turn) + shorten(message.content or "")
    marker = "error" if message.is_error else "result"
    return f"tool      {message.name} {marker}: {shorten(without_error_prefix(message.content))}"


def without_error_prefix(text: str | None) -> str:
    # Tool errors reach the model as "error: ..."; the line already says "error".
    text = text or ""
    return text[len("error: ") :] if text.startswith("error: ") else text


def describe_event(event: ev.RunEvent, run_id: str) -> str | None:
    """A one-line description of a run event for a terminal or a log, or None for the
    events a follower does not print (the transcript's own lines come from
    ``message`` events: the system prompt is left out)."""
    match event:
        case ev.MessageRecorded() if event.message.role == "user":
            # The model's and the tools' messages print when their calls end (below).
            return describe_message(event.message, 0)
        case ev.ModelCallFinished() if event.response is not None:
            return describe_message(event.response, event.turn)
        case ev.ModelCallFinished():
            return f"model     turn {event.turn} {event.outcome}: {_error(event)}"
        case ev.ToolCallFinished() if event.outcome == "completed":
            marker = "error" if event.is_error else "result"
            result = shorten(without_error_prefix(event.result))
            return f"tool      {event.tool} {marker}: {result}"
        case ev.ToolCallFinished():
            return f"tool      {event.tool} {event.outcome.replace('_', ' ')}: {_error(event)}"
        case ev.ToolCallRejected():
            return f"tool      {event.tool} rejected: {shorten(without_error_prefix(event.reason))}"
        case ev.GuardrailChecked() if not event.passed:
            return f"guardrail {event.guardrail} tripped: {shorten(event.message)}"
        case ev.OutputChecked() if not event.accepted:
            # A final answer sent back to the model (accepted checks are not news).
            return f"output    {event.check} rejected: {shorten(event.message)}"
        case ev.ApprovalRequested():
            a = event.approval
            what = _call_text(a.tool, json.dumps(a.arguments)) if a.kind == "tool" else a.reason
            why = f" ({a.reason})" if a.reason and a.kind == "tool" else ""
            return (
                f"waiting   approval of {what} by rule {a.rule!r}{why}, until "
                f"{a.deadline:%Y-%m-%d %H:%M:%S %Z}: `ratchet approve {run_id} {a.call_id}` "
                f"or `ratchet deny {run_id} {a.call_id} --reason ...`"
            )
        case ev.ApprovalAnswered():
            r = event.record
            if r.timed_out:
                return f"approval  {r.call_id} ({r.tool}) denied: nobody answered by the deadline"
            verdict = "approved" if r.approved else "denied"
            why = f": {shorten(r.reason, 80)}" if r.reason else ""
            return f"approval  {r.call_id} ({r.tool}) {verdict} by {r.approver}{why}"
        case ev.ModelCallAttemptFailed():
            return (
                f"retry     model call of turn {event.turn}, attempt {event.attempt} failed: "
                f"{shorten(event.error, 120)}"
            )
        case ev.PromptCompacted():
            how = "summarized" if event.summarized else "dropped"
            return f"context   {how} {plural(event.dropped, 'older message')} to fit the window"
        case ev.ContinuedAsNew():
            return None
        case _:
            return None


def describe_tool_start(event: ev.ToolCallStarted) -> str:
    """The line of a tool call as it starts to run (a live view prints it; ``show``
    leaves it out, each call's result line says it ran)."""
    return f"tool      {_call_text(event.tool, json.dumps(event.arguments))} started"


def _error(event: ev.ModelCallFinished | ev.ToolCallFinished) -> str:
    text = event.error or ""
    if event.error_type and not text.startswith(event.error_type):
        text = f"{event.error_type}: {text}"
    return shorten(text, 200)
