"""Fields written even when None, because releases before issue 18 required them.

ratchet's data converter leaves a wire model's None fields out (``_converter``); a
worker of an older release, reading what a newer one wrote during a rolling upgrade,
would reject a model whose required field is missing.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel, SerializerFunctionWrapHandler, model_serializer

__all__ = ["KeepsFieldsOlderReadersRequire"]


class KeepsFieldsOlderReadersRequire(BaseModel):
    """A model whose ``ALWAYS_WRITTEN`` fields are written even when None."""

    ALWAYS_WRITTEN: ClassVar[tuple[str, ...]] = ()

    # No return annotation on purpose: pydantic takes the serialization JSON schema
    # from it, and without one keeps the model's own (an ``Any`` made it ``{}``).
    @model_serializer(mode="wrap")
    def _with_always_written(self, handler: SerializerFunctionWrapHandler):  # type: ignore[no-untyped-def]
        data = handler(self)
        if not isinstance(data, dict):
            return data
        missing = [k for k in self.ALWAYS_WRITTEN if k not in data]
        return {**data, **dict.fromkeys(missing)} if missing else data
