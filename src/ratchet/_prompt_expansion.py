"""Expanding a model call's recorded input into the exact prompt, for people reading a history.

With linear history the input of a model call (the ``ratchet.call_model`` activity's
:class:`~ratchet._protocol.ModelRequest`) holds references: the head of the transcript
chain the prompt continues, the messages new since then (inline or as hashes) and the
reference of the tool specs. The worker rebuilds the prompt from the transcript store;
a history viewer such as the Temporal Web UI, which shows payloads as they are, would
show hashes. The codec endpoint runs every decoded payload through
:class:`PromptExpander`, which adds what the worker sent to the model next to the
references, and leaves every other payload untouched.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError
from temporalio.api.common.v1 import Payload

from ._protocol import ModelRequest
from .errors import ConfigError, TranscriptEntryMissing
from .transcripts import TranscriptStore, load_prompt, load_tools

__all__ = ["EXPANDED_FIELDS", "PromptExpander"]

PROMPT_FIELD = "prompt"
"""The messages the model was sent, in order."""
TOOLS_FIELD = "tools_offered"
"""The tools the model was offered, as the model saw them (name, description, schema)."""
SOURCE_FIELD = "expanded_by"
"""Says that the fields above are not in the history and where they come from."""
ERROR_FIELD = "prompt_error"
"""Why the prompt could not be rebuilt (the payload is otherwise unchanged)."""
EXPANDED_FIELDS = (PROMPT_FIELD, TOOLS_FIELD, SOURCE_FIELD, ERROR_FIELD)

_JSON_ENCODING = b"json/plain"
# The fields only a linear-history model call input has together: a cheap first test
# before the payload is validated as a ModelRequest. (Not ``transcript_ref``: a first
# call's is None, which ratchet's data converter leaves out.)
_SHAPE = frozenset({"appended", "linear", "turn", "model", "agent"})
_SOURCE = (
    "ratchet's codec endpoint: 'prompt' and 'tools_offered' are not in the event history; "
    "they were rebuilt from the transcript store from transcript_ref, appended and tools_ref"
)

log = logging.getLogger("ratchet.codec")


class PromptExpander:
    """Adds the exact prompt (and tools) to decoded model-call inputs.

    A payload is a model-call input when its encoding is ``json/plain`` and its data is
    a JSON object that validates as a linear-history ``ModelRequest``. Its original
    fields are all kept; ``prompt`` (the messages sent), ``tools_offered`` (when the
    call offered tools) and ``expanded_by`` (a note saying they are not in the history)
    are added in front, so they are what the Web UI shows first. When the store lacks
    an entry, ``prompt_error`` says which, and nothing else is added. Every other
    payload comes back as it was.

    Args:
        store: the transcript store the workers write (``RATCHET_TRANSCRIPT_STORE``).
    """

    def __init__(self, store: TranscriptStore) -> None:
        self.store = store

    def __repr__(self) -> str:
        return f"PromptExpander({self.store!r})"

    async def expand(self, payloads: Sequence[Payload]) -> list[Payload]:
        """Expand each model-call input; pass the other payloads through.

        Args:
            payloads: decoded (not encrypted) payloads; they are not modified.

        Returns:
            One payload for each input, in order.
        """
        return [await self._expand_one(p) for p in payloads]

    async def _expand_one(self, payload: Payload) -> Payload:
        found = _model_request(payload)
        if found is None:
            return payload
        original, request = found
        try:
            added = await self._prompt_fields(request)
        except TranscriptEntryMissing as e:
            added = {
                ERROR_FIELD: f"the transcript store ({self.store!r}) has no {e.kind} {e.entry}: "
                "point the codec endpoint at the workers' store (RATCHET_TRANSCRIPT_STORE), "
                "or the entry was cleaned up"
            }
        except (ConfigError, OSError) as e:
            added = {ERROR_FIELD: f"cannot read the transcript store: {e}"}
        except Exception as e:
            # The payload is still shown; the log has the details (a driver's message
            # may quote connection settings, so it stays out of the browser).
            log.exception("cannot expand a model call's prompt from %r", self.store)
            added = {
                ERROR_FIELD: f"cannot read the transcript store ({type(e).__name__}); "
                "see the codec endpoint's log"
            }
        expanded = Payload()
        expanded.CopyFrom(payload)
        expanded.data = json.dumps({**added, **original}).encode()
        return expanded

    async def _prompt_fields(self, request: ModelRequest) -> dict[str, Any]:
        prompt = await load_prompt(
            self.store, request.transcript_ref, request.appended, run_id="(codec endpoint)"
        )
        tools = list(request.tools)
        if not tools and request.tools_ref:
            tools = await load_tools(self.store, request.tools_ref, run_id="(codec endpoint)")
        fields: dict[str, Any] = {
            PROMPT_FIELD: [m.model_dump(mode="json", exclude_defaults=True) for m in prompt]
        }
        if tools:
            # What the provider renders of a tool; the rest of a ToolSpec (timeouts,
            # attempts) is ratchet's own and never reaches the model.
            fields[TOOLS_FIELD] = [
                {"name": t.name, "description": t.description, "parameters": t.parameters}
                for t in tools
            ]
        fields[SOURCE_FIELD] = _SOURCE
        return fields


def _model_request(payload: Payload) -> tuple[dict[str, Any], ModelRequest] | None:
    """The JSON object and the request, when ``payload`` is a linear model-call input."""
    if payload.metadata.get("encoding") != _JSON_ENCODING:
        return None
    try:
        value = json.loads(payload.data)
    except ValueError:
        return None
    if not isinstance(value, dict) or not value.keys() >= _SHAPE or value["linear"] is not True:
        return None
    if any(field in value for field in EXPANDED_FIELDS):
        return None  # expanded already (a payload decoded twice)
    try:
        return value, ModelRequest.model_validate(value)
    except ValidationError:
        return None
