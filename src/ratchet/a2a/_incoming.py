"""What a client's A2A message asks for: text for the agent, or a command.

- **Text parts** are the prompt (a new task) or the next chat message (a follow-up).
  **Data parts** that are no command join the text as JSON.
- **An approval decision** is a data part ``{"approve": true, "call_id": "turn1-tool0"}``
  (``false`` denies). ``call_id`` is the waiting call's id, as the task's
  ``input-required`` status gives it; it may be left out when one call waits.
  Optional: ``"reason"`` (else the message's text, if any) and, for a spent budget,
  ``"raise_to"`` (its new limit). The authenticated caller is the approver.
- **Ending a chat** is a data part ``{"end_chat": true}``: the run finishes once the
  messages already sent are answered, and the task completes.
- **A chat** starts when the first message's metadata has ``"chat": true``: the run
  then stays open after each answer (the task is ``input-required``) for follow-ups.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from a2a.types import ContentTypeNotSupportedError, InvalidParamsError, Message
from google.protobuf.json_format import MessageToDict

__all__ = ["APPROVE_KEY", "END_CHAT_KEY", "Decision", "Incoming", "read_message"]

APPROVE_KEY = "approve"
"""The data part key of an approval decision."""
END_CHAT_KEY = "end_chat"
"""The data part key that ends a chat."""
CHAT_KEY = "chat"
"""The message metadata key that starts a task as a chat."""


@dataclass(frozen=True)
class Decision:
    """An approval decision carried by a message."""

    approve: bool
    call_id: str | None = None
    """The waiting call's id; None: the one that waits."""
    reason: str = ""
    raise_to: float | None = None


@dataclass(frozen=True)
class Incoming:
    """A client's message, read."""

    text: str
    """The text for the agent (text parts, then other data parts as JSON)."""
    decisions: list[Decision] = field(default_factory=list)
    end_chat: bool = False
    chat: bool = False


def read_message(message: Message) -> Incoming:
    """What ``message`` asks for.

    Raises:
        InvalidParamsError: a malformed command.
        ContentTypeNotSupportedError: a file part (raw bytes or a URL).
    """
    texts: list[str] = []
    decisions: list[Decision] = []
    end_chat = False
    for part in message.parts:
        kind = part.WhichOneof("content")
        if kind == "text":
            texts.append(part.text)
        elif kind == "data":
            data = MessageToDict(part.data)
            if isinstance(data, dict) and APPROVE_KEY in data:
                decisions.append(_decision(data))
            elif isinstance(data, dict) and END_CHAT_KEY in data:
                end_chat = _flag(data, END_CHAT_KEY)
            else:
                texts.append(json.dumps(data, ensure_ascii=False))
        else:
            raise ContentTypeNotSupportedError(
                f"a {kind or 'empty'} part: ratchet agents take text and data parts; "
                "send a file's content as text, or its URL inside the text"
            )
    text = "\n".join(t for t in texts if t.strip())
    chat = False
    if CHAT_KEY in message.metadata.fields:
        value = message.metadata.fields[CHAT_KEY]
        if value.WhichOneof("kind") != "bool_value":
            raise InvalidParamsError(f'message metadata "{CHAT_KEY}" must be true or false')
        chat = value.bool_value
    return Incoming(text=text, decisions=decisions, end_chat=end_chat, chat=chat)


def _decision(data: dict[str, Any]) -> Decision:
    example = '{"approve": true, "call_id": "turn1-tool0"}'
    approve = _flag(data, APPROVE_KEY)
    call_id = data.get("call_id")
    reason = data.get("reason", "")
    raise_to = data.get("raise_to")
    if call_id is not None and (not isinstance(call_id, str) or not call_id.strip()):
        raise InvalidParamsError(f'"call_id" must name the waiting call, e.g. {example}')
    if not isinstance(reason, str):
        raise InvalidParamsError('"reason" must be text')
    if raise_to is not None and (
        isinstance(raise_to, bool) or not isinstance(raise_to, int | float)
    ):
        raise InvalidParamsError('"raise_to" must be a number: the budget\'s new limit')
    return Decision(
        approve=approve,
        call_id=call_id,
        reason=reason,
        raise_to=float(raise_to) if raise_to is not None else None,
    )


def _flag(data: dict[str, Any], key: str) -> bool:
    value = data[key]
    if not isinstance(value, bool):
        raise InvalidParamsError(f'"{key}" must be true or false, got {json.dumps(value)}')
    return value
