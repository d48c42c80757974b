"""Streaming: a model call's reply reaches subscribers while it is written.

A streaming provider hands each piece of the reply (a :class:`Delta`) to the model
activity, which writes it to a :class:`DeltaStore`, a table beside the transcripts
(SQLite for the embedded default, PostgreSQL with ``LISTEN/NOTIFY`` across machines).
Subscribers tail it: :meth:`ratchet.RunHandle.events` yields ``token`` events, and
:meth:`ratchet.RunHandle.stream_text` the answer's text.

Deltas never enter the event history; the call's final message does, once, and is
authoritative. Deltas are kept for ``retention`` (default one hour) after they are
written, then pruned by the workers that write: only the history remains.
"""

from ._delta import CallKey, Delta, DeltaKind, DeltaSink, StoredDelta
from ._locate import RETENTION_ENV, default_delta_store, delta_store_for, delta_store_from_url
from ._postgres import PostgresDeltaStore
from ._sqlite import SQLiteDeltaStore
from ._store import DEFAULT_RETENTION, DeltaStore
from ._writer import DeltaWriter

__all__ = [
    "DEFAULT_RETENTION",
    "RETENTION_ENV",
    "CallKey",
    "Delta",
    "DeltaKind",
    "DeltaSink",
    "DeltaStore",
    "DeltaWriter",
    "PostgresDeltaStore",
    "SQLiteDeltaStore",
    "StoredDelta",
    "default_delta_store",
    "delta_store_for",
    "delta_store_from_url",
]
