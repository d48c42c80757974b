"""Provider for every OpenAI-compatible chat-completions endpoint.

Covers OpenAI, vLLM, Ollama, llama.cpp's llama-server, LM Studio, OpenRouter
and others. The SDK's own retries are off: Temporal's retry policy is the only
one, so attempts are visible in the event history and bounded in one place.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Callable
from typing import Any, Literal, assert_never, overload

import openai
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from temporalio.exceptions import ApplicationError

from ..agent import ToolMode
from ..messages import Message, ToolCall, Usage
from ..streaming._delta import Delta, DeltaSink
from ._envelope_stream import AnswerText
from ._errors import classify_openai_error, model_error
from ._json_mode import parse_envelope
from ._malformed import MALFORMED, arguments_text, malformed_reply, text_field, token_count
from ._provider import Provider, ProviderRequest, ProviderResponse
from ._wire import WireFormat, render_wire_request

__all__ = ["OpenAICompatible"]

_log = logging.getLogger("ratchet.models")


class OpenAICompatible(Provider):
    """An OpenAI-compatible chat-completions endpoint.

    Args:
        base_url: e.g. ``http://127.0.0.1:8000/v1``; a callable is resolved at
            each call (for endpoints that start after the worker). None: the
            SDK's default, which reads ``OPENAI_BASE_URL``.
        api_key: None reads ``api_key_env`` from the worker's environment at
            call time. Keys stay in the worker: they never enter the event history.
        api_key_env: the environment variable holding the key.
        tool_mode: the default tool mode for agents that do not set one.
        model_name: sent as ``model`` instead of the name in the model string
            (for single-model servers such as llama-server).
        default_headers: extra HTTP headers.
        answer_after_tool: in ``json_schema`` mode, once a tool has returned a
            result (not an error), the next reply must be an answer. Small local
            models otherwise tend to call the same tool again and again; the
            cost is one tool call per user message.
        unavailable_hint: appended to the error when ``base_url`` resolves to None.
    """

    def __init__(
        self,
        base_url: str | Callable[[], str | None] | None = None,
        api_key: str | None = None,
        *,
        api_key_env: str = "OPENAI_API_KEY",
        tool_mode: ToolMode = "native",
        model_name: str | None = None,
        default_headers: dict[str, str] | None = None,
        answer_after_tool: bool = False,
        unavailable_hint: str = "",
    ) -> None:
        self.answer_after_tool = answer_after_tool
        self._base_url = base_url
        self._api_key = api_key
        self._api_key_env = api_key_env
        self.tool_mode: ToolMode = tool_mode
        self._model_name = model_name
        self._headers = default_headers
        self._unavailable_hint = unavailable_hint
        # By event loop too: an HTTP client's connections belong to the loop that opened
        # them, and a program may run several loops one after another (each invocation of
        # a serverless worker runs its own), where a connection of a closed loop fails.
        self._clients: dict[
            asyncio.AbstractEventLoop, dict[tuple[str | None, str], openai.AsyncOpenAI]
        ] = {}
        # Endpoints (base URL, model) that refused ``stream``: their calls go plain at once.
        self._no_streaming: set[tuple[str | None, str]] = set()

    supports_streaming = True

    def _resolved_base_url(self) -> str | None:
        return self._base_url() if callable(self._base_url) else self._base_url

    def _client(self) -> openai.AsyncOpenAI:
        base_url = self._resolved_base_url()
        if callable(self._base_url) and base_url is None:
            raise model_error(
                "ModelConnectionError",
                f"the model endpoint is not available. {self._unavailable_hint}".strip(),
            )
        api_key = self._api_key or os.environ.get(self._api_key_env)
        if not api_key:
            raise model_error(
                "ModelAuthError",
                f"no API key: set {self._api_key_env} in the worker's environment",
            )
        loop = asyncio.get_running_loop()
        for closed in [old for old in self._clients if old.is_closed()]:
            del self._clients[closed]
        clients = self._clients.setdefault(loop, {})
        key = (base_url, api_key)
        if key not in clients:
            clients[key] = openai.AsyncOpenAI(
                base_url=base_url,
                api_key=api_key,
                max_retries=0,
                default_headers=self._headers,
            )
        return clients[key]

    def _wire_format(self, request: ProviderRequest) -> WireFormat:
        """How :meth:`complete` renders ``request``: the model name sent and the tool mode."""
        model = self._model_name or request.model
        mode = request.tool_mode or self.tool_mode
        structured = request.output is not None
        match mode:
            case "native":
                return WireFormat(model=model, tool_mode="native", structured=structured)
            case "json_schema":
                if not request.tools and not structured:
                    # Nothing to describe: a plain request.
                    return WireFormat(model=model, tool_mode="native")
                return WireFormat(
                    model=model,
                    tool_mode="json_schema",
                    answer_only=self.answer_after_tool and _follows_tool_result(request.messages),
                    structured=structured,
                )
            case _:
                assert_never(mode)

    async def complete(self, request: ProviderRequest) -> ProviderResponse:
        wire = self._wire_format(request)
        body = _body(request, wire)
        try:
            completion = await _post(self._client(), body, request.timeout_seconds, stream=False)
        except ApplicationError:
            raise
        except json.JSONDecodeError as e:  # a body that is no JSON
            raise malformed_reply(e) from None
        except Exception as e:
            # Not chained: the message says what happened, and a failure carrying the
            # SDK's exception chain with its stack traces outgrows what the server keeps
            # of a retried attempt's failure ("Failure exceeds size limit.").
            raise classify_openai_error(e) from None
        try:
            return _to_response(completion, wire, request.turn)
        except ApplicationError:
            raise
        except MALFORMED as e:
            raise malformed_reply(e) from None

    async def stream(self, request: ProviderRequest, on_delta: DeltaSink) -> ProviderResponse:
        """Stream the reply (SSE, usage in the last chunk); fall back to a plain call,
        with a warning, when the endpoint rejects ``stream``."""
        endpoint = (self._resolved_base_url(), self._model_name or request.model)
        if endpoint in self._no_streaming:
            response = await self.complete(request)
            return _with_warning(response, _FELL_BACK_BEFORE)
        wire = self._wire_format(request).model_copy(update={"stream": True})
        body = _body(request, wire)
        try:
            chunks = await _post(self._client(), body, request.timeout_seconds, stream=True)
        except ApplicationError:
            raise
        except (openai.BadRequestError, openai.UnprocessableEntityError) as e:
            if not _refuses_streaming(e):
                raise classify_openai_error(e) from None
            # The endpoint rejects ``stream`` or ``stream_options``: answer without.
            response = await self.complete(request)
            self._no_streaming.add(endpoint)
            warning = (
                f"the endpoint rejected streaming ({_short(e)}); this call and the next ones "
                "to it were made without streaming"
            )
            _log.warning("model %s: %s", request.model, warning)
            return _with_warning(response, warning)
        except Exception as e:
            raise classify_openai_error(e) from None
        assembled = _Assembly(wire, on_delta)
        try:
            async for chunk in chunks:
                try:
                    assembled.add(chunk)
                except MALFORMED as e:
                    raise malformed_reply(e) from None
        except ApplicationError:
            raise
        except json.JSONDecodeError as e:  # an event that is no JSON
            raise malformed_reply(e) from None
        except Exception as e:
            raise classify_openai_error(e) from None
        finally:
            # Closes the HTTP stream: on cancellation the provider sees the disconnect
            # and stops generating (and billing).
            await chunks.close()
        try:
            return assembled.response(request.turn)
        except ApplicationError:
            raise
        except MALFORMED as e:
            raise malformed_reply(e) from None


@overload
async def _post(
    client: openai.AsyncOpenAI,
    body: dict[str, Any],
    timeout_seconds: float,
    *,
    stream: Literal[False],
) -> ChatCompletion: ...


@overload
async def _post(
    client: openai.AsyncOpenAI,
    body: dict[str, Any],
    timeout_seconds: float,
    *,
    stream: Literal[True],
) -> openai.AsyncStream[ChatCompletionChunk]: ...


async def _post(
    client: openai.AsyncOpenAI, body: dict[str, Any], timeout_seconds: float, *, stream: bool
) -> ChatCompletion | openai.AsyncStream[ChatCompletionChunk]:
    """``POST /chat/completions`` with ``body`` as it is, through the client's ``post``.

    ``chat.completions.create`` would first walk the whole body (every message and tool
    schema) to apply its parameter types' aliases and formats: about 10 % of a worker's
    CPU (``python -m bench.profile``), for nothing, since the body is already rendered
    in the wire format (``render_wire_request``). The request, its headers, auth,
    timeout and the typed response are the client's own, as for ``create``.
    """
    return await client.post(
        "/chat/completions",
        body=body,
        options={"timeout": timeout_seconds, "security": {"bearer_auth": True}},
        cast_to=ChatCompletion,
        stream=stream,
        stream_cls=openai.AsyncStream[ChatCompletionChunk],
    )


def _body(request: ProviderRequest, wire: WireFormat) -> dict[str, Any]:
    """The request body, rendered as ``wire`` says (the one rendering traces rebuild)."""
    return render_wire_request(
        request.messages,
        request.tools,
        temperature=request.temperature,
        max_tokens=request.max_tokens,
        wire=wire,
        output=request.output,
    )


_FELL_BACK_BEFORE = (
    "made without streaming: the endpoint rejected streaming earlier (see that call's warning)"
)


def _refuses_streaming(e: openai.APIStatusError) -> bool:
    """A 400/422 about the ``stream`` parameters themselves (its ``param``, or its
    message naming them), not about the prompt: only those are worth a plain retry."""
    body = e.body if isinstance(e.body, dict) else {}
    inner = body.get("error", body)
    param = inner.get("param") if isinstance(inner, dict) else None
    if isinstance(param, str) and param.startswith("stream"):
        return True
    return "stream" in str(e.message or "").lower()


def _with_warning(response: ProviderResponse, warning: str) -> ProviderResponse:
    return response.model_copy(update={"warnings": [*response.warnings, warning]})


def _short(e: openai.APIStatusError) -> str:
    text = str(e.message or e)
    return f"HTTP {e.status_code}: {text[:200]}"


class _Assembly:
    """A streamed reply put back together: text, tool calls, usage, finish reason."""

    def __init__(self, wire: WireFormat, on_delta: DeltaSink) -> None:
        self.wire = wire
        self.on_delta = on_delta
        self.content: list[str] = []
        self.saw_content = False
        self.calls: dict[int, dict[str, Any]] = {}
        self.usage: Any = None
        self.model = ""
        self.finish_reason: str | None = None
        self.answer_text = AnswerText() if _enveloped(wire) and not wire.structured else None

    def add(self, chunk: Any) -> None:
        model = getattr(chunk, "model", None)
        self.model = model if isinstance(model, str) and model else self.model
        if getattr(chunk, "usage", None) is not None:
            self.usage = chunk.usage
        for choice in getattr(chunk, "choices", None) or []:
            if getattr(choice, "index", 0) != 0:
                continue
            if choice.finish_reason:
                self.finish_reason = text_field(choice.finish_reason, "finish_reason")
            delta = choice.delta
            if delta is None:
                continue
            piece = text_field(delta.content, "content")
            if piece is not None:
                self.saw_content = True
                self.content.append(piece)
                text = self.answer_text.feed(piece) if self.answer_text is not None else piece
                if text:
                    self.on_delta(Delta(text=text))
            for tc in delta.tool_calls or []:
                self._tool_call_piece(tc)

    def _tool_call_piece(self, tc: Any) -> None:
        index = tc.index
        if isinstance(index, bool) or not isinstance(index, int):
            raise TypeError(f"a tool call's index is a {type(index).__name__}, not an integer")
        call = self.calls.setdefault(index, {"id": None, "name": "", "arguments": []})
        fn = getattr(tc, "function", None)
        new_id = text_field(tc.id, "a tool call's id") if tc.id and not call["id"] else None
        if new_id:
            call["id"] = new_id
        name = text_field(getattr(fn, "name", None), "a tool's name") if fn is not None else None
        if name and not call["name"]:
            call["name"] = name
        arguments = arguments_text(getattr(fn, "arguments", None)) if fn is not None else ""
        call["arguments"].append(arguments)
        if arguments or new_id or name:
            self.on_delta(
                Delta(
                    text=arguments,
                    kind="tool_arguments",
                    tool_call_index=tc.index,
                    tool_call_id=call["id"],
                    tool_name=call["name"] or None,
                )
            )

    def response(self, turn: int) -> ProviderResponse:
        if self.finish_reason == "content_filter":
            raise model_error("ContentFiltered", "the provider stopped the answer")
        if self.finish_reason is None:
            # Every chat-completions stream ends its choice with a finish reason: without
            # one the reply was cut off, and recording it would keep half an answer.
            raise model_error(
                "ModelServerError", "the provider's stream ended before the reply was finished"
            )
        content = "".join(self.content) if self.saw_content else None
        usage = Usage(
            input_tokens=token_count(self.usage, "prompt_tokens"),
            output_tokens=token_count(self.usage, "completion_tokens"),
            requests=1,
        )
        if _enveloped(self.wire):
            message = parse_envelope(content or "", turn, structured=self.wire.structured)
        else:
            calls = [
                ToolCall(
                    id=c["id"] or f"call_t{turn}_{index}",
                    name=c["name"],
                    arguments="".join(c["arguments"]),
                )
                for index, c in sorted(self.calls.items())
            ]
            message = Message.assistant(content, calls)
        warnings = []
        if self.usage is None:
            warnings.append(
                "the streamed reply carried no usage (stream_options.include_usage): its "
                "tokens are counted as 0"
            )
        return ProviderResponse(
            message=message,
            usage=usage,
            model=self.model,
            finish_reason=self.finish_reason,
            wire=self.wire,
            warnings=warnings,
        )


def _enveloped(wire: WireFormat) -> bool:
    """The reply is a JSON envelope (json_schema mode, unless it asked for plain text)."""
    return wire.tool_mode == "json_schema" and (not wire.answer_only or wire.structured)


def _follows_tool_result(messages: list[Message]) -> bool:
    """The prompt ends with a tool's result (not an error)."""
    last = messages[-1] if messages else None
    return last is not None and last.role == "tool" and not last.is_error


