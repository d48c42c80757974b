"""What the scripted server keeps of each request: :class:`RecordedRequest`.

Tests read them (``server.requests``, ``expect=`` callbacks, handlers) to check
what the agent sent: its messages, the tools offered, the model, the API key.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from ._steps import Step

__all__ = ["Problem", "RecordedRequest"]


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
        status: HTTP status answered; ``None`` for ``hang`` steps (and stalled
            steps answering a request that was not streamed).
        response: The JSON body answered (for streams, the equivalent
            non-streamed completion, even if the stream stalled); ``None`` for
            ``hang`` steps.
        error: Why the server rejected the request, if it did.
        rejected_stream: The request asked for ``stream: true`` from a server
            made with ``streaming=False``; it was answered 400 without
            consuming a step.
        chunks_sent: Stream chunks (``chat.completion.chunk`` events, the role
            chunk included, ``[DONE]`` not) written so far; it grows while the
            answer streams. 0 for answers not streamed.
        chunk_times: ``time.monotonic()`` just after each of the ``chunks_sent``
            chunks was written (and flushed), in order: when each piece left, to
            time what a client adds to a stream (the clock is system-wide on Linux,
            so another process's arrival times compare).
        client_disconnected: The client hung up before the answer was complete:
            during its ``delay``, a hang, a stream (before ``data: [DONE]``)
            or a stall. ``False`` for an answer delivered whole, and for one
            the server cut off itself (a stall or hang that ran out, ``stop()``).
            A hang-up is only seen while the server is still sending or
            holding the answer: a short unpaced stream may be out before the
            client closes.
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
    rejected_stream: bool = False
    chunks_sent: int = 0
    chunk_times: tuple[float, ...] = ()
    client_disconnected: bool = False

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
class Problem:
    """A failure recorded for :meth:`ScriptedModelServer.verify`."""

    message: str
    exc: BaseException | None = None
