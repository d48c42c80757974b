"""Transcript types: OpenAI chat-completions messages as pydantic models.

The chat-completions shape (role, content, tool_calls, tool_call_id) is the
lingua franca of model providers, so ratchet stores transcripts in it and every
provider adapter converts at the activity boundary. These models travel through
Temporal payloads via the pydantic data converter, so adding a field with a
default never breaks replay of recorded histories.
"""

from __future__ import annotations

import hashlib
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

__all__ = [
    "Message",
    "Role",
    "ToolCall",
    "Usage",
    "chain_hash",
    "message_hash",
    "opening_messages",
]

Role = Literal["system", "user", "assistant", "tool"]


class ToolCall(BaseModel):
    """One tool call requested by the model."""

    model_config = ConfigDict(frozen=True)

    id: str
    """Provider-assigned call id; the tool result message refers to it."""
    name: str
    """Name of the tool the model wants to call."""
    arguments: str
    """Raw JSON text of the arguments, exactly as the model produced it (may be malformed)."""


class Message(BaseModel):
    """One chat message of a transcript."""

    model_config = ConfigDict(frozen=True)

    role: Role
    content: str | None = None
    tool_calls: list[ToolCall] | None = None
    """Set on assistant messages that call tools."""
    tool_call_id: str | None = None
    """Set on tool messages: the call this is the result of."""
    name: str | None = None
    """Set on tool messages: the tool's name (for readability in histories)."""
    is_error: bool = False
    """Set on tool messages that report an error to the model instead of a result."""
    pinned: bool = False
    """Kept in the prompt when older turns are dropped or summarized to fit the context."""

    @classmethod
    def system(cls, content: str) -> Message:
        return cls(role="system", content=content)

    @classmethod
    def user(cls, content: str, *, pinned: bool = False) -> Message:
        return cls(role="user", content=content, pinned=pinned)

    @classmethod
    def assistant(cls, content: str | None, tool_calls: list[ToolCall] | None = None) -> Message:
        return cls(role="assistant", content=content, tool_calls=tool_calls or None)

    @classmethod
    def tool(cls, call: ToolCall, content: str, *, is_error: bool = False) -> Message:
        return cls(
            role="tool", content=content, tool_call_id=call.id, name=call.name, is_error=is_error
        )

    def to_openai(self) -> dict[str, Any]:
        """Render in the OpenAI chat-completions wire format."""
        out: dict[str, Any] = {"role": self.role, "content": self.content}
        if self.tool_calls:
            out["tool_calls"] = [
                {
                    "id": c.id,
                    "type": "function",
                    "function": {"name": c.name, "arguments": c.arguments},
                }
                for c in self.tool_calls
            ]
        if self.tool_call_id is not None:
            out["tool_call_id"] = self.tool_call_id
        return out


class Usage(BaseModel):
    """Token usage, summed over model calls (retried attempts included)."""

    model_config = ConfigDict(frozen=True)

    input_tokens: int = 0
    output_tokens: int = 0
    requests: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            input_tokens=self.input_tokens + other.input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            requests=self.requests + other.requests,
        )

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


def handed_over(prompt: list[Message], instructions: str) -> list[Message]:
    """``prompt`` under new instructions (a handoff): its system message replaced.

    The one builder, shared by the handoff activity and the history reader.
    """
    rest = prompt[1:] if prompt and prompt[0].role == "system" else prompt
    return [Message.system(instructions), *rest]


def opening_messages(instructions: str, prompt: str, *, pinned: bool = True) -> list[Message]:
    """The messages every run opens with: the agent's instructions, then the prompt.

    The one builder: the workflow, the snapshot activity (which stores them) and the
    history reader must agree byte for byte, since model calls refer to them by hash.
    The prompt is pinned (kept when older turns are dropped to fit the context) in runs
    with linear history; runs recorded before it opened with an unpinned prompt.
    """
    return [Message.system(instructions), Message.user(prompt, pinned=pinned)]


def message_hash(message: Message) -> str:
    """The content address of a message: SHA-256 of its JSON (pure, deterministic)."""
    return hashlib.sha256(message.model_dump_json().encode()).hexdigest()


def chain_hash(parent: str | None, message: str) -> str:
    """The hash of a transcript chain node: its parent node and its message hash."""
    return hashlib.sha256(f"{parent or ''}/{message}".encode()).hexdigest()
