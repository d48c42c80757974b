"""Provider for every OpenAI-compatible chat-completions endpoint.

Covers OpenAI, vLLM, Ollama, llama.cpp's llama-server, LM Studio, OpenRouter
and others. The SDK's own retries are off: Temporal's retry policy is the only
one, so attempts are visible in the event history and bounded in one place.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, assert_never

import openai
from temporalio.exceptions import ApplicationError

from ..agent import ToolMode
from ..messages import Message, ToolCall, Usage
from ._errors import classify_openai_error, model_error
from ._json_mode import parse_envelope
from ._provider import Provider, ProviderRequest, ProviderResponse
from ._wire import WireFormat, render_wire_request

__all__ = ["OpenAICompatible"]


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
        self._clients: dict[tuple[str | None, str], openai.AsyncOpenAI] = {}

    def _client(self) -> openai.AsyncOpenAI:
        base_url = self._base_url() if callable(self._base_url) else self._base_url
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
        key = (base_url, api_key)
        if key not in self._clients:
            self._clients[key] = openai.AsyncOpenAI(
                base_url=base_url,
                api_key=api_key,
                max_retries=0,
                default_headers=self._headers,
            )
        return self._clients[key]

    def _wire_format(self, request: ProviderRequest) -> WireFormat:
        """How :meth:`complete` renders ``request``: the model name sent and the tool mode."""
        model = self._model_name or request.model
        mode = request.tool_mode or self.tool_mode
        match mode:
            case "native":
                return WireFormat(model=model, tool_mode="native")
            case "json_schema":
                if not request.tools:
                    # Nothing to describe: a plain request.
                    return WireFormat(model=model, tool_mode="native")
                return WireFormat(
                    model=model,
                    tool_mode="json_schema",
                    answer_only=self.answer_after_tool and _follows_tool_result(request.messages),
                )
            case _:
                assert_never(mode)

    async def complete(self, request: ProviderRequest) -> ProviderResponse:
        wire = self._wire_format(request)
        body = render_wire_request(
            request.messages,
            request.tools,
            temperature=request.temperature,
            max_tokens=request.max_tokens,
            wire=wire,
        )
        try:
            completion = await self._client().chat.completions.create(
                **body, timeout=request.timeout_seconds
            )
        except ApplicationError:
            raise
        except Exception as e:
            # Not chained: the message says what happened, and a failure carrying the
            # SDK's exception chain with its stack traces outgrows what the server keeps
            # of a retried attempt's failure ("Failure exceeds size limit.").
            raise classify_openai_error(e) from None
        return _to_response(completion, wire, request.turn)


def _follows_tool_result(messages: list[Message]) -> bool:
    """The prompt ends with a tool's result (not an error)."""
    last = messages[-1] if messages else None
    return last is not None and last.role == "tool" and not last.is_error


def _to_response(completion: Any, wire: WireFormat, turn: int) -> ProviderResponse:
    if not completion.choices:
        raise model_error("ModelServerError", "the provider returned no choices")
    choice = completion.choices[0]
    if choice.finish_reason == "content_filter":
        raise model_error("ContentFiltered", "the provider stopped the answer")
    msg = choice.message
    usage = Usage(
        input_tokens=getattr(completion.usage, "prompt_tokens", 0) or 0,
        output_tokens=getattr(completion.usage, "completion_tokens", 0) or 0,
        requests=1,
    )
    if wire.tool_mode == "json_schema" and not wire.answer_only:
        message = parse_envelope(msg.content or "", turn)
    else:
        calls = [
            ToolCall(id=c.id, name=c.function.name, arguments=c.function.arguments or "")
            for c in (msg.tool_calls or [])
            if getattr(c, "function", None) is not None
        ]
        message = Message.assistant(msg.content, calls)
    return ProviderResponse(
        message=message,
        usage=usage,
        model=completion.model or "",
        finish_reason=choice.finish_reason,
        wire=wire,
    )
