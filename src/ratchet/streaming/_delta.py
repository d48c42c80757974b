"""A piece of a model's reply as it streams: what a provider emits, what a store keeps."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["CallKey", "Delta", "DeltaKind", "DeltaSink", "StoredDelta", "row_of", "stored_of"]

DeltaKind = Literal["text", "tool_arguments"]
"""``text``: a piece of the answer's text. ``tool_arguments``: a piece of a tool call's
JSON arguments (its id and name come with the call's first piece)."""


@dataclass(frozen=True)
class Delta:
    """One piece of a reply, in the order the provider streamed it."""

    text: str
    kind: DeltaKind = "text"
    tool_call_index: int | None = None
    """``tool_arguments`` only: which of the reply's tool calls (0, 1, ...)."""
    tool_call_id: str | None = None
    """``tool_arguments`` only: the call's id, when the provider has said it."""
    tool_name: str | None = None
    """``tool_arguments`` only: the tool's name, when the provider has said it."""


DeltaSink = Callable[[Delta], None]
"""Where a streaming provider hands each delta. It never blocks and never raises: the
deltas are queued and written by the model activity in the background."""


@dataclass(frozen=True)
class CallKey:
    """The model call a delta belongs to: one attempt of one activity of one execution.

    ``execution`` is the Temporal run id of the workflow execution (unique even when a
    run id is reused), ``call_id`` the model activity's id (``turn2-model``)."""

    execution: str
    call_id: str


@dataclass(frozen=True)
class StoredDelta:
    """A delta as a :class:`~ratchet.streaming.DeltaStore` keeps it."""

    key: CallKey
    attempt: int
    """The activity attempt that streamed it (1, 2, ...): a retry streams again under
    the next attempt, and supersedes the earlier attempt's pieces."""
    offset: int
    """Position within the attempt, from 0."""
    delta: Delta
    created: float
    """When the worker wrote it, in seconds since the epoch."""


def row_of(
    run_id: str, key: CallKey, attempt: int, offset: int, delta: Delta, created: float
) -> tuple[Any, ...]:
    """A delta as a row of the ``ratchet_deltas`` table (every backend's column order)."""
    return (
        key.execution,
        key.call_id,
        attempt,
        offset,
        run_id,
        delta.kind,
        delta.text,
        delta.tool_call_index,
        delta.tool_call_id,
        delta.tool_name,
        created,
    )


def stored_of(key: CallKey, row: Sequence[Any]) -> StoredDelta:
    """A row read as ``attempt, pos, kind, body, tool_index, tool_id, tool_name, created``."""
    attempt, pos, kind, body, tool_index, tool_id, tool_name, created = row
    return StoredDelta(
        key=key,
        attempt=attempt,
        offset=pos,
        delta=Delta(
            text=body,
            kind=kind,
            tool_call_index=tool_index,
            tool_call_id=tool_id,
            tool_name=tool_name,
        ),
        created=float(created),
    )
