"""The ``json_schema`` tool mode: tools for models whose chat template has none.

The tools are described in the system message, the model's whole reply must match
a JSON envelope (one tool call, or an answer) enforced through ``response_format``,
and earlier calls and results are rendered as text.

For an agent with an output type the answer option is ``{"answer": <the output
schema>}``: constrained decoding then yields the structured answer itself, and the
reply's message carries the answer's JSON as its content.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any, assert_never

from ..messages import Message, ToolCall
from ..output import OutputSpec
from ..tools import ToolSpec

__all__ = ["envelope_schema", "json_mode_messages", "parse_envelope"]


def envelope_schema(tools: Sequence[ToolSpec], output: OutputSpec | None = None) -> dict[str, Any]:
    """The JSON schema the model's whole reply must match: one tool call, or an answer
    (text, or the ``output`` type's JSON)."""
    options: list[dict[str, Any]] = [
        {
            "type": "object",
            "properties": {"tool": {"const": t.name}, "arguments": _without_titles(t.parameters)},
            "required": ["tool", "arguments"],
            "additionalProperties": False,
        }
        for t in tools
    ]
    answer: dict[str, Any] = {"type": "string"}
    defs: dict[str, Any] = {}
    if output is not None:
        answer = _without_titles({k: v for k, v in output.json_schema.items() if k != "$defs"})
        # References point at the root: the output's definitions move up to the envelope.
        defs = _without_titles(output.json_schema.get("$defs", {}))
    options.append(
        {
            "type": "object",
            "properties": {"answer": answer},
            "required": ["answer"],
            "additionalProperties": False,
        }
    )
    return {"anyOf": options, **({"$defs": defs} if defs else {})}


def json_mode_messages(
    messages: Sequence[Message],
    tools: Sequence[ToolSpec],
    *,
    answer_only: bool = False,
    output: OutputSpec | None = None,
) -> list[dict[str, Any]]:
    """Render the transcript for a model without native tools: calls and results become text.

    With ``answer_only`` the tool results are attached to the user's message and the
    model answers in plain text: a small model mimics the JSON calls it sees in the
    transcript, and constrained JSON answers from it degenerate into repetition. With
    ``output`` too, the answer is the output type's JSON (the system message says so).
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
            elif m.role == "assistant" and output is not None and not m.tool_calls:
                # An earlier structured answer (a chat's): shown as the JSON it was.
                out_plain.append({"role": "assistant", "content": _answer_json(m)})
        if output is not None and out_plain and out_plain[0]["role"] == "system":
            out_plain[0]["content"] += f"\n\nReply with JSON only: {_answer_shape(output)}."
        return out_plain
    catalogue = "\n".join(f"- {_signature(t)}: {t.description}" for t in tools)
    if output is None:
        answer = 'To reply to the customer: {"answer": "<text>"}.'
    else:
        answer = f"To give the final answer: {_answer_shape(output)}."
    guide = (
        (
            "\n\nTools:\n"
            f"{catalogue}\n"
            'Reply with JSON only. To call a tool: {"tool": "<name>", "arguments": {...}}. '
            + answer
        )
        if tools or output is None
        else f"\n\nReply with JSON only: {_answer_shape(output)}."
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
            case "assistant" if output is not None:
                out.append({"role": "assistant", "content": _answer_json(m)})
            case "assistant":
                text = json.dumps({"answer": m.content or ""})
                out.append({"role": "assistant", "content": text})
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


def parse_envelope(content: str, turn: int, *, structured: bool = False) -> Message:
    """Turn a json_schema-mode reply back into a chat message (a tool call or an answer).

    With ``structured`` (the agent has an output type) the answer's content is the JSON
    of the envelope's ``answer``; a reply that is no envelope stays as it came, for the
    workflow to send back for repair.
    """
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
        if structured:
            return Message.assistant(content)
        m = _ANSWER_RE.match(content)
        return Message.assistant(m.group(1) if m else content)
    if isinstance(obj, dict) and isinstance(obj.get("tool"), str):
        args = obj.get("arguments", {})
        arguments = args if isinstance(args, str) else json.dumps(args)
        return Message.assistant(
            None, [ToolCall(id=f"call_t{turn}_0", name=obj["tool"], arguments=arguments)]
        )
    if isinstance(obj, dict) and "answer" in obj:
        if structured:
            return Message.assistant(json.dumps(obj["answer"], ensure_ascii=False))
        return Message.assistant(str(obj["answer"]))
    return Message.assistant(content)


def _answer_json(m: Message) -> str:
    """An earlier structured answer as the model gave it: its JSON in the envelope."""
    return json.dumps({"answer": _loads_or_raw(m.content or "")}, ensure_ascii=False)


def _answer_shape(output: OutputSpec) -> str:
    """``{"answer": <shape>}`` for the system message: the output's fields and types."""
    schema = output.json_schema
    return '{"answer": ' + _shape(schema, schema.get("$defs", {}), 0) + "}"


def _shape(schema: Any, defs: dict[str, Any], depth: int) -> str:
    """A compact picture of a schema: ``{"order_id": integer, "shipped": boolean}``."""
    if not isinstance(schema, dict) or depth > 4:
        return "..."
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        return _shape(defs.get(ref.removeprefix("#/$defs/")), defs, depth + 1)
    options = schema.get("anyOf") or schema.get("oneOf")
    if isinstance(options, list) and options:
        return " or ".join(_shape(o, defs, depth + 1) for o in options)
    if "enum" in schema:
        return " or ".join(json.dumps(v) for v in schema["enum"])
    kind = schema.get("type")
    if kind == "object" and isinstance(schema.get("properties"), dict):
        fields = ", ".join(
            f"{json.dumps(name)}: {_shape(p, defs, depth + 1)}"
            for name, p in schema["properties"].items()
        )
        return "{" + fields + "}"
    if kind == "array":
        return f"[{_shape(schema.get('items'), defs, depth + 1)}, ...]"
    return str(kind) if isinstance(kind, str) else "..."


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
