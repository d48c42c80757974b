"""Where ratchet keeps its local state (databases, logs) and caches (built binaries)."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

__all__ = ["cache_dir", "data_dir"]

DATA_DIR_ENV = "RATCHET_DATA_DIR"
CACHE_DIR_ENV = "RATCHET_CACHE_DIR"


def _resolve(env_var: str, default: str) -> Path:
    value = os.environ.get(env_var)
    path = Path(value).expanduser() if value else Path(default)
    path.mkdir(parents=True, exist_ok=True)
    return path


def data_dir() -> Path:
    """Return the directory for ratchet's persistent local data, creating it if needed.

    Holds the embedded Temporal server's SQLite file, service logs and the
    services state file. Data here is valuable (workflow histories), unlike the
    cache.

    Returns:
        ``$RATCHET_DATA_DIR`` if set, else ``platformdirs.user_data_dir("ratchet")``.
    """
    return _resolve(DATA_DIR_ENV, platformdirs.user_data_dir("ratchet"))


def cache_dir() -> Path:
    """Return the directory for ratchet's rebuildable caches, creating it if needed.

    Holds the ``llama-server`` binary built from source; deleting it only costs
    a rebuild.

    Returns:
        ``$RATCHET_CACHE_DIR`` if set, else ``platformdirs.user_cache_dir("ratchet")``.
    """
    return _resolve(CACHE_DIR_ENV, platformdirs.user_cache_dir("ratchet"))
