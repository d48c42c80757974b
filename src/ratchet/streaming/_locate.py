"""Which delta store goes with a transcript store: the same database, or a sibling file."""

from __future__ import annotations

import os
import threading
from datetime import timedelta
from pathlib import Path

from ..errors import ConfigError
from ..transcripts import (
    PostgresTranscriptStore,
    SQLiteTranscriptStore,
    TranscriptStore,
    store_from_url,
)
from ._postgres import PostgresDeltaStore
from ._sqlite import SQLiteDeltaStore
from ._store import DEFAULT_RETENTION, DeltaStore

__all__ = ["RETENTION_ENV", "default_delta_store", "delta_store_for", "delta_store_from_url"]

RETENTION_ENV = "RATCHET_STREAM_RETENTION_SECONDS"
"""Seconds a delta is kept after it is written (default 3600), for the stores made here."""

_shared: dict[str, DeltaStore] = {}
_shared_lock = threading.Lock()


def _sibling(path: Path) -> Path:
    return path.with_name(f"{path.stem}-deltas.sqlite")


def delta_store_for(store: TranscriptStore) -> DeltaStore | None:
    """The delta store beside a transcript store: ``<name>-deltas.sqlite`` next to a
    SQLite file (the churn of deltas stays out of the transcripts), or the same
    PostgreSQL database. None for a store of another kind: its runs do not stream."""
    if isinstance(store, SQLiteTranscriptStore):
        return _cached(
            str(_sibling(store.path)),
            lambda: SQLiteDeltaStore(_sibling(store.path), retention=_retention()),
        )
    if isinstance(store, PostgresTranscriptStore):
        return _cached(store.dsn, lambda: PostgresDeltaStore(store.dsn, retention=_retention()))
    return None


def delta_store_from_url(url: str | None) -> DeltaStore | None:
    """The delta store for a transcript store URL (``sqlite:///...``, ``postgresql://...``;
    None or empty: the embedded default), shared by everything in this process."""
    if url and url.startswith("sqlite:///"):
        path = Path(url[len("sqlite:///") :])
    elif url and url.startswith(("postgresql://", "postgres://")):
        return _cached(url, lambda: PostgresDeltaStore(url, retention=_retention()))
    elif not url:
        from ..local._paths import data_dir

        path = data_dir() / "transcripts.sqlite"
    else:
        store_from_url(url)  # raises the ConfigError that names the supported URLs
        return None
    return _cached(
        str(_sibling(path)), lambda: SQLiteDeltaStore(_sibling(path), retention=_retention())
    )


def default_delta_store() -> DeltaStore | None:
    """The delta store of this process's transcript store: ``RATCHET_TRANSCRIPT_STORE``,
    else the embedded default (what workers use when not told otherwise)."""
    return delta_store_from_url(os.environ.get("RATCHET_TRANSCRIPT_STORE"))


def _retention() -> timedelta:
    raw = os.environ.get(RETENTION_ENV, "").strip()
    if not raw:
        return DEFAULT_RETENTION
    try:
        seconds = float(raw)
    except ValueError:
        seconds = -1.0
    if seconds <= 0:
        raise ConfigError(
            f"{RETENTION_ENV}={raw!r}: give the seconds a streamed delta is kept, e.g. 3600"
        )
    return timedelta(seconds=seconds)


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
