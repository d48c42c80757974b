"""Provider for every OpenAI-compatible chat-completions endpoint.

Covers OpenAI, vLLM, Ollama, llama.cpp's llama-server, LM Studio, OpenRouter
and others. The SDK's own retries are off: Temporal's retry policy is the only
one, so attempts are visible in the event history and bounded in one place.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from typing import Any

import openai
from temporalio.exceptions import ApplicationError

from .._protocol import ModelRequest, ModelResponse
from ..agent import ToolMode
from ..messages import Message, ToolCall, Usage
from ..tools import ToolSpec
from ._errors import classify_openai_error, model_error

__all__ = ["OpenAICompatible"]


class OpenAICompatible:
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

    async def complete(self, request: ModelRequest, model_name: str) -> ModelResponse:
        mode = request.tool_mode or self.tool_mode
        kwargs: dict[str, Any] = {
            "model": self._model_name or model_name,
            "timeout": request.timeout_seconds,
        }
        if request.temperature is not None:
            kwargs["temperature"] = request.temperature
        if request.max_tokens is not None:
            kwargs["max_tokens"] = request.max_tokens
        if mode == "json_schema" and request.tools:
            last = request.messages[-1] if request.messages else None
            answer_only = (
                self.answer_after_tool
                and last is not None
                and last.role == "tool"
                and not last.is_error
            )
            kwargs["messages"] = json_mode_messages(
                request.messages, request.tools, answer_only=answer_only
            )
            if not answer_only:
                kwargs["response_format"] = {
                    "type": "json_schema",
                    "json_schema": {
                        "name": "next_step",
                        "schema": envelope_schema(request.tools),
                        "strict": True,
                    },
                }
        else:
            kwargs["messages"] = [m.to_openai() for m in request.messages]
            if request.tools:
                kwargs["tools"] = [
                    {
                        "type": "function",
                        "function": {
                            "name": t.name,
                            "description": t.description,
                            "parameters": t.parameters,
                        },
                    }
                    for t in request.tools
                ]
        try:
            completion = await self._client().chat.completions.create(**kwargs)
        except ApplicationError:
            raise
        except Exception as e:
            # Not chained: the message says what happened, and a failure carrying the
            # SDK's exception chain with its stack traces outgrows what the server keeps
            # of a retried attempt's failure ("Failure exceeds size limit.").
            raise classify_openai_error(e) from None
        plain = not request.tools or "response_format" not in kwargs
        return _to_response(completion, "native" if plain else mode, request.turn)


def _to_response(completion: Any, mode: ToolMode, turn: int) -> ModelResponse:
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
    if mode == "json_schema":
        message = parse_envelope(msg.content or "", turn)
    else:
        calls = [
            ToolCall(id=c.id, name=c.function.name, arguments=c.function.arguments or "")
            for c in (msg.tool_calls or [])
            if getattr(c, "function", None) is not None
        ]
        message = Message.assistant(msg.content, calls)
    return ModelResponse(
        message=message,
        usage=usage,
        model=completion.model or "",
        finish_reason=choice.finish_reason,
    )


# --- json_schema tool mode -------------------------------------------------------------


def envelope_schema(tools: list[ToolSpec]) -> dict[str, Any]:
    """The JSON schema the model's whole reply must match: one tool call, or an answer."""
    options: list[dict[str, Any]] = [
        {
            "type": "object",
            "properties": {"tool": {"const": t.name}, "arguments": _without_titles(t.parameters)},
            "required": ["tool", "arguments"],
            "additionalProperties": False,
        }
        for t in tools
    ]
    options.append(
        {
            "type": "object",
            "properties": {"answer": {"type": "string"}},
            "required": ["answer"],
            "additionalProperties": False,
        }
    )
    return {"anyOf": options}


