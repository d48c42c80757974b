"""A scripted, OpenAI-compatible chat-completions HTTP server for tests.

The server is the only stand-in in ratchet's test strategy: agents talk to it
with the real ``openai`` client over real loopback HTTP, so everything between
the agent and the wire (client retries, timeouts, parsing, streaming) is
exercised exactly as in production.

A test describes the model's behaviour as a list of :class:`Step` objects built
with the module-level constructors (:func:`reply`, :func:`tool_calls`,
:func:`error`, :func:`hang`, ...). Each chat-completion request consumes the next
step. Like the fake model in openai-agents, the server fails loudly instead of
hanging or passing vacuously: a request beyond the script is answered with a
non-retryable HTTP 400 and recorded, and :meth:`ScriptedModelServer.verify`
raises for unexpected calls, failed expectations and unconsumed steps.

Example::

    from ratchet.testing import ScriptedModelServer, call, reply, tool_calls

    with ScriptedModelServer([
        tool_calls(call("get_weather", {"city": "Oslo"})),
        reply("It is sunny in Oslo."),
    ]) as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="test")
        ...  # run the agent against `client`
        server.verify()

The server side uses only the standard library and runs in a daemon thread, so
it serves sync tests, async tests and worker subprocesses (over loopback) alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import http
import json
import logging
import math
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Literal, Self, cast
from urllib.parse import urlsplit

__all__ = [
    "Expectation",
    "RecordedRequest",
    "ScriptedModelServer",
    "Step",
    "StepHandler",
    "StepKind",
    "ToolCall",
    "Usage",
    "call",
    "content_filtered",
    "context_too_long",
    "error",
    "hang",
    "reply",
    "reply_json",
    "tool_calls",
]

_log = logging.getLogger(__name__)

StepKind = Literal["reply", "tool_calls", "error", "hang"]
"""What a step makes the server do: answer, call tools, fail, or never answer."""

FinishReason = Literal["stop", "length", "tool_calls", "content_filter"]

Expectation = Callable[["RecordedRequest"], object]
"""An assertion on the request a step answers.

It fails if it raises or returns ``False`` (so both ``assert``-style helpers and
boolean lambdas work); any other return value is ignored.
"""

StepHandler = Callable[["RecordedRequest"], "Step"]
"""Computes the step answering a request (``handler`` mode)."""

_CHAT_PATH = "/v1/chat/completions"
# Streamed text and tool arguments are cut into pieces this long so that
# client-side delta accumulation is really exercised, not just one big chunk.
_STREAM_PIECE_CHARS = 8
# How often the serving loop checks for shutdown; small so stop() is quick.
_POLL_INTERVAL = 0.05


# --------------------------------------------------------------------------- #
# Steps
# --------------------------------------------------------------------------- #


@dataclass(frozen=True, slots=True)
class Usage:
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
class ToolCall:
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
            closed without a response; ``None`` means until ``stop()``.
        expect: Optional assertion on the request this step answers.
    """

    kind: StepKind
    content: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    finish_reason: FinishReason = "stop"
    usage: Usage | None = None
    delay: float = 0.0
    status: int = 200
    error_message: str | None = None
    error_type: str | None = None
    error_code: str | None = None
    error_param: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    hang_seconds: float | None = None
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
        if self.kind == "reply":
            if self.finish_reason != "stop":
                return f"reply({_shorten(self.content)!r}, finish_reason={self.finish_reason!r})"
            return f"reply({_shorten(self.content)!r})"
        if self.kind == "tool_calls":
            return f"tool_calls({', '.join(c.name for c in self.tool_calls)})"
        if self.kind == "error":
            code = f", code={self.error_code!r}" if self.error_code else ""
            return f"error({self.status}{code})"
        return "hang()" if self.hang_seconds is None else f"hang({self.hang_seconds})"


def call(name: str, arguments: Mapping[str, Any] | str, *, id: str | None = None) -> ToolCall:
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
    return ToolCall(name=name, arguments=wire, id=id)


