"""The ``json_schema`` tool mode: tools for models whose chat template has none.

The tools are described in the system message, the model's whole reply must match
a JSON envelope (one tool call, or an answer) enforced through ``response_format``,
and earlier calls and results are rendered as text.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any, assert_never

from ..messages import Message, ToolCall
from ..tools import ToolSpec

__all__ = ["envelope_schema", "json_mode_messages", "parse_envelope"]


def envelope_schema(tools: Sequence[ToolSpec]) -> dict[str, Any]:
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
    messages: Sequence[Message], tools: Sequence[ToolSpec], *, answer_only: bool = False
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
        match m.role:
            case "system":
                out.append({"role": "system", "content": (m.content or "") + guide})
            case "assistant" if m.tool_calls:
                text = "\n".join(
                    json.dumps({"tool": c.name, "arguments": _loads_or_raw(c.arguments)})
                    for c in m.tool_calls
                )
                out.append({"role": "assistant", "content": text})
            case "assistant":
                answer = json.dumps({"answer": m.content or ""})
                out.append({"role": "assistant", "content": answer})
            case "tool":
                out.append({"role": "user", "content": f"Result of {m.name}: {m.content}"})
            case "user":
                out.append({"role": "user", "content": m.content or ""})
            case _:
                assert_never(m.role)
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
