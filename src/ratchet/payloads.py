"""Large payloads: stored outside the event history through the SDK's external storage.

Temporal rejects payloads over 2 MB. A payload above a threshold (512 KB by default)
is written to external storage by the data converter, and the history keeps a small
reference (:class:`temporalio.converter.ExternalStorage`, a claim check). Every
worker and client of a namespace must be able to read what the others wrote:

- embedded default: :class:`LocalFileStorageDriver`, files in ratchet's data
  directory (one machine);
- production: an S3 bucket (or an S3-compatible store) through the SDK's S3 driver,
  ``temporalio.contrib.aws.s3driver.S3StorageDriver`` (``pip install 'ratchet[s3]'``):
  ``RATCHET_PAYLOAD_STORE=s3://BUCKET`` (:func:`s3_payload_storage`), or any driver
  passed as ``connect(external_storage=...)``.

``RATCHET_PAYLOAD_STORE`` chooses for :func:`ratchet.connect`, so also for every
``ratchet`` command and ``ratchet worker``: unset means the local files, ``off``
disables external storage, ``s3://BUCKET`` selects the bucket, a path selects
another directory.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import re
from collections.abc import AsyncGenerator, Mapping, Sequence
from pathlib import Path
from typing import Any

from temporalio.api.common.v1 import Payload
from temporalio.contrib.aws.s3driver import S3StorageDriver, S3StorageDriverClient
from temporalio.converter import (
    ExternalStorage,
    StorageDriver,
    StorageDriverClaim,
    StorageDriverRetrieveContext,
    StorageDriverStoreContext,
)

from .errors import ConfigError

__all__ = [
    "DEFAULT_THRESHOLD",
    "INLINE_LIMIT",
    "LocalFileStorageDriver",
    "external_storage_from_env",
    "local_payload_storage",
    "s3_payload_storage",
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


# S3's bucket naming rules (the common subset): 3-63 of a-z, 0-9, '.', '-'.
_BUCKET_RE = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")


# The bucket check at connect() is bounded: an S3 endpoint that drops packets must
# not hang every command for botocore's minutes of connect timeouts and retries.
_CHECK_SECONDS = 15.0


class _AioBoto3Client(S3StorageDriverClient):
    """aioboto3's S3 client, opened on first use, closed when its event loop ends.

    The client belongs to an event loop, and ``connect()`` builds the converter
    before any loop work; so it is opened lazily, once per loop (a script calling
    ``asyncio.run`` twice gets a fresh one). Credentials, region and endpoint come
    from the standard AWS configuration: ``AWS_*`` variables or ``~/.aws``, and
    ``AWS_ENDPOINT_URL_S3`` for an S3-compatible store.
    """

    def __init__(self) -> None:
        self._opened: dict[asyncio.AbstractEventLoop, asyncio.Task[tuple[Any, Any]]] = {}

    async def _clients(self) -> tuple[Any, S3StorageDriverClient]:
        """aioboto3's client of the running loop, and the driver's wrapper of it."""
        loop = asyncio.get_running_loop()
        task = self._opened.get(loop)
        if task is None or (task.done() and (task.cancelled() or task.exception())):
            # Never opened here, or opening failed (say, a credentials blip): try
            # again rather than fail every payload until the process restarts. One
            # task per loop, so concurrent first calls share one client.
            self._opened = {known: t for known, t in self._opened.items() if not known.is_closed()}
            task = self._opened[loop] = loop.create_task(self._open())
        return await asyncio.shield(task)

    @staticmethod
    async def _open() -> tuple[Any, S3StorageDriverClient]:
        import aioboto3
        from temporalio.contrib.aws.s3driver.aioboto3 import new_aioboto3_client

        context = aioboto3.Session().client("s3")
        raw = await context.__aenter__()
        # Closed when the loop ends: asyncio.run (and so every ratchet command and
        # worker) finalizes live async generators before closing its loop, so the
        # HTTP session is closed then, instead of warning "Unclosed client session".
        closer = _close_at_loop_end(context)
        await closer.__anext__()
        _LOOP_CLOSERS.append(closer)
        return raw, new_aioboto3_client(raw)

    async def put_object(self, *, bucket: str, key: str, data: bytes) -> None:
        await (await self._clients())[1].put_object(bucket=bucket, key=key, data=data)

    async def object_exists(self, *, bucket: str, key: str) -> bool:
        return await (await self._clients())[1].object_exists(bucket=bucket, key=key)

    async def get_object(self, *, bucket: str, key: str) -> bytes:
        return await (await self._clients())[1].get_object(bucket=bucket, key=key)

    def describe(self) -> Mapping[str, str]:
        # Shown in the driver's errors: the region (from the open client) and the
        # endpoint are what is most often wrong.
        details: dict[str, str] = {}
        for task in self._opened.values():
            if task.done() and not task.cancelled() and task.exception() is None:
                details.update(task.result()[1].describe())
                break
        endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        if endpoint:
            details["endpoint"] = endpoint
        return details

    async def check_bucket(self, bucket: str) -> None:
        """Raise ConfigError unless ``bucket`` can be reached (a HEAD request)."""
        from botocore.exceptions import BotoCoreError, ClientError

        where = f"{PAYLOAD_STORE_ENV}=s3://{bucket}"
        check = "Check the AWS credentials, region and AWS_ENDPOINT_URL_S3"
        try:
            raw, _ = await self._clients()
            await asyncio.wait_for(raw.head_bucket(Bucket=bucket), _CHECK_SECONDS)
        except ClientError as e:
            code = str(e.response.get("Error", {}).get("Code", "?"))
            if code in ("404", "NoSuchBucket"):
                raise ConfigError(f"{where}: the bucket does not exist. Create it. {check}.") from e
            raise ConfigError(f"{where}: S3 refused the bucket check ({code}). {check}.") from e
        except TimeoutError as e:
            raise ConfigError(
                f"{where}: S3 did not answer within {_CHECK_SECONDS:g} s. {check}, or set "
                f"{PAYLOAD_STORE_ENV}=off for commands that read no large payloads."
            ) from e
        except (BotoCoreError, ValueError) as e:  # ValueError: a malformed endpoint URL
            raise ConfigError(f"{where}: the S3 check failed ({e}). {check}.") from e


# Keeps the closers alive until their loop finalizes them.
_LOOP_CLOSERS: list[AsyncGenerator[None, None]] = []


async def _close_at_loop_end(context: Any) -> AsyncGenerator[None, None]:
    try:
        yield
    finally:
        with contextlib.suppress(Exception):
            await context.__aexit__(None, None, None)


class _BucketDriver(S3StorageDriver):
    """The SDK's S3 driver on one bucket, which it can check before first use."""

    def __init__(self, bucket: str) -> None:
        self._s3 = _AioBoto3Client()
        self.bucket_name = bucket
        super().__init__(client=self._s3, bucket=bucket)

    async def check(self) -> None:
        await self._s3.check_bucket(self.bucket_name)


