"""The provider contract: one coroutine from a request to a response."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from .._protocol import ModelRequest, ModelResponse


@runtime_checkable
class Provider(Protocol):
    """A model provider. ``complete`` runs inside the model activity.

    Raise :class:`temporalio.exceptions.ApplicationError` with a type from
    ``ratchet.errors.MODEL_ERRORS`` (see :func:`ratchet.models.classify_openai_error`)
    so Temporal knows whether to retry.
    """

    async def complete(self, request: ModelRequest, model_name: str) -> ModelResponse: ...