def reply(
    text: str,
    *,
    finish_reason: FinishReason = "stop",
    usage: Usage | None = None,
    delay: float = 0.0,
    expect: Expectation | None = None,
) -> Step:
    """A final assistant message.

    Args:
        text: Message content.
        finish_reason: ``"stop"``; use ``"length"`` to simulate truncation.
        usage: Reported usage; estimated from the request if omitted.
        delay: Seconds to wait before answering.
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
        expect=expect,
    )


def reply_json(
    obj: Any,
    *,
    usage: Usage | None = None,
    delay: float = 0.0,
    expect: Expectation | None = None,
) -> Step:
    """A final assistant message whose content is ``json.dumps(obj)``.

    Use it for structured-output (JSON schema) responses.

    Args:
        obj: Any JSON-serializable value.
        usage: Reported usage; estimated from the request if omitted.
        delay: Seconds to wait before answering.
        expect: Optional assertion on the request.

    Returns:
        The step.
    """
    return reply(json.dumps(obj), usage=usage, delay=delay, expect=expect)


def tool_calls(
    *calls: ToolCall,
    text: str | None = None,
    usage: Usage | None = None,
    delay: float = 0.0,
    expect: Expectation | None = None,
) -> Step:
    """An assistant message calling one or more tools (``finish_reason="tool_calls"``).

    Args:
        *calls: The calls, built with :func:`call`. At least one.
        text: Optional message content sent alongside the calls.
        usage: Reported usage; estimated from the request if omitted.
        delay: Seconds to wait before answering.
        expect: Optional assertion on the request.

    Returns:
        The step.

    Raises:
        ValueError: If no calls are given.
    """
    return Step(
        kind="tool_calls",
        content=text,
        tool_calls=tuple(calls),
        finish_reason="tool_calls",
        usage=usage,
        delay=delay,
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
    usage: Usage | None = None,
    delay: float = 0.0,
    expect: Expectation | None = None,
) -> Step:
    """A response cut off by the content filter (``finish_reason="content_filter"``).

    Args:
        text: Partial content sent before the filter hit; ``None`` sends null.
        usage: Reported usage; estimated from the request if omitted.
        delay: Seconds to wait before answering.
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


def _shorten(text: str | None, limit: int = 40) -> str | None:
    if text is None or len(text) <= limit:
        return text
    return text[: limit - 1] + "…"


# --------------------------------------------------------------------------- #
# Recording
# --------------------------------------------------------------------------- #


@dataclass(frozen=True)
class RecordedRequest:
    """A chat-completion request the server received.

    Attributes:
        index: 0-based position in :attr:`ScriptedModelServer.requests`.
        method: HTTP method.
        path: Request path without the query string.
        headers: Request headers, names lower-cased (``headers["authorization"]``).
        body: The parsed JSON body (``{}`` if it was not a JSON object).
        received_at: ``time.time()`` when the request arrived.
        step: The step that answered it; ``None`` if it was rejected before
            reaching the script (bad API key, bad body, unexpected call) and,
            in ``handler`` mode, in the object passed to the handler.
        status: HTTP status answered; ``None`` for ``hang`` steps.
        response: The JSON body answered (for streams, the equivalent
            non-streamed completion); ``None`` for ``hang`` steps.
        error: Why the server rejected the request, if it did.
    """

    index: int
    method: str
    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    received_at: float
    step: Step | None = None
    status: int | None = None
    response: dict[str, Any] | None = None
    error: str | None = None

    @property
    def tokens(self) -> int:
        """Total tokens the answer reported (0 for errors and hangs): what a provider bills."""
        usage = (self.response or {}).get("usage") if self.status == 200 else None
        total = usage.get("total_tokens") if isinstance(usage, dict) else None
        return total if isinstance(total, int) else 0

    @property
    def messages(self) -> list[dict[str, Any]]:
        """The request's ``messages`` (empty list if absent)."""
        messages = self.body.get("messages")
        return cast(list[dict[str, Any]], messages) if isinstance(messages, list) else []

    @property
    def tools(self) -> list[dict[str, Any]]:
        """The request's ``tools`` (empty list if absent)."""
        tools = self.body.get("tools")
        return cast(list[dict[str, Any]], tools) if isinstance(tools, list) else []

    @property
    def tool_names(self) -> list[str]:
        """Names of the function tools offered in the request."""
        names: list[str] = []
        for tool in self.tools:
            function = tool.get("function")
            if isinstance(function, dict) and isinstance(function.get("name"), str):
                names.append(function["name"])
        return names

    @property
    def last_message(self) -> dict[str, Any] | None:
        """The last message of the request, if any."""
        messages = self.messages
        return messages[-1] if messages else None

    @property
    def model(self) -> str | None:
        """The requested model name."""
        model = self.body.get("model")
        return model if isinstance(model, str) else None

    @property
    def stream(self) -> bool:
        """Whether the client asked for a streamed response."""
        return self.body.get("stream") is True

    @property
    def api_key(self) -> str | None:
        """The bearer token from the ``Authorization`` header, if any."""
        auth = self.headers.get("authorization", "")
        scheme, _, token = auth.partition(" ")
        return token.strip() if scheme.lower() == "bearer" and token.strip() else None


