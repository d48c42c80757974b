"""Text that cannot be encoded: lone surrogates, from a model, a tool or a command line.

Python strings may hold a lone UTF-16 surrogate (``"\\ud800"``): JSON's ``\\ud800``
escape decodes to one, and so does a command-line argument that is not UTF-8. No
Temporal payload can carry it (pydantic refuses to encode it), so text that reaches a
run from outside is made valid (U+FFFD in place of each lone surrogate) where it comes
in, and JSON values a model sends are checked before the workflow passes them on: a
value the workflow cannot encode would fail its task, again and again.
"""

from __future__ import annotations

from typing import Any

from .messages import Message, ToolCall

__all__ = ["has_lone_surrogate", "valid_message", "valid_text"]


def valid_text(text: str) -> str:
    """``text`` with each lone surrogate replaced by U+FFFD (as it is when it is valid)."""
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        # Through UTF-16: a valid surrogate pair joins into its character, a lone one
        # becomes U+FFFD.
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return text


def valid_message(message: Message) -> Message:
    """``message`` with every text field valid (the same object when it already is)."""
    calls = message.tool_calls
    fixed_calls = (
        [
            ToolCall(
                id=valid_text(c.id), name=valid_text(c.name), arguments=valid_text(c.arguments)
            )
            for c in calls
        ]
        if calls
        else calls
    )
    content = valid_text(message.content) if message.content is not None else None
    if content == message.content and fixed_calls == calls:
        return message
    return message.model_copy(update={"content": content, "tool_calls": fixed_calls})


def has_lone_surrogate(value: Any) -> bool:
    """Some string (or key) in a JSON value holds a lone surrogate.

    Iterative: JSON as deep as the parser allows must not exhaust the stack here.
    """
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if not item.isascii() and valid_text(item) != item:
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False
