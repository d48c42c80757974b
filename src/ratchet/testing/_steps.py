"""The script: what the scripted model answers, one :class:`Step` per request.

A test describes the model's behaviour as a list of steps built with the
constructors here (:func:`reply`, :func:`tool_calls`, :func:`error`,
:func:`hang`, ...); :class:`~ratchet.testing.ScriptedModelServer` answers each
chat-completion request with the next one. Steps are plain immutable data: how
they look on the wire is :mod:`ratchet.testing._wire`'s business.

Answers to ``stream: true`` requests can be paced like a real model
(``chunk_delay``, ``chunk_chars``) or stalled mid-stream
(``stall_after_chunks``) to test what happens while a stream is in flight.
"""

from __future__ import annotations

import dataclasses
import http
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from ._recording import RecordedRequest

__all__ = [
    "Expectation",
    "FinishReason",
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
    "raw",
    "reply",
    "reply_json",
    "tool_calls",
]

StepKind = Literal["reply", "tool_calls", "error", "hang", "raw"]
"""What a step makes the server do: answer, call tools, fail, never answer, or send
bytes exactly as given (a malformed or hostile provider, :func:`raw`)."""

FinishReason = Literal["stop", "length", "tool_calls", "content_filter"]

Expectation = Callable[["RecordedRequest"], object]
"""An assertion on the request a step answers.

It fails if it raises or returns ``False`` (so both ``assert``-style helpers and
boolean lambdas work); any other return value is ignored.
"""

StepHandler = Callable[["RecordedRequest"], "Step"]
"""Computes the step answering a request (``handler`` mode)."""