def _to_response(completion: Any, wire: WireFormat, turn: int) -> ProviderResponse:
    """The reply of a plain call; raises ``MALFORMED`` errors on one of the wrong shape."""
    choices = getattr(completion, "choices", None)
    if not choices:
        raise model_error("ModelServerError", "the provider returned no choices")
    if not isinstance(choices, list):
        raise TypeError(f"choices is a {type(choices).__name__}, not a list")
    choice = choices[0]
    finish_reason = text_field(choice.finish_reason, "finish_reason")
    if finish_reason == "content_filter":
        raise model_error("ContentFiltered", "the provider stopped the answer")
    msg = choice.message
    content = text_field(msg.content, "content")
    usage = Usage(
        input_tokens=token_count(completion.usage, "prompt_tokens"),
        output_tokens=token_count(completion.usage, "completion_tokens"),
        requests=1,
    )
    if _enveloped(wire):
        message = parse_envelope(content or "", turn, structured=wire.structured)
    else:
        calls = [
            ToolCall(
                # An endpoint that gives no id: made up from the turn, as for a stream.
                id=text_field(c.id, "a tool call's id") or f"call_t{turn}_{index}",
                name=text_field(c.function.name, "a tool's name") or "",
                arguments=arguments_text(c.function.arguments),
            )
            for index, c in enumerate(msg.tool_calls or [])
            if getattr(c, "function", None) is not None
        ]
        message = Message.assistant(content, calls)
    model = completion.model
    return ProviderResponse(
        message=message,
        usage=usage,
        model=model if isinstance(model, str) else "",
        finish_reason=finish_reason,
        wire=wire,
    )
