"""API keys: random tokens shown once, kept only as hashes in a SQLite file.

A key is ``rk_`` and 32 random bytes (URL-safe base64). The store keeps its SHA-256,
never the key: a plain hash is enough for a secret of 256 random bits (nothing to
guess, so no slow hash is needed), and it lets a request's key be found by an indexed
lookup. Revoked keys stay listed, with the time they were revoked.
"""

from __future__ import annotations

import builtins
import hashlib
import os
import secrets
import sqlite3
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from ..errors import ConfigError
from ._roles import Role, check_role, check_tenant

__all__ = ["KEYS_ENV", "KEY_PREFIX", "ApiKey", "KeyStore", "default_keys_path"]

KEY_PREFIX = "rk_"
KEYS_ENV = "RATCHET_API_KEYS"
"""Environment variable naming the key store file (default: ``api-keys.sqlite`` in
ratchet's data directory)."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS api_keys (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    role TEXT NOT NULL,
    tenant TEXT,
    hash TEXT NOT NULL UNIQUE,
    created TEXT NOT NULL,
    revoked TEXT
)
"""
_COLUMNS = "id, name, role, tenant, created, revoked"


@dataclass(frozen=True)
class ApiKey:
    """A key as listed: everything but the secret."""

    id: str
    """Public id, for ``ratchet keys revoke ID``."""
    name: str
    """Who holds it; approvals it answers record this name."""
    role: Role
    tenant: str | None
    """The tenant whose runs alone it sees and starts (None: every run)."""
    created: datetime
    revoked: datetime | None = None


def default_keys_path() -> Path:
    """``$RATCHET_API_KEYS``, else ``api-keys.sqlite`` in ratchet's data directory."""
    if value := os.environ.get(KEYS_ENV):
        return Path(value).expanduser()
    from ..local._paths import data_dir

    return data_dir() / "api-keys.sqlite"


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _now() -> datetime:
    return datetime.now(UTC)


class KeyStore:
    """API keys in a SQLite file (created on first use).

    Args:
        path: the file (default: :func:`default_keys_path`).
    """

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path is not None else default_keys_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute(_SCHEMA)
        # Owner-only: the hashes do not open anything, but the names and roles are private.
        self.path.chmod(0o600)

    def create(self, name: str, role: str, tenant: str | None = None) -> tuple[ApiKey, str]:
        """Make a key; returns it and its secret, which is never shown again.

        Raises:
            ConfigError: an empty name, an unknown role or a malformed tenant.
        """
        if not name.strip() or len(name) > 200:
            raise ConfigError("a key needs a name (1-200 characters), e.g. --name alice")
        checked = check_role(role)
        if tenant is not None:
            check_tenant(tenant)
        secret = KEY_PREFIX + secrets.token_urlsafe(32)
        key = ApiKey(
            id=secrets.token_hex(6), name=name, role=checked, tenant=tenant, created=_now()
        )
        with self._lock:
            self._db.execute(
                f"INSERT INTO api_keys ({_COLUMNS}, hash) VALUES (?, ?, ?, ?, ?, NULL, ?)",
                (key.id, name, checked, tenant, key.created.isoformat(), _hash(secret)),
            )
        return key, secret

    def verify(self, secret: str) -> ApiKey | None:
        """The live key with this secret, or None."""
        if not secret.startswith(KEY_PREFIX):
            return None
        key = self._one("hash = ?", _hash(secret))
        return key if key is not None and key.revoked is None else None

    def get(self, key_id: str) -> ApiKey | None:
        """The key with this id, revoked or not."""
        return self._one("id = ?", key_id)

    def list(self) -> builtins.list[ApiKey]:
        """Every key, oldest first."""
        with self._lock:
            rows = self._db.execute(
                f"SELECT {_COLUMNS} FROM api_keys ORDER BY created, id"
            ).fetchall()
        return [_key(row) for row in rows]

    def revoke(self, key_id: str) -> ApiKey | None:
        """Revoke a key (it stops working at once); None if no key has this id."""
        with self._lock:
            self._db.execute(
                "UPDATE api_keys SET revoked = ? WHERE id = ? AND revoked IS NULL",
                (_now().isoformat(), key_id),
            )
        return self.get(key_id)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _one(self, where: str, value: str) -> ApiKey | None:
        with self._lock:
            row = self._db.execute(
                f"SELECT {_COLUMNS} FROM api_keys WHERE {where}", (value,)
            ).fetchone()
        return _key(row) if row else None

    def __repr__(self) -> str:
        return f"KeyStore({str(self.path)!r})"


def _key(row: tuple[str, str, str, str | None, str, str | None]) -> ApiKey:
    key_id, name, role, tenant, created, revoked = row
    return ApiKey(
        id=key_id,
        name=name,
        role=check_role(role),
        tenant=tenant,
        created=datetime.fromisoformat(created),
        revoked=datetime.fromisoformat(revoked) if revoked else None,
    )
