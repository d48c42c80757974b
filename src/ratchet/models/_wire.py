"""The exact request body a provider sent, rebuilt from a few hundred bytes of history.

A model call's history records the logical messages once (linear history) and, in
the response, a :class:`WireFormat`: how the provider rendered them. Together they
give back the body that went over the wire, byte for byte as JSON, without storing
it a second time. The provider builds its request with :func:`render_wire_request`
too, so what a trace shows and what the model saw cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, assert_never

from pydantic import BaseModel, ConfigDict

from ..agent import ToolMode
from ..messages import Message
from ..output import OutputSpec
from ..tools import ToolSpec
from ._json_mode import envelope_schema, json_mode_messages

__all__ = ["WIRE_REVISION", "WireApi", "WireFormat", "render_wire_request"]

WireApi = Literal["openai.chat.completions"]
"""The request format a provider spoke: the OpenAI chat-completions JSON body."""

WIRE_REVISION = 1
"""The revision of the rendering this ratchet writes. A change to the rendering of an
api (say, a new json_schema mode prompt) bumps it and keeps the old one, so histories
recorded before still render what was sent then."""


class WireFormat(BaseModel):
    """How a provider rendered one model call: everything besides the logical messages,
    tools and sampling parameters that decides the request body.

    Returned by :meth:`Provider.complete` and recorded with the call, it lets a reader
    of the history rebuild the body with :func:`render_wire_request`.
    """

    model_config = ConfigDict(frozen=True)

    api: WireApi = "openai.chat.completions"
    """The request format."""
    model: str
    """The model name sent (a provider may send another name than the model string's,
    e.g. ``OpenAICompatible(model_name=...)``)."""
    tool_mode: ToolMode = "native"
    """The tool mode actually used: ``native`` when tools went in the ``tools``
    parameter (or there were none), ``json_schema`` when they were described in the
    system message and the reply constrained by ``response_format``."""
    answer_only: bool = False
    """``json_schema`` mode only: the tool results were attached to the user's message
    and the model asked for a plain-text answer (no tools, no ``response_format``)."""
    stream: bool = False
    """The reply was streamed: the body asked for ``stream`` with usage in the last chunk
    (``stream_options.include_usage``)."""
    structured: bool = False
    """The request asked for the agent's output type (``ratchet.output``): in ``native``
    mode through the ``final_result`` tool, in ``json_schema`` mode through the answer
    option of the envelope. The output's schema comes with the request's tools."""
    revision: int = WIRE_REVISION
    """Which revision of the rendering produced the body (see ``WIRE_REVISION``)."""


def render_wire_request(
    messages: Sequence[Message],
    tools: Sequence[ToolSpec],
    *,
    temperature: float | None,
    max_tokens: int | None,
    wire: WireFormat,
    output: OutputSpec | None = None,
) -> dict[str, Any]:
    """The JSON body of a model request: what the provider sent for these messages and
    tools, rendered as ``wire`` describes (the transport's timeout is not part of it).

    ``output`` is the agent's output type, for a ``wire`` that is ``structured``.

    Raises:
        ValueError: ``wire`` was written by a newer ratchet, with a rendering this one
            does not know, or it is ``structured`` and ``output`` is missing.
    """
    if wire.revision != WIRE_REVISION:
        raise ValueError(
            f"this model call was rendered with wire revision {wire.revision}; this ratchet "
            f"renders revision {WIRE_REVISION} only. Read the run with the ratchet version "
            "that recorded it, or a newer one."
        )
    if wire.structured and output is None:
        raise ValueError("a structured request renders with its output type: pass output=")
    asked = output if wire.structured else None
    match wire.api:
        case "openai.chat.completions":
            body = _chat_completions(list(messages), list(tools), wire, asked)
        case _:
            assert_never(wire.api)
    if temperature is not None:
        body["temperature"] = temperature
    if max_tokens is not None:
        body["max_tokens"] = max_tokens
    if wire.stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return body


def _chat_completions(
    messages: list[Message], tools: list[ToolSpec], wire: WireFormat, output: OutputSpec | None
) -> dict[str, Any]:
    body: dict[str, Any] = {"model": wire.model}
    match wire.tool_mode:
        case "native":
            body["messages"] = [m.to_openai() for m in messages]
            if output is not None:
                tools = [*tools, output.tool()]
            if tools:
                body["tools"] = [
                    {
                        "type": "function",
                        "function": {
                            "name": t.name,
                            "description": t.description,
                            "parameters": t.parameters,
                        },
                    }
                    for t in tools
                ]
            if output is not None:
                # Some tool call every turn, the final answer's included; a str output may
                # also come as plain text.
                body["tool_choice"] = "auto" if output.text_allowed else "required"
        case "json_schema":
            body["messages"] = json_mode_messages(
                messages, tools, answer_only=wire.answer_only, output=output
            )
            if not wire.answer_only or output is not None:
                # After a tool result a structured answer is still constrained: to the
                # answer option alone.
                offered = [] if wire.answer_only else tools
                body["response_format"] = {
                    "type": "json_schema",
                    "json_schema": {
                        "name": "next_step",
                        "schema": envelope_schema(offered, output),
                        "strict": True,
                    },
                }
        case _:
            assert_never(wire.tool_mode)
    return body