@dataclass(frozen=True, slots=True)
class ScriptedUsage:
    """Token usage reported in a completion's ``usage`` field.

    Attributes:
        prompt_tokens: Tokens billed for the input.
        completion_tokens: Tokens billed for the output.
        cached_tokens: Part of ``prompt_tokens`` served from the prompt cache.
        reasoning_tokens: Part of ``completion_tokens`` spent on reasoning.
    """

    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int = 0
    reasoning_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        """Sum of prompt and completion tokens, as the API reports it."""
        return self.prompt_tokens + self.completion_tokens

    def to_wire(self) -> dict[str, Any]:
        """Returns the OpenAI ``usage`` object for this usage."""
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
            "prompt_tokens_details": {"cached_tokens": self.cached_tokens, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": self.reasoning_tokens,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        }


@dataclass(frozen=True, slots=True)
class ScriptedToolCall:
    """One function call the scripted model makes.

    Build it with :func:`call`.

    Attributes:
        name: Function (tool) name.
        arguments: The ``arguments`` string exactly as sent on the wire. It is
            normally JSON but deliberately not validated, so tests can send
            malformed arguments.
        id: The tool call id; ``None`` lets the server assign ``call_<n>``.
    """

    name: str
    arguments: str
    id: str | None = None


@dataclass(frozen=True)
class Step:
    """One scripted model response. Immutable; build it with the constructors.

    Attributes:
        kind: What the server does (see :data:`StepKind`).
        content: Assistant message text (``reply``/``tool_calls`` steps).
        tool_calls: Function calls (``tool_calls`` steps).
        finish_reason: The choice's ``finish_reason``.
        usage: Reported usage; ``None`` estimates it from the request.
        delay: Seconds to wait before answering.
        status: HTTP status (``error`` steps).
        error_message: OpenAI error ``message`` (``error`` steps).
        error_type: OpenAI error ``type`` (``error`` steps).
        error_code: OpenAI error ``code`` (``error`` steps).
        error_param: OpenAI error ``param`` (``error`` steps).
        headers: Extra response headers, as ``(name, value)`` pairs.
        hang_seconds: For ``hang`` steps, how long until the connection is
            closed without a response; for stalled streams
            (``stall_after_chunks``), how long the stall lasts before the
            connection is closed without finishing. ``None`` means until
            ``stop()`` (or until the client disconnects).
        chunk_delay: Seconds between successive chunks of a streamed answer
            (a fixed token rate). The first chunk (the role chunk) goes at once,
            after ``delay``; ``data: [DONE]`` follows the last chunk at once.
            Non-streamed answers are not paced.
        chunk_chars: Characters of content or tool-call arguments per streamed
            chunk; ``None`` means the server's default (8).
        stall_after_chunks: Stream the role chunk and this many further chunks,
            then send nothing more: the connection stays open until the client
            disconnects, ``hang_seconds`` pass or the server stops. If the
            answer has fewer chunks, all are sent and the stall comes before
            ``data: [DONE]``. A non-streamed request answered by such a step
            gets no answer at all, like a :func:`hang`.
        raw_body: The bytes a ``raw`` step sends as they are (not JSON-encoded).
        content_type: The ``Content-Type`` of a ``raw`` step's answer.
        expect: Optional assertion on the request this step answers.
    """

    kind: StepKind
    content: str | None = None
    tool_calls: tuple[ScriptedToolCall, ...] = ()
    finish_reason: FinishReason = "stop"
    usage: ScriptedUsage | None = None
    delay: float = 0.0
    status: int = 200
    error_message: str | None = None
    error_type: str | None = None
    error_code: str | None = None
    error_param: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    hang_seconds: float | None = None
    chunk_delay: float = 0.0
    chunk_chars: int | None = None
    stall_after_chunks: int | None = None
    raw_body: bytes | None = None
    content_type: str | None = None
    expect: Expectation | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if self.delay < 0:
            raise ValueError(f"delay must be >= 0, got {self.delay}")
        if self.kind == "error" and not 400 <= self.status <= 599:
            raise ValueError(f"error status must be in 400..599, got {self.status}")
        if self.kind == "tool_calls" and not self.tool_calls:
            raise ValueError("a tool_calls step needs at least one call")
        if self.hang_seconds is not None and self.hang_seconds < 0:
            raise ValueError(f"hang seconds must be >= 0, got {self.hang_seconds}")
        if self.chunk_delay < 0:
            raise ValueError(f"chunk_delay must be >= 0, got {self.chunk_delay}")
        if self.chunk_chars is not None and self.chunk_chars < 1:
            raise ValueError(f"chunk_chars must be >= 1, got {self.chunk_chars}")
        if self.stall_after_chunks is not None and self.stall_after_chunks < 0:
            raise ValueError(f"stall_after_chunks must be >= 0, got {self.stall_after_chunks}")
        if (self.kind == "raw") != (self.raw_body is not None):
            raise ValueError("raw_body goes with raw steps, and a raw step needs one")
        if self.kind == "raw" and not 100 <= self.status <= 599:
            raise ValueError(f"raw status must be in 100..599, got {self.status}")
        if self.kind in ("error", "hang", "raw") and self._stream_options():
            raise ValueError(
                "chunk_delay, chunk_chars and stall_after_chunks shape a streamed answer; "
                f"they apply to reply and tool_calls steps, not to {self.kind} steps"
            )
        if (
            self.kind in ("reply", "tool_calls")
            and self.hang_seconds is not None
            and self.stall_after_chunks is None
        ):
            raise ValueError(
                f"hang_seconds on a {self.kind} step bounds a stall: "
                "it needs stall_after_chunks too"
            )

    def expecting(self, check: Expectation) -> Step:
        """Returns a copy of this step that asserts ``check`` on its request.

        Args:
            check: Called with the request; fails by raising or returning False.

        Returns:
            The new step (steps are immutable).
        """
        return dataclasses.replace(self, expect=check)

    def describe(self) -> str:
        """Returns a short human-readable form used in failure messages."""
        streaming = "".join(f", {name}={value!r}" for name, value in self._stream_options())
        if self.kind == "reply":
            if self.finish_reason != "stop":
                return (
                    f"reply({shorten(self.content)!r}, "
                    f"finish_reason={self.finish_reason!r}{streaming})"
                )
            return f"reply({shorten(self.content)!r}{streaming})"
        if self.kind == "tool_calls":
            return f"tool_calls({', '.join(c.name for c in self.tool_calls)}{streaming})"
        if self.kind == "error":
            code = f", code={self.error_code!r}" if self.error_code else ""
            return f"error({self.status}{code})"
        if self.kind == "raw":
            return f"raw({self.status}, {shorten(repr(self.raw_body))})"
        return "hang()" if self.hang_seconds is None else f"hang({self.hang_seconds})"

    def _stream_options(self) -> list[tuple[str, object]]:
        """The streaming options set away from their defaults, as ``(name, value)``."""
        options: list[tuple[str, object]] = []
        if self.chunk_delay:
            options.append(("chunk_delay", self.chunk_delay))
        if self.chunk_chars is not None:
            options.append(("chunk_chars", self.chunk_chars))
        if self.stall_after_chunks is not None:
            options.append(("stall_after_chunks", self.stall_after_chunks))
            if self.hang_seconds is not None:
                options.append(("stall_seconds", self.hang_seconds))
        return options


def call(
    name: str, arguments: Mapping[str, Any] | str, *, id: str | None = None
) -> ScriptedToolCall:
    """Builds a function call for :func:`tool_calls`.

    Args:
        name: Function (tool) name.
        arguments: A mapping (serialized with ``json.dumps``) or a string sent
            verbatim, e.g. ``'{"order_id": 10'`` to test malformed arguments.
        id: Tool call id; by default the server assigns ``call_1``,
            ``call_2``, ... in the order it answers.

    Returns:
        The tool call.
    """
    wire = arguments if isinstance(arguments, str) else json.dumps(dict(arguments))
    return ScriptedToolCall(name=name, arguments=wire, id=id)


def reply(
    text: str,
    *,
    finish_reason: FinishReason = "stop",
    usage: ScriptedUsage | None = None,
    delay: float = 0.0,
    chunk_delay: float = 0.0,
    chunk_chars: int | None = None,
    stall_after_chunks: int | None = None,
    stall_seconds: float | None = None,
    expect: Expectation | None = None,
) -> Step:
    """A final assistant message.

    Args:
        text: Message content.
        finish_reason: ``"stop"``; use ``"length"`` to simulate truncation.
        usage: Reported usage; estimated from the request if omitted.
        delay: Seconds to wait before answering.
        chunk_delay: When streamed, seconds between successive chunks (a fixed
            token rate); the first (role) chunk goes at once.
        chunk_chars: When streamed, characters per content or arguments chunk;
            ``None`` means 8.
        stall_after_chunks: When streamed, send the role chunk and this many
            further chunks, then stall with the connection open (see
            :class:`Step`).
        stall_seconds: How long a stall lasts before the connection is closed
            unfinished; ``None`` means until the client disconnects or ``stop()``.
        expect: Optional assertion on the request.

    Returns:
        The step.
    """
    return Step(
        kind="reply",
        content=text,
        finish_reason=finish_reason,
        usage=usage,
        delay=delay,
        chunk_delay=chunk_delay,
        chunk_chars=chunk_chars,
        stall_after_chunks=stall_after_chunks,
        hang_seconds=stall_seconds,
        expect=expect,
    )


def reply_json(
    obj: Any,
    *,
    usage: ScriptedUsage | None = None,
    delay: float = 0.0,
    chunk_delay: float = 0.0,
    chunk_chars: int | None = None,
    stall_after_chunks: int | None = None,
    stall_seconds: float | None = None,
    expect: Expectation | None = None,
) -> Step:
    """A final assistant message whose content is ``json.dumps(obj)``.

    Use it for structured-output (JSON schema) responses.

    Args:
        obj: Any JSON-serializable value.
        usage: Reported usage; estimated from the request if omitted.
        delay: Seconds to wait before answering.
        chunk_delay: When streamed, seconds between successive chunks (a fixed
            token rate); the first (role) chunk goes at once.
        chunk_chars: When streamed, characters per content or arguments chunk;
            ``None`` means 8.
        stall_after_chunks: When streamed, send the role chunk and this many
            further chunks, then stall with the connection open (see
            :class:`Step`).
        stall_seconds: How long a stall lasts before the connection is closed
            unfinished; ``None`` means until the client disconnects or ``stop()``.
        expect: Optional assertion on the request.

    Returns:
        The step.
    """
    return reply(
        json.dumps(obj),
        usage=usage,
        delay=delay,
        chunk_delay=chunk_delay,
        chunk_chars=chunk_chars,
        stall_after_chunks=stall_after_chunks,
        stall_seconds=stall_seconds,
        expect=expect,
    )


def tool_calls(
    *calls: ScriptedToolCall,
    text: str | None = None,
    usage: ScriptedUsage | None = None,
    delay: float = 0.0,
    chunk_delay: float = 0.0,
    chunk_chars: int | None = None,
    stall_after_chunks: int | None = None,
    stall_seconds: float | None = None,
    expect: Expectation | None = None,
) -> Step:
    """An assistant message calling one or more tools (``finish_reason="tool_calls"``).

    Args:
        *calls: The calls, built with :func:`call`. At least one.
        text: Optional message content sent alongside the calls.
        usage: Reported usage; estimated from the request if omitted.
        delay: Seconds to wait before answering.
        chunk_delay: When streamed, seconds between successive chunks (a fixed
            token rate); the first (role) chunk goes at once.
        chunk_chars: When streamed, characters per content or arguments chunk;
            ``None`` means 8.
        stall_after_chunks: When streamed, send the role chunk and this many
            further chunks, then stall with the connection open (see
            :class:`Step`).
        stall_seconds: How long a stall lasts before the connection is closed
            unfinished; ``None`` means until the client disconnects or ``stop()``.
        expect: Optional assertion on the request.

    Returns:
        The step.

    Raises:
        ValueError: If no calls are given, or an option is out of range.
    """
    return Step(
        kind="tool_calls",
        content=text,
        tool_calls=tuple(calls),
        finish_reason="tool_calls",
        usage=usage,
        delay=delay,
        chunk_delay=chunk_delay,
        chunk_chars=chunk_chars,
        stall_after_chunks=stall_after_chunks,
        hang_seconds=stall_seconds,
        expect=expect,
    )


def error(
    status: int,
    *,
    message: str | None = None,
    headers: Mapping[str, str] | None = None,
    code: str | None = None,
    error_type: str | None = None,
    param: str | None = None,
    delay: float = 0.0,
    expect: Expectation | None = None,
) -> Step:
    """An HTTP error with an OpenAI error body ``{"error": {...}}``.

    Message, type and code default to what the OpenAI API sends for the
    status (e.g. 429 → type ``"requests"``, code ``"rate_limit_exceeded"``).

    Args:
        status: HTTP status, 400..599. Note the ``openai`` client retries 408,
            409, 429 and 5xx on its own unless ``max_retries=0``.
        message: Error message.
        headers: Extra response headers, e.g. ``{"Retry-After": "1"}``.
        code: OpenAI error code, e.g. ``"context_length_exceeded"``.
        error_type: OpenAI error type, e.g. ``"invalid_request_error"``.
        param: The offending request parameter, if any.
        delay: Seconds to wait before answering.
        expect: Optional assertion on the request.

    Returns:
        The step.
    """
    default_type, default_message, default_code = _error_defaults(status)
    return Step(
        kind="error",
        status=status,
        error_message=message if message is not None else default_message,
        error_type=error_type if error_type is not None else default_type,
        error_code=code if code is not None else default_code,
        error_param=param,
        headers=tuple((headers or {}).items()),
        delay=delay,
        expect=expect,
    )


def context_too_long(*, max_tokens: int = 128_000, expect: Expectation | None = None) -> Step:
    """The HTTP 400 ``context_length_exceeded`` error OpenAI sends for oversized prompts.

    Args:
        max_tokens: The context window named in the message.
        expect: Optional assertion on the request.

    Returns:
        The step.
    """
    return error(
        400,
        message=(
            f"This model's maximum context length is {max_tokens} tokens. However, your "
            f"messages resulted in {max_tokens + 1} tokens. Please reduce the length of "
            "the messages."
        ),
        code="context_length_exceeded",
        error_type="invalid_request_error",
        param="messages",
        expect=expect,
    )


def content_filtered(
    text: str | None = None,
    *,
    usage: ScriptedUsage | None = None,
    delay: float = 0.0,
    chunk_delay: float = 0.0,
    chunk_chars: int | None = None,
    stall_after_chunks: int | None = None,
    stall_seconds: float | None = None,
    expect: Expectation | None = None,
) -> Step:
    """A response cut off by the content filter (``finish_reason="content_filter"``).

    Args:
        text: Partial content sent before the filter hit; ``None`` sends null.
        usage: Reported usage; estimated from the request if omitted.
        delay: Seconds to wait before answering.
        chunk_delay: When streamed, seconds between successive chunks (a fixed
            token rate); the first (role) chunk goes at once.
        chunk_chars: When streamed, characters per content or arguments chunk;
            ``None`` means 8.
        stall_after_chunks: When streamed, send the role chunk and this many
            further chunks, then stall with the connection open (see
            :class:`Step`).
        stall_seconds: How long a stall lasts before the connection is closed
            unfinished; ``None`` means until the client disconnects or ``stop()``.
        expect: Optional assertion on the request.

    Returns:
        The step.
    """
    return Step(
        kind="reply",
        content=text,
        finish_reason="content_filter",
        usage=usage,
        delay=delay,
        chunk_delay=chunk_delay,
        chunk_chars=chunk_chars,
        stall_after_chunks=stall_after_chunks,
        hang_seconds=stall_seconds,
        expect=expect,
    )


def raw(
    body: bytes | str,
    *,
    status: int = 200,
    content_type: str = "application/json",
    headers: Mapping[str, str] | None = None,
    delay: float = 0.0,
    expect: Expectation | None = None,
) -> Step:
    """Any answer, byte for byte: a malformed or hostile provider.

    Whatever the request asked (``stream`` or not), the server sends ``body`` as it
    is, with ``status`` and ``content_type``: truncated JSON, fields of the wrong type,
    a server-sent event stream that breaks off or lies (``content_type=
    "text/event-stream"``), invalid UTF-8.

    Args:
        body: The response body (a str is sent as UTF-8).
        status: HTTP status, 100..599.
        content_type: The ``Content-Type`` header.
        headers: Extra response headers.
        delay: Seconds to wait before answering.
        expect: Optional assertion on the request.

    Returns:
        The step.
    """
    return Step(
        kind="raw",
        raw_body=body.encode() if isinstance(body, str) else body,
        status=status,
        content_type=content_type,
        headers=tuple((headers or {}).items()),
        delay=delay,
        expect=expect,
    )


def hang(seconds: float | None = None, *, expect: Expectation | None = None) -> Step:
    """Accepts the request and never answers.

    The connection stays open until ``stop()`` or until ``seconds`` pass, then
    it is closed without a response (the client sees a connection error,
    unless its own timeout fired first). Use it to test timeouts/heartbeats and
    to kill a worker while a model call is in flight.

    Args:
        seconds: How long to hold the connection; ``None`` means until ``stop()``.
        expect: Optional assertion on the request.

    Returns:
        The step.
    """
    return Step(kind="hang", hang_seconds=seconds, expect=expect)


def _error_defaults(status: int) -> tuple[str, str, str | None]:
    """Returns OpenAI's usual ``(type, message, code)`` for an HTTP status."""
    known: dict[int, tuple[str, str, str | None]] = {
        400: ("invalid_request_error", "Invalid request.", None),
        401: ("invalid_request_error", "Incorrect API key provided.", "invalid_api_key"),
        403: ("invalid_request_error", "You are not allowed to access this resource.", None),
        404: (
            "invalid_request_error",
            "The model does not exist or you do not have access to it.",
            "model_not_found",
        ),
        429: (
            "requests",
            "Rate limit reached for requests. Please try again later.",
            "rate_limit_exceeded",
        ),
        500: (
            "server_error",
            "The server had an error while processing your request. Sorry about that!",
            None,
        ),
        503: ("server_error", "The server is overloaded or not ready yet.", None),
    }
    if status in known:
        return known[status]
    try:
        phrase = http.HTTPStatus(status).phrase
    except ValueError:
        phrase = f"HTTP {status}"
    return ("server_error" if status >= 500 else "invalid_request_error", phrase, None)


def shorten(text: str | None, limit: int = 40) -> str | None:
    """``text`` cut to ``limit`` characters with an ellipsis, for failure messages."""
    if text is None or len(text) <= limit:
        return text
    return text[: limit - 1] + "…"
