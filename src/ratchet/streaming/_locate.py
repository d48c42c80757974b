"""Which delta store goes with a transcript store: the same database, or a sibling file."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from ..transcripts import (
    PostgresTranscriptStore,
    SQLiteTranscriptStore,
    TranscriptStore,
    store_from_url,
)
from ._postgres import PostgresDeltaStore
from ._sqlite import SQLiteDeltaStore
from ._store import DeltaStore

__all__ = ["default_delta_store", "delta_store_for", "delta_store_from_url"]

_shared: dict[str, DeltaStore] = {}
_shared_lock = threading.Lock()


def _sibling(path: Path) -> Path:
    return path.with_name(f"{path.stem}-deltas.sqlite")


def delta_store_for(store: TranscriptStore) -> DeltaStore | None:
    """The delta store beside a transcript store: ``<name>-deltas.sqlite`` next to a
    SQLite file (the churn of deltas stays out of the transcripts), or the same
    PostgreSQL database. None for a store of another kind: its runs do not stream."""
    if isinstance(store, SQLiteTranscriptStore):
        return _cached(str(_sibling(store.path)), lambda: SQLiteDeltaStore(_sibling(store.path)))
    if isinstance(store, PostgresTranscriptStore):
        return _cached(store.dsn, lambda: PostgresDeltaStore(store.dsn))
    return None


def delta_store_from_url(url: str | None) -> DeltaStore | None:
    """The delta store for a transcript store URL (``sqlite:///...``, ``postgresql://...``;
    None or empty: the embedded default), shared by everything in this process."""
    if url and url.startswith("sqlite:///"):
        path = Path(url[len("sqlite:///") :])
        return _cached(str(_sibling(path)), lambda: SQLiteDeltaStore(_sibling(path)))
    if url and url.startswith(("postgresql://", "postgres://")):
        return _cached(url, lambda: PostgresDeltaStore(url))
    if not url:
        from ..local._paths import data_dir

        path = data_dir() / "transcripts.sqlite"
        return _cached(str(_sibling(path)), lambda: SQLiteDeltaStore(_sibling(path)))
    store_from_url(url)  # raises the ConfigError that names the supported URLs
    return None


def default_delta_store() -> DeltaStore | None:
    """The delta store of this process's transcript store: ``RATCHET_TRANSCRIPT_STORE``,
    else the embedded default (what workers use when not told otherwise)."""
    return delta_store_from_url(os.environ.get("RATCHET_TRANSCRIPT_STORE"))


def _cached(key: str, make: object) -> DeltaStore:
    # One store per database per process: subscribers share its connections and poller.
    with _shared_lock:
        store = _shared.get(key)
        if store is None:
            assert callable(make)
            store = make()
            assert isinstance(store, DeltaStore)
            _shared[key] = store
        return store