def json_mode_messages(
    messages: list[Message], tools: list[ToolSpec], *, answer_only: bool = False
) -> list[dict[str, Any]]:
    """Render the transcript for a model without native tools: calls and results become text.

    With ``answer_only`` the tool results are attached to the user's message and the
    model answers in plain text: a small model mimics the JSON calls it sees in the
    transcript, and constrained JSON answers from it degenerate into repetition.
    """
    if answer_only:
        calls = {c.id: c for m in messages for c in (m.tool_calls or [])}
        out_plain: list[dict[str, Any]] = []
        for m in messages:
            if m.role in ("system", "user"):
                out_plain.append({"role": m.role, "content": m.content or ""})
            elif m.role == "tool" and out_plain and out_plain[-1]["role"] == "user":
                # Small models stay closest to the facts when they sit right beside the
                # question, as "key: value" text rather than JSON.
                call = _call_text(calls.get(m.tool_call_id or ""), m.name)
                out_plain[-1]["content"] += f"\n\n({call} returned: {_plain(m.content or '')})"
        return out_plain
    catalogue = "\n".join(f"- {_signature(t)}: {t.description}" for t in tools)
    guide = (
        "\n\nTools:\n"
        f"{catalogue}\n"
        'Reply with JSON only. To call a tool: {"tool": "<name>", "arguments": {...}}. '
        'To reply to the customer: {"answer": "<text>"}.'
    )
    out: list[dict[str, Any]] = []
    for m in messages:
        if m.role == "system":
            out.append({"role": "system", "content": (m.content or "") + guide})
        elif m.role == "assistant" and m.tool_calls:
            text = "\n".join(
                json.dumps({"tool": c.name, "arguments": _loads_or_raw(c.arguments)})
                for c in m.tool_calls
            )
            out.append({"role": "assistant", "content": text})
        elif m.role == "assistant":
            out.append({"role": "assistant", "content": json.dumps({"answer": m.content or ""})})
        elif m.role == "tool":
            out.append({"role": "user", "content": f"Result of {m.name}: {m.content}"})
        else:
            out.append({"role": m.role, "content": m.content or ""})
    return out


def _plain(text: str) -> str:
    value = _loads_or_raw(text)
    if isinstance(value, dict):
        return "; ".join(f"{k}: {v}" for k, v in value.items())
    return text


def _call_text(call: ToolCall | None, name: str | None) -> str:
    if call is None:
        return name or "a tool"
    args = _loads_or_raw(call.arguments)
    if isinstance(args, dict):
        return f"{call.name}({', '.join(f'{k}={json.dumps(v)}' for k, v in args.items())})"
    return f"{call.name}({args})"


_TOOL_NAME_RE = re.compile(r'"tool"\s*:\s*"([^"]+)"')
# A JSON answer cut off by max_tokens: keep the text that did arrive.
_ANSWER_RE = re.compile(r'^\s*\{\s*"answer"\s*:\s*"(.*?)(?:"\s*\}?\s*)?$', re.S)


def parse_envelope(content: str, turn: int) -> Message:
    """Turn a json_schema-mode reply back into a chat message (a tool call or an answer)."""
    try:
        obj = json.loads(content)
    except (ValueError, RecursionError):
        # Malformed JSON that names a tool (e.g. cut off by max_tokens) becomes a call with
        # broken arguments, so the workflow reports it to the model for repair.
        m = _TOOL_NAME_RE.search(content)
        if m:
            return Message.assistant(
                None, [ToolCall(id=f"call_t{turn}_0", name=m.group(1), arguments=content)]
            )
        m = _ANSWER_RE.match(content)
        return Message.assistant(m.group(1) if m else content)
    if isinstance(obj, dict) and isinstance(obj.get("tool"), str):
        args = obj.get("arguments", {})
        arguments = args if isinstance(args, str) else json.dumps(args)
        return Message.assistant(
            None, [ToolCall(id=f"call_t{turn}_0", name=obj["tool"], arguments=arguments)]
        )
    if isinstance(obj, dict) and "answer" in obj:
        return Message.assistant(str(obj["answer"]))
    return Message.assistant(content)


def _signature(t: ToolSpec) -> str:
    """``name(arg: type, ...)``: compact enough for a small model's context."""
    props: dict[str, Any] = t.parameters.get("properties", {})
    args = ", ".join(f"{name}: {p.get('type', 'any')}" for name, p in props.items())
    return f"{t.name}({args})"


def _loads_or_raw(text: str) -> Any:
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return text


def _without_titles(schema: Any) -> Any:
    """Drop pydantic's ``title`` annotations (noise for a small model), not properties so named."""
    if isinstance(schema, dict):
        return {
            k: (
                {name: _without_titles(p) for name, p in v.items()}
                if k in ("properties", "$defs") and isinstance(v, dict)
                else _without_titles(v)
            )
            for k, v in schema.items()
            if k != "title"
        }
    if isinstance(schema, list):
        return [_without_titles(v) for v in schema]
    return schema