async def check_external_storage(storage: ExternalStorage) -> None:
    """Fail early, saying what to do, when an S3 bucket given by name is unusable.

    Raises:
        ConfigError: the bucket does not exist, refuses the credentials, or S3 is
            unreachable.
    """
    for driver in storage.drivers:
        if isinstance(driver, _BucketDriver):
            await driver.check()


def s3_payload_storage(bucket: str, *, threshold: int = DEFAULT_THRESHOLD) -> ExternalStorage:
    """External storage in the S3 bucket ``bucket``, through the SDK's S3 driver.

    Credentials, region and endpoint come from the standard AWS configuration
    (``AWS_*`` variables, ``~/.aws``); ``AWS_ENDPOINT_URL_S3`` points it at an
    S3-compatible store. Needs ``pip install 'ratchet[s3]'``.

    Raises:
        ConfigError: a malformed bucket name, or aioboto3 is not installed.
    """
    if not _BUCKET_RE.fullmatch(bucket) or ".." in bucket:
        raise ConfigError(
            f"bad S3 bucket name {bucket!r}: 3-63 lower-case letters, digits, '.' and '-' "
            "(a bucket only: the store chooses the keys), e.g. s3://my-payloads"
        )
    try:
        import aioboto3  # noqa: F401  (only checked here; opened on first use)
    except ImportError as e:
        raise ConfigError("S3 payload storage needs aioboto3: pip install 'ratchet[s3]'") from e
    return ExternalStorage(drivers=[_BucketDriver(bucket)], payload_size_threshold=threshold)


def external_storage_from_env() -> ExternalStorage | None:
    """What ``RATCHET_PAYLOAD_STORE`` selects (see the module docstring).

    Raises:
        ConfigError: ``s3://`` with a malformed bucket name, or without aioboto3.
    """
    value = os.environ.get(PAYLOAD_STORE_ENV, "").strip()
    if value.lower() == "off":
        return None
    if value.lower().startswith("s3://"):
        return s3_payload_storage(value[len("s3://") :].rstrip("/"))
    return local_payload_storage(value or None)


def describe_storage(storage: ExternalStorage | None) -> str:
    """Where large payloads go, in a few words (for ``ratchet worker``'s start line)."""
    if storage is None:
        return f"large payloads stay in the history (up to {INLINE_LIMIT:,} bytes)"
    places = []
    for driver in storage.drivers:
        if isinstance(driver, LocalFileStorageDriver):
            places.append(str(driver.directory))
        elif isinstance(driver, _BucketDriver):
            places.append(f"s3://{driver.bucket_name}")
        else:
            places.append(driver.name())
    over = f"{storage.payload_size_threshold:,}"
    return f"payloads over {over} bytes go to {', '.join(places)}"


def payload_limit(storage: ExternalStorage | None) -> int | None:
    """The largest payload a worker can hand to Temporal (None: no known limit)."""
    if storage is None:
        return INLINE_LIMIT
    limits = [d.max_payload_bytes for d in storage.drivers if isinstance(d, LocalFileStorageDriver)]
    return max(limits) if len(limits) == len(storage.drivers) else None
