"""Test utilities for ratchet agents, shipped with the package.

:class:`ScriptedModelServer` is an OpenAI-compatible chat-completions server
driven by a script of steps, so agent tests can use the real ``openai`` client
over real HTTP with a deterministic "model".
"""

from ratchet.testing._scripted_server import (
    Expectation,
    RecordedRequest,
    ScriptedModelServer,
    Step,
    StepHandler,
    StepKind,
    call,
    content_filtered,
    context_too_long,
    error,
    hang,
    reply,
    reply_json,
    tool_calls,
)
from ratchet.testing._scripted_server import ToolCall as ScriptedToolCall
from ratchet.testing._scripted_server import Usage as ScriptedUsage

__all__ = [
    "Expectation",
    "RecordedRequest",
    "ScriptedModelServer",
    "ScriptedToolCall",
    "ScriptedUsage",
    "Step",
    "StepHandler",
    "StepKind",
    "call",
    "content_filtered",
    "context_too_long",
    "error",
    "hang",
    "reply",
    "reply_json",
    "tool_calls",
]
