"""Large payloads: stored outside the event history through the SDK's external storage.

Temporal rejects payloads over 2 MB. A payload above a threshold (512 KB by default)
is written to external storage by the data converter, and the history keeps a small
reference (:class:`temporalio.converter.ExternalStorage`, a claim check). Every
worker and client of a namespace must be able to read what the others wrote:

- embedded default: :class:`LocalFileStorageDriver`, files in ratchet's data
  directory (one machine);
- production: the SDK's S3 driver,
  ``temporalio.contrib.aws.s3driver.S3StorageDriver`` (``pip install
  'temporalio[aioboto3]'``), passed as ``connect(external_storage=...)``.

``RATCHET_PAYLOAD_STORE`` chooses for :func:`ratchet.connect`: unset means the local
files, ``off`` disables external storage, a path selects another directory.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

from temporalio.api.common.v1 import Payload
from temporalio.converter import (
    ExternalStorage,
    StorageDriver,
    StorageDriverClaim,
    StorageDriverRetrieveContext,
    StorageDriverStoreContext,
)

__all__ = [
    "DEFAULT_THRESHOLD",
    "INLINE_LIMIT",
    "LocalFileStorageDriver",
    "external_storage_from_env",
    "local_payload_storage",
]

DEFAULT_THRESHOLD = 512 * 1024
"""Payloads larger than this go to external storage (well under Temporal's 2 MB)."""

INLINE_LIMIT = 1_500_000
"""Without external storage, a payload above this fails fast (Temporal's limit is 2 MB,
and a payload travels inside a larger gRPC message)."""

PAYLOAD_STORE_ENV = "RATCHET_PAYLOAD_STORE"


class LocalFileStorageDriver(StorageDriver):
    """Payloads as files named by their SHA-256 in one directory (the embedded default).

    Args:
        directory: where the files go (created when missing).
        max_payload_bytes: a larger payload is refused with a clear error.
        name: the driver name recorded in references (keep it stable).
    """

    def __init__(
        self,
        directory: str | Path,
        *,
        max_payload_bytes: int = 256 * 1024 * 1024,
        name: str = "ratchet.local-files",
    ) -> None:
        self.directory = Path(directory)
        self.max_payload_bytes = max_payload_bytes
        self._name = name

    def name(self) -> str:
        return self._name

    def type(self) -> str:
        return "ratchet.local-files"

    async def store(
        self, context: StorageDriverStoreContext, payloads: Sequence[Payload]
    ) -> list[StorageDriverClaim]:
        return await asyncio.to_thread(self._store, payloads)

    def _store(self, payloads: Sequence[Payload]) -> list[StorageDriverClaim]:
        self.directory.mkdir(parents=True, exist_ok=True)
        claims = []
        for payload in payloads:
            data = payload.SerializeToString()
            if len(data) > self.max_payload_bytes:
                raise ValueError(
                    f"a payload of {len(data):,} bytes is over the local payload store's "
                    f"limit of {self.max_payload_bytes:,} bytes"
                )
            key = hashlib.sha256(data).hexdigest()
            path = self.directory / key
            if not path.exists():  # content-addressed: an existing file holds the same bytes
                tmp = path.with_suffix(f".{os.getpid()}.tmp")
                tmp.write_bytes(data)
                tmp.replace(path)
            claims.append(StorageDriverClaim(claim_data={"sha256": key}))
        return claims

    async def retrieve(
        self, context: StorageDriverRetrieveContext, claims: Sequence[StorageDriverClaim]
    ) -> list[Payload]:
        return await asyncio.to_thread(self._retrieve, claims)

    def _retrieve(self, claims: Sequence[StorageDriverClaim]) -> list[Payload]:
        out = []
        for claim in claims:
            path = self.directory / claim.claim_data["sha256"]
            try:
                out.append(Payload.FromString(path.read_bytes()))
            except FileNotFoundError as e:
                raise FileNotFoundError(
                    f"payload {path.name} is missing from the local payload store "
                    f"{self.directory}: every worker and client must share it"
                ) from e
        return out


def local_payload_storage(
    directory: str | Path | None = None, *, threshold: int = DEFAULT_THRESHOLD
) -> ExternalStorage:
    """External storage in local files (default: ``payloads/`` in ratchet's data directory)."""
    if directory is None:
        from .local._paths import data_dir

        directory = data_dir() / "payloads"
    return ExternalStorage(
        drivers=[LocalFileStorageDriver(directory)], payload_size_threshold=threshold
    )


def external_storage_from_env() -> ExternalStorage | None:
    """What ``RATCHET_PAYLOAD_STORE`` selects (see the module docstring)."""
    value = os.environ.get(PAYLOAD_STORE_ENV, "").strip()
    if value.lower() == "off":
        return None
    return local_payload_storage(value or None)


def payload_limit(storage: ExternalStorage | None) -> int | None:
    """The largest payload a worker can hand to Temporal (None: no known limit)."""
    if storage is None:
        return INLINE_LIMIT
    limits = [d.max_payload_bytes for d in storage.drivers if isinstance(d, LocalFileStorageDriver)]
    return max(limits) if len(limits) == len(storage.drivers) else None
