"""The wire format: OpenAI chat-completions JSON, stream chunks and error bodies.

Everything the scripted server sends is built here, shaped like what the OpenAI
API sends (field for field, including the ones clients ignore), so the real
``openai`` client parses it exactly as in production. :class:`Answer` is the
seam between the script and the HTTP layer: the server decides an answer under
its lock, :mod:`ratchet.testing._http` delivers it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ._steps import ScriptedUsage, Step

__all__ = [
    "Answer",
    "DeliveryReport",
    "completion_body",
    "error_body",
    "estimate_usage",
    "mask_key",
    "model_body",
    "reject",
    "stream_chunks",
    "wants_usage_chunk",
]

# Streamed text and tool arguments are cut into pieces this long so that
# client-side delta accumulation is really exercised, not just one big chunk.
_STREAM_PIECE_CHARS = 8

DeliveryReport = Callable[[int, bool], None]
"""Told ``(chunks_sent, client_disconnected)`` as a held or streamed answer goes out."""


@dataclass(frozen=True, slots=True)
class Answer:
    """How the HTTP layer must answer one request (computed under the lock).

    ``hang_seconds`` bounds a hang, or the stall of a stream cut off by
    ``stall_after_chunks``; ``report`` (if set) is told each chunk sent and a
    client's disconnect, from the thread serving the request.
    """

    status: int = 200
    body: dict[str, Any] | None = None
    headers: tuple[tuple[str, str], ...] = ()
    delay: float = 0.0
    hang: bool = False
    hang_seconds: float | None = None
    stream: bool = False
    include_usage: bool = False
    chunk_delay: float = 0.0
    chunk_chars: int | None = None
    stall_after_chunks: int | None = None
    raw: bytes | None = None
    """Sent as it is, instead of ``body`` (a ``raw`` step)."""
    content_type: str | None = None
    report: DeliveryReport | None = None


def error_body(
    message: str, error_type: str | None, code: str | None, param: str | None = None
) -> dict[str, Any]:
    """An OpenAI error body, ``{"error": {message, type, param, code}}``."""
    return {"error": {"message": message, "type": error_type, "param": param, "code": code}}


def reject(status: int, message: str, code: str, *, error_type: str) -> Answer:
    # x-should-retry: false makes the openai client give up immediately even if
    # it would otherwise retry, so a broken script surfaces at once.
    return Answer(
        status=status,
        body=error_body(message, error_type, code),
        headers=(("x-should-retry", "false"),),
    )


def _text_chars(value: Any) -> int:
    """Counts characters in all strings nested in ``value`` (for usage estimates)."""
    if isinstance(value, str):
        return len(value)
    if isinstance(value, dict):
        return sum(_text_chars(v) for v in value.values())
    if isinstance(value, list):
        return sum(_text_chars(v) for v in value)
    return 0


def estimate_usage(body: Mapping[str, Any], step: Step) -> ScriptedUsage:
    # Roughly 4 characters per token, like the usual rule of thumb; +1 keeps
    # counts non-zero so code that checks "usage was reported" sees it.
    prompt_chars = _text_chars(body.get("messages", [])) + _text_chars(body.get("tools", []))
    completion_chars = len(step.content or "") + sum(
        len(c.name) + len(c.arguments) for c in step.tool_calls
    )
    return ScriptedUsage(
        prompt_tokens=prompt_chars // 4 + 1, completion_tokens=completion_chars // 4 + 1
    )


def mask_key(key: str) -> str:
    # Mirrors OpenAI's "sk-ab***cd" masking so secrets never land in logs.
    return key[:3] + "*" * max(len(key) - 5, 0) + key[-2:] if len(key) > 5 else "*" * len(key)


def completion_body(
    step: Step,
    *,
    completion_id: str,
    model: str,
    tool_call_ids: Sequence[str],
    usage: ScriptedUsage,
) -> dict[str, Any]:
    """The ``chat.completion`` object answering with a reply or tool-calls step.

    Args:
        step: A ``reply`` or ``tool_calls`` step.
        completion_id: The completion's ``id``.
        model: The ``model`` echoed back.
        tool_call_ids: One id per call of the step, in order.
        usage: The usage reported.
    """
    wire_calls = [
        {
            "id": call_id,
            "type": "function",
            "function": {"name": tc.name, "arguments": tc.arguments},
        }
        for tc, call_id in zip(step.tool_calls, tool_call_ids, strict=True)
    ]
    message: dict[str, Any] = {
        "role": "assistant",
        "content": step.content,
        "refusal": None,
        "annotations": [],
    }
    if wire_calls:
        message["tool_calls"] = wire_calls
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": step.finish_reason,
            }
        ],
        "usage": usage.to_wire(),
        "service_tier": "default",
        "system_fingerprint": "fp_scripted",
    }


def wants_usage_chunk(request_body: Mapping[str, Any]) -> bool:
    """Whether a streamed answer ends with a usage chunk (``stream_options.include_usage``)."""
    stream_options = request_body.get("stream_options")
    return isinstance(stream_options, dict) and bool(stream_options.get("include_usage"))


def model_body(model: str) -> dict[str, Any]:
    """The ``model`` object of ``GET /v1/models``."""
    return {"id": model, "object": "model", "created": 0, "owned_by": "ratchet"}


def stream_chunks(
    completion: Mapping[str, Any], include_usage: bool, piece_chars: int | None = None
) -> list[dict[str, Any]]:
    """Splits a non-streamed completion into ``chat.completion.chunk`` objects.

    The chunk sequence follows the OpenAI API: a role chunk, content pieces,
    per tool call a header chunk (id, name) followed by argument pieces, a
    final chunk with ``finish_reason`` and, if requested via
    ``stream_options.include_usage``, a usage chunk with no choices.

    Args:
        completion: The ``chat.completion`` object to stream.
        include_usage: Whether to end with the usage chunk.
        piece_chars: Characters of content or arguments per chunk; ``None``
            means 8.
    """
    size = piece_chars or _STREAM_PIECE_CHARS

    def pieces(text: str) -> list[str]:
        return [text[i : i + size] for i in range(0, len(text), size)]

    base = {
        "id": completion["id"],
        "object": "chat.completion.chunk",
        "created": completion["created"],
        "model": completion["model"],
        "service_tier": completion.get("service_tier"),
        "system_fingerprint": completion.get("system_fingerprint"),
    }
    choice = completion["choices"][0]
    message = choice["message"]

    def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
        out = {
            **base,
            "choices": [
                {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
            ],
        }
        if include_usage:
            # With include_usage every chunk carries "usage": null except the last.
            out["usage"] = None
        return out

    content: str | None = message.get("content")
    chunks = [chunk({"role": "assistant", "content": "" if content is not None else None})]
    chunks.extend(chunk({"content": piece}) for piece in pieces(content or ""))
    for i, tc in enumerate(message.get("tool_calls") or []):
        header = {
            "index": i,
            "id": tc["id"],
            "type": "function",
            "function": {"name": tc["function"]["name"], "arguments": ""},
        }
        chunks.append(chunk({"tool_calls": [header]}))
        chunks.extend(
            chunk({"tool_calls": [{"index": i, "function": {"arguments": piece}}]})
            for piece in pieces(tc["function"]["arguments"])
        )
    chunks.append(chunk({}, choice["finish_reason"]))
    if include_usage:
        chunks.append({**base, "choices": [], "usage": completion["usage"]})
    return chunks
