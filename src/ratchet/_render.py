"""How runs look in a terminal: one line per step, shared by the CLI and the demo."""

from __future__ import annotations

import json

from .messages import Message

__all__ = ["describe_message", "shorten"]


def shorten(text: str, limit: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _call_text(name: str, arguments: str) -> str:
    try:
        args = json.loads(arguments) if arguments.strip() else {}
    except ValueError:
        return f"{name}({shorten(arguments, 80)})  [malformed JSON]"
    if isinstance(args, dict):
        return f"{name}(" + ", ".join(f"{k}={json.dumps(v)}" for k, v in args.items()) + ")"
    return f"{name}({shorten(arguments, 80)})"


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
        return f"model     turn {turn}: answer {shorten(message.content or '')}"
    marker = "error" if message.is_error else "result"
    return f"tool      {message.name} {marker}: {shorten(message.content or '')}"
