"""The provider contract: one coroutine from a :class:`ProviderRequest` to a
:class:`ProviderResponse`.

These types are the public face of a model call. They are separate from the model
activity's own input and output (recorded in every run's history, where fields can
only be added), so a provider never depends on how ratchet stores a run.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from pydantic import BaseModel, ConfigDict

from ..agent import ToolMode
from ..messages import Message, Usage
from ..output import OutputSpec
from ..streaming._delta import DeltaSink
from ..tools import ToolSpec
from ._wire import WireFormat

__all__ = ["Provider", "ProviderRequest", "ProviderResponse"]


class ProviderRequest(BaseModel):
    """One model call, as ratchet asks a provider to make it."""

    model_config = ConfigDict(frozen=True)

    model: str
    """The model's name as the provider knows it: ``gpt-4o-mini`` for the model string
    ``openai:gpt-4o-mini``."""
    messages: list[Message]
    """The whole prompt, oldest first, as ratchet's logical chat messages: any rendering
    the provider needs (e.g. ``json_schema`` tool mode) is the provider's to do."""
    tools: list[ToolSpec] = []
    """The tools the model may call (none: the model can only answer)."""
    tool_mode: ToolMode | None = None
    """How to offer the tools, from the agent's ``tool_mode``; None: the provider's default."""
    output: OutputSpec | None = None
    """The agent's output type (``ratchet.output``): ask for an answer of this JSON
    schema through the provider's structured output (``OpenAICompatible`` offers a
    ``final_result`` tool in ``native`` mode, the envelope's answer option in
    ``json_schema`` mode). None: the answer is text."""
    temperature: float | None = None
    """Sampling temperature; None: the provider's default."""
    max_tokens: int | None = None
    """Cap on the reply's tokens; None: the provider's default."""
    timeout_seconds: float = 120.0
    """How long the provider may take to answer (``Limits.model_timeout_seconds``)."""
    turn: int = 0
    """The run's turn. A provider that makes up tool call ids (the model gave none)
    derives them from it, so a retried call gets the same ids."""


class ProviderResponse(BaseModel):
    """The model's reply to a :class:`ProviderRequest`."""

    model_config = ConfigDict(frozen=True)

    message: Message
    """The assistant message: an answer, tool calls, or both."""
    usage: Usage
    """The tokens the provider reported for this request (``requests=1``)."""
    model: str
    """The model name the provider reports (may name a snapshot, e.g. ``gpt-4o-2024-08-06``)."""
    finish_reason: str | None = None
    """Why the model stopped, as the provider said it (``stop``, ``length``,
    ``tool_calls``...); providers are not limited to OpenAI's values."""
    wire: WireFormat | None = None
    """How the request was rendered, for :func:`ratchet.models.render_wire_request`.
    None: the provider does not say (a trace then shows the logical messages only)."""
    warnings: list[str] = []
    """What went differently than asked, for the run's trace: e.g. the endpoint
    rejected ``stream`` and the call was made without streaming."""


class Provider(ABC):
    """A model provider: subclass it and implement :meth:`complete`.

    ``complete`` runs inside the model activity, which retries it under the agent's
    retry policy: do not retry inside. Raise
    :class:`temporalio.exceptions.ApplicationError` with a type from
    ``ratchet.errors.MODEL_ERRORS`` (:func:`ratchet.models.model_error` builds one, and
    :func:`ratchet.models.classify_openai_error` maps the ``openai`` SDK's exceptions)
    so Temporal knows whether to retry.
    """

    supports_streaming: bool = False
    """Whether :meth:`stream` streams. Providers that do override :meth:`stream` and set
    it; ratchet then streams every agent's calls unless ``Agent(stream=False)``."""

    @abstractmethod
    async def complete(self, request: ProviderRequest) -> ProviderResponse:
        """Send one request to the model and return its reply."""

    async def stream(self, request: ProviderRequest, on_delta: DeltaSink) -> ProviderResponse:
        """Send one request, handing each piece of the reply to ``on_delta`` as it arrives;
        return the whole reply, as :meth:`complete` would.

        Only the returned reply is recorded: the deltas are a live view for subscribers.
        When the endpoint cannot stream, answer with :meth:`complete` and say so in
        :attr:`ProviderResponse.warnings`. The default does exactly that, silently (a
        provider that never streams has ``supports_streaming = False``).
        """
        return await self.complete(request)