@dataclass(frozen=True, slots=True)
class _Problem:
    """A failure recorded for :meth:`ScriptedModelServer.verify`."""

    message: str
    exc: BaseException | None = None


@dataclass(frozen=True, slots=True)
class _Answer:
    """How the HTTP layer must answer one request (computed under the lock)."""

    status: int = 200
    body: dict[str, Any] | None = None
    headers: tuple[tuple[str, str], ...] = ()
    delay: float = 0.0
    hang: bool = False
    hang_seconds: float | None = None
    stream: bool = False
    include_usage: bool = False


def _error_body(
    message: str, error_type: str | None, code: str | None, param: str | None = None
) -> dict[str, Any]:
    return {"error": {"message": message, "type": error_type, "param": param, "code": code}}


def _reject(status: int, message: str, code: str, *, error_type: str) -> _Answer:
    # x-should-retry: false makes the openai client give up immediately even if
    # it would otherwise retry, so a broken script surfaces at once.
    return _Answer(
        status=status,
        body=_error_body(message, error_type, code),
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


def _estimate_usage(body: Mapping[str, Any], step: Step) -> Usage:
    # Roughly 4 characters per token, like the usual rule of thumb; +1 keeps
    # counts non-zero so code that checks "usage was reported" sees it.
    prompt_chars = _text_chars(body.get("messages", [])) + _text_chars(body.get("tools", []))
    completion_chars = len(step.content or "") + sum(
        len(c.name) + len(c.arguments) for c in step.tool_calls
    )
    return Usage(prompt_tokens=prompt_chars // 4 + 1, completion_tokens=completion_chars // 4 + 1)


def _mask_key(key: str) -> str:
    # Mirrors OpenAI's "sk-ab***cd" masking so secrets never land in logs.
    return key[:3] + "*" * max(len(key) - 5, 0) + key[-2:] if len(key) > 5 else "*" * len(key)


def _pieces(text: str) -> list[str]:
    return [text[i : i + _STREAM_PIECE_CHARS] for i in range(0, len(text), _STREAM_PIECE_CHARS)]


def _stream_chunks(completion: Mapping[str, Any], include_usage: bool) -> list[dict[str, Any]]:
    """Splits a non-streamed completion into ``chat.completion.chunk`` objects.

    The chunk sequence follows the OpenAI API: a role chunk, content pieces,
    per tool call a header chunk (id, name) followed by argument pieces, a
    final chunk with ``finish_reason`` and, if requested via
    ``stream_options.include_usage``, a usage chunk with no choices.
    """
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
    chunks.extend(chunk({"content": piece}) for piece in _pieces(content or ""))
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
            for piece in _pieces(tc["function"]["arguments"])
        )
    chunks.append(chunk({}, choice["finish_reason"]))
    if include_usage:
        chunks.append({**base, "choices": [], "usage": completion["usage"]})
    return chunks


# --------------------------------------------------------------------------- #
# Server
# --------------------------------------------------------------------------- #


class ScriptedModelServer:
    """An OpenAI-compatible chat-completions server answering from a script.

    Endpoints: ``POST /v1/chat/completions`` (plain and ``stream: true``),
    ``GET /v1/models``, ``GET /v1/models/{id}`` and ``GET /health``. It binds a
    free port on 127.0.0.1 and serves from a daemon thread. All methods are
    thread-safe.

    Each chat-completion request consumes the next scripted step; once the
    script is exhausted, ``handler`` (if given) computes the step. Without a
    handler, an extra request is answered with a non-retryable HTTP 400 and
    recorded as a failure. :meth:`stop` never raises so fixtures can always
    clean up; call :meth:`verify` to assert the script played out exactly.

    Args:
        steps: The script, consumed in order.
        handler: Computes a step for requests beyond the script. It is called
            under the server lock, one request at a time, so it need not be
            thread-safe but must be quick.
        expected_api_key: If set, requests whose bearer token differs are
            answered 401 ``invalid_api_key`` without consuming a step.
        model: Model id listed by ``GET /v1/models`` and echoed in responses
            when a request names no model.
        rpm_limit: Like a real provider, answer 429 (with ``Retry-After``) to a
            request that would exceed this many successful requests in any
            ``limit_window_seconds`` window. The step is not consumed.
        tpm_limit: Likewise for the tokens (prompt + completion) of successful requests.
        limit_window_seconds: The window of ``rpm_limit`` and ``tpm_limit`` (60 s
            like a real provider; scale it down in tests).
    """

    def __init__(
        self,
        steps: Iterable[Step] = (),
        *,
        handler: StepHandler | None = None,
        expected_api_key: str | None = None,
        model: str = "scripted-model",
        rpm_limit: int | None = None,
        tpm_limit: int | None = None,
        limit_window_seconds: float = 60.0,
    ) -> None:
        self._handler = handler
        self._rpm_limit = rpm_limit
        self._tpm_limit = tpm_limit
        self._limit_window = limit_window_seconds
        self._expected_api_key = expected_api_key
        self._model = model
        # RLock: user callbacks (handler/expect) run under the lock and may
        # legitimately read server state such as `requests`.
        self._cond = threading.Condition(threading.RLock())
        self._steps: deque[Step] = deque()
        self._total_steps = 0
        self._consumed = 0
        self._requests: list[RecordedRequest] = []
        self._problems: list[_Problem] = []
        self._call_ids = 0
        # Set on stop() to release hanging/delayed requests immediately.
        self._stopping = threading.Event()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.add(*steps)

    # -- lifecycle ----------------------------------------------------------- #

    def start(self) -> Self:
        """Binds 127.0.0.1 on a free port and starts serving in a daemon thread.

        Returns:
            The server itself, for chaining.

        Raises:
            RuntimeError: If the server was already started.
        """
        with self._cond:
            if self._httpd is not None or self._stopping.is_set():
                raise RuntimeError("ScriptedModelServer can only be started once")
            self._httpd = _HTTPServer(("127.0.0.1", 0), _Handler, self)
            self._thread = threading.Thread(
                target=self._httpd.serve_forever,
                kwargs={"poll_interval": _POLL_INTERVAL},
                name=f"ScriptedModelServer:{self.port}",
                daemon=True,
            )
            self._thread.start()
        _log.debug("ScriptedModelServer listening on %s", self.base_url)
        return self

    def stop(self) -> None:
        """Stops serving and drops open connections. Idempotent; never raises.

        Hanging or delayed requests are released and their connections closed
        without a response.
        """
        self._stopping.set()
        httpd, thread = self._httpd, self._thread
        if httpd is None:
            return
        try:
            httpd.shutdown()
            httpd.server_close()
            httpd.close_connections()
            if thread is not None:
                thread.join(timeout=5)
        except Exception:  # stop() must never mask the test's own outcome
            _log.exception("error while stopping ScriptedModelServer")

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The bound TCP port.

        Raises:
            RuntimeError: If the server is not started.
        """
        if self._httpd is None:
            raise RuntimeError("ScriptedModelServer is not started")
        return int(self._httpd.server_address[1])

    @property
    def base_url(self) -> str:
        """The ``base_url`` for the openai client, ``http://127.0.0.1:PORT/v1``."""
        return f"http://127.0.0.1:{self.port}/v1"

    # -- script -------------------------------------------------------------- #

    @property
    def handler(self) -> StepHandler | None:
        """Computes the step for requests beyond the script; settable while running."""
        return self._handler

    @handler.setter
    def handler(self, handler: StepHandler | None) -> None:
        with self._cond:
            self._handler = handler

    def add(self, *steps: Step) -> None:
        """Appends steps to the script; allowed while running.

        Args:
            *steps: Steps to append.

        Raises:
            TypeError: If something other than a :class:`Step` is given.
        """
        for step in steps:
            if not isinstance(step, Step):
                raise TypeError(f"expected a Step, got {step!r}")
        with self._cond:
            self._steps.extend(steps)
            self._total_steps += len(steps)

    @property
    def remaining(self) -> int:
        """Number of scripted steps not consumed yet."""
        with self._cond:
            return len(self._steps)

    @property
    def requests(self) -> list[RecordedRequest]:
        """A snapshot of the chat-completion requests received so far, in order."""
        with self._cond:
            return list(self._requests)

    def peak_in_window(self, seconds: float, *, since: float = 0.0) -> tuple[int, int]:
        """The most successful requests, and the most tokens, any sliding window held.

        Windows of ``seconds`` are anchored at every request's arrival (where a
        sliding window's count can peak), over requests answered with HTTP 200
        that arrived at ``since`` (a ``time.time()``) or later.

        Returns:
            ``(requests, tokens)``: the peak of each (each from its own window).
        """
        ok = [
            (r.received_at, r.tokens)
            for r in self.requests
            if r.status == 200 and r.received_at >= since
        ]
        peak_requests = peak_tokens = 0
        for i, (start, _) in enumerate(ok):
            inside = [tokens for at, tokens in ok[i:] if at < start + seconds]
            peak_requests = max(peak_requests, len(inside))
            peak_tokens = max(peak_tokens, sum(inside))
        return peak_requests, peak_tokens

    @property
    def rate_limited(self) -> int:
        """How many requests were answered 429."""
        return sum(1 for r in self.requests if r.status == 429)

    def wait_for_requests(self, n: int, timeout: float = 10.0) -> RecordedRequest:
        """Blocks until at least ``n`` chat-completion requests have arrived.

        A request counts as soon as it is received, before it is answered, so
        this returns while e.g. a :func:`hang` step holds the call in flight.

        Args:
            n: Number of requests to wait for (1-based).
            timeout: Seconds to wait.

        Returns:
            The ``n``-th request.

        Raises:
            TimeoutError: If fewer than ``n`` requests arrive in time.
        """
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        with self._cond:
            if not self._cond.wait_for(lambda: len(self._requests) >= n, timeout):
                got = len(self._requests)
                raise TimeoutError(
                    f"ScriptedModelServer: expected at least {n} chat-completion "
                    f"request(s) within {timeout}s, got {got}"
                )
            return self._requests[n - 1]

    async def wait_for_requests_async(
        self,
        n: int,
        timeout: float = 10.0,  # noqa: ASYNC109 - see docstring
    ) -> RecordedRequest:
        """Like :meth:`wait_for_requests`, without blocking the event loop.

        ``timeout`` is a parameter (rather than ``asyncio.timeout``) because the
        wait runs in a worker thread that cancellation cannot interrupt; the
        timeout bounds that thread too.

        Args:
            n: Number of requests to wait for (1-based).
            timeout: Seconds to wait.

        Returns:
            The ``n``-th request.

        Raises:
            TimeoutError: If fewer than ``n`` requests arrive in time.
        """
        return await asyncio.to_thread(self.wait_for_requests, n, timeout)

    def verify(self) -> None:
        """Asserts the script played out exactly.

        Raises:
            AssertionError: Listing unexpected calls, failed expectations,
                other rejected requests and unconsumed steps. It is chained
                to the first failed expectation's exception, if any.
        """
        with self._cond:
            problems = list(self._problems)
            unconsumed = list(self._steps)
        lines = [f"- {p.message}" for p in problems]
        if unconsumed:
            described = ", ".join(s.describe() for s in unconsumed)
            lines.append(f"- {len(unconsumed)} unconsumed step(s): {described}")
        if not lines:
            return
        cause = next((p.exc for p in problems if p.exc is not None), None)
        raise AssertionError("ScriptedModelServer.verify() failed:\n" + "\n".join(lines)) from cause

    # -- request handling (called from server threads) ------------------------ #

    def _record_problem(self, message: str, exc: BaseException | None = None) -> None:
        with self._cond:
            self._problems.append(_Problem(message, exc))

    def _check_api_key(self, headers: Mapping[str, str]) -> _Answer | None:
        """Returns a 401 answer if ``expected_api_key`` is set and not matched."""
        if self._expected_api_key is None:
            return None
        scheme, _, token = headers.get("authorization", "").partition(" ")
        token = token.strip() if scheme.lower() == "bearer" else ""
        if token == self._expected_api_key:
            return None
        message = (
            f"Incorrect API key provided: {_mask_key(token)}."
            if token
            else "You didn't provide an API key. You need to provide your API key in an "
            "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
        )
        return _Answer(
            status=401,
            body=_error_body(message, "invalid_request_error", "invalid_api_key"),
        )

    def _answer_chat(
        self, method: str, path: str, headers: dict[str, str], raw_body: bytes
    ) -> _Answer:
        """Resolves a chat-completion request to an answer and records it.

        Everything (step selection, user callbacks, id assignment, recording)
        happens under one lock so concurrent requests get a consistent order
        and deterministic tool call ids.
        """
        try:
            parsed: Any = json.loads(raw_body) if raw_body else None
        except ValueError:
            parsed = None
        body: dict[str, Any] = parsed if isinstance(parsed, dict) else {}

        with self._cond:
            request = RecordedRequest(
                index=len(self._requests),
                method=method,
                path=path,
                headers=headers,
                body=body,
                received_at=time.time(),
            )
            scripted_before = len(self._steps)
            answer, step, problem = self._resolve(request, parsed)
            if step is not None and answer.status == 200 and answer.body is not None:
                over = self._over_limit(request.received_at, answer.body)
                if over is not None:
                    if len(self._steps) < scripted_before:
                        self._steps.appendleft(step)  # not consumed: the retry gets it
                    self._consumed -= 1
                    answer, step = over, None
            if problem is not None:
                self._problems.append(problem)
            self._requests.append(
                dataclasses.replace(
                    request,
                    step=step,
                    status=None if answer.hang else answer.status,
                    response=answer.body,
                    error=problem.message if problem is not None else None,
                )
            )
            self._cond.notify_all()
        return answer

    def _over_limit(self, now: float, body: Mapping[str, Any]) -> _Answer | None:
        """A 429 if answering would break ``rpm_limit``/``tpm_limit``. Caller holds the lock."""
        if self._rpm_limit is None and self._tpm_limit is None:
            return None
        usage = body.get("usage")
        tokens = usage.get("total_tokens", 0) if isinstance(usage, dict) else 0
        start = now - self._limit_window
        inside = [r for r in self._requests if r.status == 200 and r.received_at > start]
        over_requests = self._rpm_limit is not None and len(inside) + 1 > self._rpm_limit
        used = sum(r.tokens for r in inside)
        over_tokens = self._tpm_limit is not None and used + tokens > self._tpm_limit
        if not (over_requests or over_tokens):
            return None
        # Retry once enough of the window has passed (whole seconds, as providers send).
        what = "requests" if over_requests else "tokens"
        free_at, count, left = now, len(inside), used
        for r in inside:
            if (self._rpm_limit is None or count + 1 <= self._rpm_limit) and (
                self._tpm_limit is None or left + tokens <= self._tpm_limit
            ):
                break
            free_at = r.received_at + self._limit_window
            count, left = count - 1, left - r.tokens
        retry_after = max(1, math.ceil(free_at - now))
        return _Answer(
            status=429,
            body=_error_body(
                f"Rate limit reached for {what} per {self._limit_window:g} s "
                f"(ScriptedModelServer rpm_limit={self._rpm_limit}, tpm_limit={self._tpm_limit}).",
                what,
                "rate_limit_exceeded",
            ),
            headers=(("Retry-After", str(retry_after)),),
        )

    def _resolve(
        self, request: RecordedRequest, parsed: Any
    ) -> tuple[_Answer, Step | None, _Problem | None]:
        """Picks the step for ``request`` and renders the answer. Caller holds the lock."""
        rejected = self._check_api_key(request.headers)
        if rejected is not None:
            # A deliberate auth test is not a script failure: not a problem.
            return rejected, None, None
        if not isinstance(parsed, dict):
            msg = f"ScriptedModelServer: request #{request.index + 1} body is not a JSON object"
            return (
                _reject(400, msg, "invalid_body", error_type="invalid_request_error"),
                None,
                _Problem(msg),
            )

        self._consumed += 1
        call_no = self._consumed
        if self._steps:
            step = self._steps.popleft()
        elif self._handler is not None:
            try:
                step = self._handler(request)
                if not isinstance(step, Step):
                    raise TypeError(f"handler returned {step!r}, not a Step")
            except Exception as exc:
                msg = f"ScriptedModelServer: handler failed on call #{call_no}: {exc!r}"
                return (
                    _reject(400, msg, "handler_failed", error_type="server_error"),
                    None,
                    _Problem(msg, exc),
                )
        else:
            msg = (
                f"ScriptedModelServer: unexpected call #{call_no}; "
                f"the script had {self._total_steps} steps"
            )
            last = request.last_message
            detail = f"{msg} (last message: {_shorten(json.dumps(last), 120)})" if last else msg
            return (
                _reject(400, msg, "unexpected_call", error_type="invalid_request_error"),
                None,
                _Problem(detail),
            )

        if step.expect is not None:
            failure: BaseException | None = None
            try:
                if step.expect(dataclasses.replace(request, step=step)) is False:
                    failure = AssertionError("expectation returned False")
            except Exception as exc:
                failure = exc
            if failure is not None:
                reason = str(failure) or type(failure).__name__
                msg = (
                    f"ScriptedModelServer: expectation failed on call #{call_no} "
                    f"({step.describe()}): {reason}"
                )
                return (
                    _reject(400, msg, "expectation_failed", error_type="invalid_request_error"),
                    step,
                    _Problem(msg, failure),
                )

        return self._render(step, request), step, None

    def _render(self, step: Step, request: RecordedRequest) -> _Answer:
        """Builds the wire answer for a successful step match. Caller holds the lock."""
        if step.kind == "hang":
            return _Answer(hang=True, hang_seconds=step.hang_seconds, delay=step.delay)
        if step.kind == "error":
            return _Answer(
                status=step.status,
                body=_error_body(
                    step.error_message or "", step.error_type, step.error_code, step.error_param
                ),
                headers=step.headers,
                delay=step.delay,
            )

        wire_calls = []
        for tc in step.tool_calls:
            if tc.id is None:
                self._call_ids += 1
            wire_calls.append(
                {
                    "id": tc.id if tc.id is not None else f"call_{self._call_ids}",
                    "type": "function",
                    "function": {"name": tc.name, "arguments": tc.arguments},
                }
            )
        message: dict[str, Any] = {
            "role": "assistant",
            "content": step.content,
            "refusal": None,
            "annotations": [],
        }
        if wire_calls:
            message["tool_calls"] = wire_calls
        usage = step.usage if step.usage is not None else _estimate_usage(request.body, step)
        completion = {
            "id": f"chatcmpl-scripted{request.index + 1}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": request.model or self._model,
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
        stream_options = request.body.get("stream_options")
        include_usage = isinstance(stream_options, dict) and bool(
            stream_options.get("include_usage")
        )
        return _Answer(
            body=completion,
            headers=step.headers,
            delay=step.delay,
            stream=request.stream,
            include_usage=include_usage,
        )

    def _answer_get(self, path: str, headers: Mapping[str, str]) -> _Answer:
        if path == "/health":
            return _Answer(body={"status": "ok"})
        rejected = self._check_api_key(headers)
        if rejected is not None:
            return rejected
        model = {"id": self._model, "object": "model", "created": 0, "owned_by": "ratchet"}
        if path == "/v1/models":
            return _Answer(body={"object": "list", "data": [model]})
        if path == f"/v1/models/{self._model}":
            return _Answer(body=model)
        return self._not_found("GET", path)

    def _not_found(self, method: str, path: str) -> _Answer:
        # Recorded as a problem: code under test calling e.g. the Responses API
        # instead of chat completions is a bug the test should report.
        msg = f"ScriptedModelServer: unknown request URL: {method} {path}"
        self._record_problem(msg)
        return _Answer(status=404, body=_error_body(msg, "invalid_request_error", "unknown_url"))

    def __repr__(self) -> str:
        where = self.base_url if self._httpd is not None else "not started"
        return (
            f"<ScriptedModelServer {where} steps={self._total_steps} "
            f"remaining={self.remaining} requests={len(self.requests)}>"
        )


# --------------------------------------------------------------------------- #
# HTTP plumbing
# --------------------------------------------------------------------------- #


class _HTTPServer(ThreadingHTTPServer):
    """Threading HTTP server that can drop its open keep-alive connections."""

    daemon_threads = True
    block_on_close = False
    # socketserver's default listen backlog is 5; bursts of concurrent clients
    # (many agent runs at once) would overflow it and get their connections reset.
    request_queue_size = 128

    def __init__(
        self,
        address: tuple[str, int],
        handler: type[BaseHTTPRequestHandler],
        scripted: ScriptedModelServer,
    ) -> None:
        self.scripted = scripted
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        if isinstance(request, socket.socket):
            with self._connections_lock:
                self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """Shuts down all open client connections.

        Without this, handler threads parked on idle keep-alive connections
        (the openai client pools them) would outlive ``stop()``.
        """
        with self._connections_lock:
            connections = list(self._connections)
        for sock in connections:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients vanishing mid-request (timeouts, killed workers) are normal in
        # these tests; don't spray tracebacks over stderr.
        _log.debug("ScriptedModelServer connection error from %s", client_address, exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    # HTTP/1.1 keep-alive like the real API, so client connection pooling is exercised.
    protocol_version = "HTTP/1.1"
    server_version = "ScriptedModelServer/1.0"

    @property
    def _scripted(self) -> ScriptedModelServer:
        return cast(_HTTPServer, self.server).scripted

    def _headers_dict(self) -> dict[str, str]:
        return {name.lower(): value for name, value in self.headers.items()}

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            parts: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    # Skip trailers up to the blank line ending the body.
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        self._deliver(self._scripted._answer_get(path, self._headers_dict()))

    def do_POST(self) -> None:
        path = urlsplit(self.path).path
        # Always drain the body so the keep-alive connection stays in sync.
        raw = self._read_body()
        scripted = self._scripted
        headers = self._headers_dict()
        if path.rstrip("/") == _CHAT_PATH:
            answer = scripted._answer_chat("POST", path, headers, raw)
        else:
            rejected = scripted._check_api_key(headers)
            answer = rejected if rejected is not None else scripted._not_found("POST", path)
        self._deliver(answer)

    def _deliver(self, answer: _Answer) -> None:
        stopping = self._scripted._stopping
        try:
            if answer.delay > 0 and stopping.wait(answer.delay):
                self.close_connection = True  # stopped while delaying: no answer
                return
            if answer.hang:
                stopping.wait(answer.hang_seconds)
                # Close without writing a byte: the client sees the server vanish.
                self.close_connection = True
                return
            if answer.stream and answer.status == 200 and answer.body is not None:
                self._send_stream(answer)
            else:
                self._send_json(answer)
        except (BrokenPipeError, ConnectionResetError):
            # The client gave up (timeout, killed worker); nothing to answer.
            self.close_connection = True

    def _send_json(self, answer: _Answer) -> None:
        payload = json.dumps(answer.body).encode()
        self.send_response(answer.status)
        self._send_common_headers(answer)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _send_stream(self, answer: _Answer) -> None:
        assert answer.body is not None
        self.send_response(200)
        self._send_common_headers(answer)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        events = [
            f"data: {json.dumps(c)}\n\n" for c in _stream_chunks(answer.body, answer.include_usage)
        ]
        events.append("data: [DONE]\n\n")
        for event in events:
            data = event.encode()
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")

    def _send_common_headers(self, answer: _Answer) -> None:
        names = {name.lower() for name, _ in answer.headers}
        if "x-request-id" not in names:
            body_id = (answer.body or {}).get("id")
            self.send_header("x-request-id", f"req_{body_id or 'scripted'}")
        for name, value in answer.headers:
            self.send_header(name, value)

    def log_message(self, format: str, *args: Any) -> None:
        _log.debug("ScriptedModelServer: " + format, *args)
