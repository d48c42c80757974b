"""A small, deterministic JSON-schema checker for tool arguments inside the workflow.

It covers the subset pydantic emits for tool signatures (types, required,
properties, additionalProperties, enum, const, items, anyOf/oneOf, $ref into
$defs). Checking in the workflow sends a bad call back to the model without
spending an activity; the tool activity still validates with pydantic, which
stays the authority.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .agent import AgentSpec
    from .messages import ToolCall

__all__ = ["check_arguments", "parse_call"]

_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "object": (dict,),
    "array": (list,),
    "null": (type(None),),
}


_MAX_DEPTH = 64
"""Deeper arguments are refused: the checker runs inside the workflow and must never
exhaust the stack (a failed workflow task would retry forever)."""
_INT64 = 2**63


def check_arguments(schema: dict[str, Any], value: Any) -> list[str]:
    """Return human-readable problems with ``value`` against ``schema`` (empty if valid)."""
    errors: list[str] = []
    try:
        _check(schema, value, "arguments", schema.get("$defs", {}), errors, 0)
    except RecursionError:
        return ["arguments: nested too deeply"]
    return errors


def _type_ok(expected: str, value: Any) -> bool:
    if expected in ("integer", "number") and isinstance(value, bool):
        return False
    if expected == "integer" and isinstance(value, float):
        # pydantic takes whole floats as ints, within int64.
        return value.is_integer() and abs(value) < _INT64
    if expected == "number" and isinstance(value, int):
        try:
            float(value)
        except OverflowError:  # pydantic rejects ints too large for a float
            return False
    return isinstance(value, _TYPES.get(expected, (object,)))


def _check(
    schema: dict[str, Any],
    value: Any,
    path: str,
    defs: dict[str, Any],
    errors: list[str],
    depth: int,
) -> None:
    if depth > _MAX_DEPTH:
        errors.append(f"{path}: nested more than {_MAX_DEPTH} levels deep")
        return
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        target = defs.get(ref.removeprefix("#/$defs/"))
        if isinstance(target, dict):
            _check(target, value, path, defs, errors, depth + 1)
        return
    for key in ("anyOf", "oneOf"):
        options = schema.get(key)
        if isinstance(options, list) and options:
            if not any(
                not _errors_of(o, value, path, defs, depth + 1)
                for o in options
                if isinstance(o, dict)
            ):
                errors.append(f"{path}: {_short(value)} matches none of the allowed forms")
            return
    expected = schema.get("type")
    if expected is not None:
        allowed = expected if isinstance(expected, list) else [expected]
        if not any(_type_ok(t, value) for t in allowed):
            errors.append(f"{path}: expected {' or '.join(allowed)}, got {_short(value)}")
            return
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{path}: {_short(value)} is not one of {schema['enum']}")
    if "const" in schema and value != schema["const"]:
        errors.append(f"{path}: must be {schema['const']!r}")
    if isinstance(value, dict):
        props: dict[str, Any] = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        for name in schema.get("required", []):
            if name not in value:
                errors.append(f"{path}: missing required field {name!r}")
        for name, item in value.items():
            if name in props:
                _check(props[name], item, f"{path}.{name}", defs, errors, depth + 1)
            elif extra is False:
                errors.append(f"{path}: unexpected field {name!r} (allowed: {sorted(props)})")
            elif isinstance(extra, dict):  # dict[str, X]: every value must be an X
                _check(extra, item, f"{path}.{name}", defs, errors, depth + 1)
    if isinstance(value, list):
        prefix = schema.get("prefixItems")
        if isinstance(prefix, list):  # tuples: one schema per position
            if schema.get("items") is False and len(value) > len(prefix):
                errors.append(f"{path}: at most {len(prefix)} items, got {len(value)}")
            if len(value) < len(prefix) and schema.get("minItems", 0) >= len(prefix):
                errors.append(f"{path}: expected {len(prefix)} items, got {len(value)}")
            for i, (item_schema, item) in enumerate(zip(prefix, value, strict=False)):
                if isinstance(item_schema, dict):
                    _check(item_schema, item, f"{path}[{i}]", defs, errors, depth + 1)
        elif isinstance(schema.get("items"), dict):
            for i, item in enumerate(value):
                _check(schema["items"], item, f"{path}[{i}]", defs, errors, depth + 1)


def _errors_of(
    schema: dict[str, Any], value: Any, path: str, defs: dict[str, Any], depth: int
) -> list[str]:
    errs: list[str] = []
    _check(schema, value, path, defs, errs, depth)
    return errs


def _short(value: Any) -> str:
    try:
        text = repr(value)
    except RecursionError:
        text = f"<deeply nested {type(value).__name__}>"
    return text if len(text) <= 60 else text[:57] + "..."


def parse_call(spec: AgentSpec, call: ToolCall) -> tuple[dict[str, Any], str | None]:
    """Check one tool call against the snapshot; return its arguments or a message for the model.

    Pure: the workflow decides with it, and the history reader (``ratchet.events``)
    runs it again to say which calls were rejected and why, with the same words.
    """
    tool = spec.tool(call.name)
    if tool is None:
        names = ", ".join(t.name for t in spec.tools) or "(none)"
        return {}, f"error: unknown tool {call.name!r}. Available tools: {names}."
    try:
        arguments = json.loads(call.arguments) if call.arguments.strip() else {}
    except (ValueError, RecursionError) as e:
        return {}, (
            f"error: the arguments of {call.name!r} are not valid JSON ({e}). "
            f"Send a JSON object matching this schema: {json.dumps(tool.parameters)}"
        )
    if not isinstance(arguments, dict):
        return {}, f"error: the arguments of {call.name!r} must be a JSON object."
    problems = check_arguments(tool.parameters, arguments)
    if problems:
        return {}, (
            f"error: invalid arguments for {call.name!r}: {'; '.join(problems)}. "
            f"Expected schema: {json.dumps(tool.parameters)}"
        )
    return arguments, None
