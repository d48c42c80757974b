"""The model call activity: rebuild the prompt from the store, send it, record the
answer and its usage and cost.
"""

from __future__ import annotations

from temporalio import activity
from temporalio.exceptions import ApplicationError

from .._heartbeat import Attempts, counted_attempts
from .._protocol import MODEL_ACTIVITY, ModelRequest, ModelResponse
from ..messages import Message
from ..pricing import cost_of
from ..telemetry import instrument_model_call
from ..transcripts import save_messages
from ._base import ActivitiesBase
from ._compaction import check_window

__all__ = ["ModelCallActivities"]

_MAX_RESPONSE_BYTES = 1_000_000


class ModelCallActivities(ActivitiesBase):
    """One model call per activity."""

    @activity.defn(name=MODEL_ACTIVITY)
    @instrument_model_call
    async def call_model(self, request: ModelRequest) -> ModelResponse:
        """One model call; heartbeats while waiting so a dead worker is noticed quickly."""
        # Counts this call's requests and tokens over all its attempts (see _heartbeat).
        with counted_attempts() as attempts:
            return await self._call_model(request, attempts)

    async def _call_model(self, request: ModelRequest, attempts: Attempts) -> ModelResponse:
        provider, model_name, key = self._provider_ref(request.model)
        new: list[Message] = []
        if request.linear:
            # Rebuild the exact prompt from the store.
            prompt = await self._prompt(request.transcript_ref, request.appended)
            new = prompt[len(prompt) - len(request.appended) :]
            request = request.model_copy(update={"messages": prompt})
            if request.tools_ref and not request.tools:
                tools = await self._tools(request.tools_ref)
                request = request.model_copy(update={"tools": tools})
        try:
            if request.linear:
                check_window(request.messages, request.context_window_tokens)
            reply = await self._send(request, provider, model_name, key, stream=request.stream)
        except ApplicationError as e:
            if request.linear and e.type == "ContextTooLong":
                # The compaction that follows starts from this prompt's head: store it.
                await save_messages(self.store, request.transcript_ref, new)
            raise
        head: str | None = None
        if request.linear:
            # The new messages and the answer in one write (after the answer: a failed
            # attempt's retry sends the same new messages again).
            head = await save_messages(self.store, request.transcript_ref, [*new, reply.message])
        # Every request the provider saw counts (it may bill failed ones), and so do the
        # tokens of earlier attempts that got an answer. The cost is fixed here and
        # recorded with the call.
        usage = attempts.usage()
        response = ModelResponse(
            message=reply.message,
            usage=usage,
            model=reply.model,
            finish_reason=reply.finish_reason,
            attempt=activity.info().attempt,
            cost_usd=cost_of(request.model, usage, self.prices),
            transcript_ref=head,
            wire=reply.wire,
            warnings=reply.warnings,
        )
        size = len(response.model_dump_json())
        if size > _MAX_RESPONSE_BYTES:
            raise ApplicationError(
                f"the model's response is {size:,} bytes; ratchet's limit is "
                f"{_MAX_RESPONSE_BYTES:,} (Temporal rejects payloads over 2 MB). "
                "Lower the agent's max_tokens.",
                type="PayloadTooLarge",
                non_retryable=True,
            )
        return response
