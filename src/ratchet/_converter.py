"""ratchet's data converter: pydantic's JSON, without the empty fields of ratchet's models.

Every activity input and result, the run's input and result and the agent snapshot are
ratchet models, and most of their optional fields are empty in any one call (no
tenant, no model override, no tool policy...). Written as ``"field":null`` they were
about a tenth of a run's history (``python -m bench``, issue 18). This converter leaves
them out of ratchet's own models; reading fills them in again, since every optional
field of those models defaults to None (``tests/test_converter.py`` checks that it
stays so). Anything else (tool arguments, a structured answer's data, a user's types)
is written exactly as pydantic's converter writes it: ``exclude_none`` only drops a
model's own fields, never a key of a dict.

Payloads written by the plain ``pydantic_data_converter`` (and histories recorded
before this converter) read the same.
"""

from __future__ import annotations

from typing import Any

import temporalio.api.common.v1
from pydantic import BaseModel
from pydantic_core import to_json
from temporalio.contrib.pydantic import PydanticJSONPlainPayloadConverter
from temporalio.converter import (
    CompositePayloadConverter,
    DataConverter,
    DefaultPayloadConverter,
    JSONPlainPayloadConverter,
)

__all__ = [
    "DATA_CONVERTER",
    "WIRE_MODULES",
    "RatchetJSONPayloadConverter",
    "RatchetPayloadConverter",
]


WIRE_MODULES = frozenset(
    {
        "ratchet._protocol",
        "ratchet._slots_protocol",
        "ratchet._limiter_protocol",
        "ratchet.agent",
        "ratchet.messages",
        "ratchet.models._wire",
        "ratchet.tools",
        "ratchet.policy",
    }
)
"""Where the models that travel in payloads are defined (activity inputs and results,
the run's input and result, the snapshot, messages). Only these are written without
their None fields; ``tests/test_converter.py`` checks every model they can hold."""


def _is_wire_model(value: Any) -> bool:
    return isinstance(value, BaseModel) and type(value).__module__ in WIRE_MODULES


class RatchetJSONPayloadConverter(PydanticJSONPlainPayloadConverter):
    """Pydantic's JSON converter; ratchet's models without their None fields."""

    def to_payload(self, value: Any) -> temporalio.api.common.v1.Payload | None:
        if not _is_wire_model(value):
            return super().to_payload(value)
        return temporalio.api.common.v1.Payload(
            metadata={"encoding": self.encoding.encode()},
            data=to_json(value, exclude_none=True),
        )


class RatchetPayloadConverter(CompositePayloadConverter):
    """Temporal's default payload converters, with JSON through
    :class:`RatchetJSONPayloadConverter`."""

    def __init__(self) -> None:
        json_converter = RatchetJSONPayloadConverter()
        super().__init__(
            *(
                json_converter if isinstance(c, JSONPlainPayloadConverter) else c
                for c in DefaultPayloadConverter.default_encoding_payload_converters
            )
        )


DATA_CONVERTER = DataConverter(payload_converter_class=RatchetPayloadConverter)
"""The data converter of every client :func:`ratchet.connect` makes (with a payload
codec added when payloads are encrypted)."""
