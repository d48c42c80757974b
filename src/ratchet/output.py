"""Structured output: an agent's output type, as a run records it, and its typed result.

``Agent(output_type=Shipment)`` asks the model for a ``Shipment`` instead of text:
a pydantic model, a dataclass, a ``TypedDict``, a ``list`` of them, or a primitive
(``int``, ``float``, ``bool``, ``str``). The run's snapshot records the type's JSON
schema (:class:`OutputSpec`), so a redeploy never changes what a running agent must
answer. The model is asked through the provider's structured output:

- ``native`` tool mode: a final-answer tool, ``final_result``, whose arguments are the
  answer (a schema that is not an object is wrapped as ``{"result": ...}``), with
  ``tool_choice`` ``required``;
- ``json_schema`` tool mode (the embedded local model): the answer option of the JSON
  envelope enforced through ``response_format`` becomes ``{"answer": <the schema>}``,
  so constrained decoding produces it.

The workflow checks each final answer against the recorded schema; an invalid one
goes back to the model as a repair message (``Limits.max_repair_turns``), after
which the run fails with ``OutputValidationError``. Output validators
(``Agent(output_validators=[...])``) then judge a well-formed answer in an activity.
"""

from __future__ import annotations

import dataclasses
import inspect
import types
from collections.abc import Awaitable, Callable
from typing import Any, Generic, Literal, TypeVar, Union, get_args, get_origin

import pydantic
from pydantic import BaseModel, ConfigDict, TypeAdapter

from .errors import ConfigError
from .messages import Usage
from .tools import ToolSpec

__all__ = [
    "OUTPUT_TOOL",
    "WRAP_KEY",
    "OutputSpec",
    "OutputValidator",
    "TypedRunResult",
    "output_spec",
]

T = TypeVar("T")

OUTPUT_TOOL = "final_result"
"""The name of the final-answer tool in ``native`` tool mode (no agent tool may use it)."""

WRAP_KEY = "result"
"""The one field of the final-answer tool's arguments when the output is not an object."""

OutputValidator = Callable[[Any], Awaitable[str | None] | str | None]
"""A check of a well-formed final answer: called with the typed output (the answer's
text for agents without ``output_type``). It rejects the answer by raising
:class:`ratchet.OutputRejected` or returning a message for the model; ``None``
accepts it. It runs in an activity, so it may do I/O (ask a moderation service,
look an id up)."""

_PRIMITIVES: tuple[type, ...] = (int, float, bool, str)


class OutputSpec(BaseModel):
    """What a run records about its agent's output type (pure data, replay-safe)."""

    model_config = ConfigDict(frozen=True)

    name: str
    """The type's name, e.g. ``Shipment`` or ``list[Shipment]``."""
    json_schema: dict[str, Any]
    """The type's JSON schema (``pydantic.TypeAdapter(type).json_schema()``)."""
    description: str = ""
    """What the answer is, for the model (the type's docstring)."""
    typed_check: bool = True
    """The worker validates a well-formed answer with the type itself (pydantic, in
    the output check activity): the schema does not say everything about models,
    dataclasses and ``TypedDict``s (validators, formats). False for primitives and
    lists of primitives, whose schema is complete."""

    @property
    def wrapped(self) -> bool:
        """The schema is not an object: tool arguments carry it as ``{"result": ...}``."""
        return self.json_schema.get("type") != "object"

    @property
    def text_allowed(self) -> bool:
        """A ``str`` output: a plain-text answer is the output as it is."""
        return self.json_schema.get("type") == "string"

    def parameters(self) -> dict[str, Any]:
        """The JSON schema of the final-answer tool's arguments (always an object)."""
        if not self.wrapped:
            return self.json_schema
        inner = {k: v for k, v in self.json_schema.items() if k != "$defs"}
        wrapper: dict[str, Any] = {
            "type": "object",
            "properties": {WRAP_KEY: inner},
            "required": [WRAP_KEY],
            "additionalProperties": False,
        }
        if "$defs" in self.json_schema:
            wrapper["$defs"] = self.json_schema["$defs"]
        return wrapper

    def tool(self) -> ToolSpec:
        """The final-answer tool offered in ``native`` tool mode."""
        about = f" {self.description}" if self.description else ""
        return ToolSpec(
            name=OUTPUT_TOOL,
            description=(
                f"Give your final answer, a {self.name}, as this tool's arguments.{about} "
                "Call it once, when you have everything you need."
            ),
            parameters=self.parameters(),
        )


def output_spec(output_type: Any) -> tuple[TypeAdapter[Any], OutputSpec]:
    """The pydantic adapter of ``output_type`` and the spec a run records.

    Raises:
        ConfigError: pydantic cannot build a JSON schema for the type.
    """
    try:
        adapter: TypeAdapter[Any] = TypeAdapter(output_type)
        schema = adapter.json_schema()
    except (pydantic.PydanticUserError, pydantic.PydanticSchemaGenerationError) as e:
        raise ConfigError(
            f"output_type {type_name(output_type)}: pydantic cannot describe it as JSON: {e}. "
            "Use a pydantic model, a dataclass, a TypedDict (from typing_extensions on "
            "Python < 3.12), a list of them, or int, float, bool or str."
        ) from e
    doc = _own_doc(output_type)
    return adapter, OutputSpec(
        name=type_name(output_type),
        json_schema=schema,
        description=(doc or "").strip(),
        typed_check=not _complete_schema(output_type),
    )


def _own_doc(t: Any) -> str | None:
    """The docstring the user wrote on the class; not one it inherits (``BaseModel``'s,
    ``dict``'s) nor the signature ``dataclass`` writes when there is none."""
    if not isinstance(t, type) or t in _PRIMITIVES:
        return None
    doc = vars(t).get("__doc__")
    if not isinstance(doc, str) or (
        dataclasses.is_dataclass(t) and doc.startswith(f"{t.__name__}(")
    ):
        return None
    return inspect.cleandoc(doc)


def _complete_schema(t: Any) -> bool:
    """The JSON schema says everything pydantic would check: primitives, lists of them."""
    if t in _PRIMITIVES:
        return True
    return get_origin(t) is list and all(_complete_schema(a) for a in get_args(t))


def type_name(t: Any) -> str:
    """A type as people write it: ``Shipment``, ``list[Shipment]``, ``int | None``."""
    origin = get_origin(t)
    if origin in (Union, types.UnionType):
        return " | ".join(type_name(a) for a in get_args(t))
    if origin is Literal:
        return f"Literal[{', '.join(repr(a) for a in get_args(t))}]"
    if t is type(None):
        return "None"
    if origin is not None and get_args(t):
        head = getattr(origin, "__name__", None) or str(origin).removeprefix("typing.")
        return f"{head}[{', '.join(type_name(a) for a in get_args(t))}]"
    return str(getattr(t, "__name__", None) or t)


@dataclasses.dataclass(frozen=True)
class TypedRunResult(Generic[T]):
    """A finished run's result with its output as the agent's output type.

    Returned by ``RunHandle.result(output_type=...)`` and ``AgentClient.run(...,
    output_type=...)``; a type checker follows ``T`` from the type passed.
    """

    output: T
    """The answer, validated by pydantic as ``T``."""
    text: str
    """The answer as the run returned it (``RunResult.output``: the JSON text of a
    structured answer)."""
    turns: int
    usage: Usage
    tool_calls: int
    cost_usd: float = 0.0
    warnings: list[str] = dataclasses.field(default_factory=list)
