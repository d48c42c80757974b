"""A small, deterministic JSON-schema checker for tool arguments and structured output
inside the workflow.

It covers the subset pydantic emits for tool signatures and output types (types,
required, properties, additionalProperties, enum, const, items, prefixItems,
anyOf/oneOf, $ref into $defs) and, for output only, the constraints of ``Field``
(minimum/maximum, lengths, pattern, multipleOf). Checking in the workflow sends a bad
call or answer back to the model without spending an activity; pydantic, in an
activity, stays the authority.

Tool arguments are checked without the constraints: runs recorded before they were
checked sent such calls to the tool activity, and must replay the same way.
"""

from __future__ import annotations

import json
import operator
import re
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ._unicode import has_lone_surrogate

if TYPE_CHECKING:
    from .agent import AgentSpec
    from .messages import ToolCall

__all__ = ["check_arguments", "check_value", "parse_call"]

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
    return check_value(schema, value, path="arguments", constraints=False)


def check_value(
    schema: dict[str, Any], value: Any, *, path: str, constraints: bool = True
) -> list[str]:
    """Human-readable problems with ``value`` against ``schema`` (empty if valid).

    ``path`` names the value in the problems (``output.order_id: ...``); with
    ``constraints`` the bounds, lengths and patterns of the schema are checked too.
    """
    errors: list[str] = []
    checker = _Checker(schema.get("$defs", {}), constraints)
    try:
        checker.check(schema, value, path, errors, 0)
    except RecursionError:
        return [f"{path}: nested too deeply"]
    if not errors and has_lone_surrogate(value):
        # No payload can carry it: passed on, it would fail the workflow task.
        errors.append(
            f"{path}: contains invalid unicode (a lone surrogate such as \\ud800); "
            "send valid UTF-8 text"
        )
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


class _Checker:
    """One check of a value: the schema's ``$defs`` and whether constraints count."""

    def __init__(self, defs: dict[str, Any], constraints: bool) -> None:
        self.defs = defs
        self.constraints = constraints

    def check(
        self, schema: dict[str, Any], value: Any, path: str, errors: list[str], depth: int
    ) -> None:
        if depth > _MAX_DEPTH:
            errors.append(f"{path}: nested more than {_MAX_DEPTH} levels deep")
            return
        ref = schema.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            target = self.defs.get(ref.removeprefix("#/$defs/"))
            if isinstance(target, dict):
                self.check(target, value, path, errors, depth + 1)
            return
        for key in ("anyOf", "oneOf"):
            options = schema.get(key)
            if isinstance(options, list) and options:
                if not any(
                    not self._errors_of(o, value, path, depth + 1)
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
        if self.constraints:
            _check_constraints(schema, value, path, errors)
        if isinstance(value, dict):
            props: dict[str, Any] = schema.get("properties", {})
            extra = schema.get("additionalProperties")
            for name in schema.get("required", []):
                if name not in value:
                    errors.append(f"{path}: missing required field {name!r}")
            for name, item in value.items():
                if name in props:
                    self.check(props[name], item, f"{path}.{name}", errors, depth + 1)
                elif extra is False:
                    errors.append(f"{path}: unexpected field {name!r} (allowed: {sorted(props)})")
                elif isinstance(extra, dict):  # dict[str, X]: every value must be an X
                    self.check(extra, item, f"{path}.{name}", errors, depth + 1)
        if isinstance(value, list):
            prefix = schema.get("prefixItems")
            if isinstance(prefix, list):  # tuples: one schema per position
                if schema.get("items") is False and len(value) > len(prefix):
                    errors.append(f"{path}: at most {len(prefix)} items, got {len(value)}")
                if len(value) < len(prefix) and schema.get("minItems", 0) >= len(prefix):
                    errors.append(f"{path}: expected {len(prefix)} items, got {len(value)}")
                for i, (item_schema, item) in enumerate(zip(prefix, value, strict=False)):
                    if isinstance(item_schema, dict):
                        self.check(item_schema, item, f"{path}[{i}]", errors, depth + 1)
            elif isinstance(schema.get("items"), dict):
                for i, item in enumerate(value):
                    self.check(schema["items"], item, f"{path}[{i}]", errors, depth + 1)

    def _errors_of(self, schema: dict[str, Any], value: Any, path: str, depth: int) -> list[str]:
        errs: list[str] = []
        self.check(schema, value, path, errs, depth)
        return errs


_BOUNDS: dict[str, tuple[Callable[[Any, Any], bool], str]] = {
    "minimum": (operator.ge, ">="),
    "maximum": (operator.le, "<="),
    "exclusiveMinimum": (operator.gt, ">"),
    "exclusiveMaximum": (operator.lt, "<"),
}


def _multiple(value: float, step: float) -> bool:
    """``value`` is a multiple of ``step``, within a float's rounding (as pydantic has it:
    0.3 is a multiple of 0.1)."""
    if isinstance(value, int) and isinstance(step, int):
        return value % step == 0
    rest = value % step
    return abs(rest) <= sys.float_info.epsilon or abs(rest - step) <= sys.float_info.epsilon


def _check_constraints(schema: dict[str, Any], value: Any, path: str, errors: list[str]) -> None:
    """The bounds ``Field(ge=..., max_length=..., pattern=...)`` put in a schema."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        for key, (holds, sign) in _BOUNDS.items():
            bound = schema.get(key)
            if isinstance(bound, int | float) and not holds(value, bound):
                errors.append(f"{path}: must be {sign} {bound}, got {_short(value)}")
        step = schema.get("multipleOf")
        if isinstance(step, int | float) and step > 0 and not _multiple(value, step):
            errors.append(f"{path}: must be a multiple of {step}, got {_short(value)}")
    if isinstance(value, str | list | dict):
        suffix, unit = (
            ("Length", "characters")
            if isinstance(value, str)
            else ("Items", "items")
            if isinstance(value, list)
            else ("Properties", "fields")
        )
        low, high = schema.get(f"min{suffix}"), schema.get(f"max{suffix}")
        if isinstance(low, int) and len(value) < low:
            errors.append(f"{path}: at least {low} {unit}, got {len(value)}")
        if isinstance(high, int) and len(value) > high:
            errors.append(f"{path}: at most {high} {unit}, got {len(value)}")
    pattern = schema.get("pattern")
    if isinstance(value, str) and isinstance(pattern, str):
        try:
            matched = re.search(pattern, value) is not None
        except re.error:
            matched = True  # a pattern Python cannot read: the worker's pydantic decides
        if not matched:
            errors.append(f"{path}: {_short(value)} does not match the pattern {pattern!r}")


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
