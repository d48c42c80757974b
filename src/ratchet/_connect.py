"""Connecting to Temporal: one place that reads envconfig and picks the data converter."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Sequence
from typing import Any, Literal

from temporalio.client import Client, Interceptor
from temporalio.converter import DataConverter, ExternalStorage, PayloadCodec
from temporalio.envconfig import ClientConfig
from temporalio.runtime import Runtime

from ._converter import DATA_CONVERTER
from .errors import ConfigError, ConnectionFailed

__all__ = ["DEFAULT_ADDRESS", "connect", "data_converter"]

DEFAULT_ADDRESS = "127.0.0.1:7233"
_STARTING_GRACE_SECONDS = 15.0


async def connect(
    address: str | None = None,
    *,
    namespace: str | None = None,
    profile: str | None = None,
    interceptors: Sequence[Interceptor] = (),
    runtime: Runtime | None = None,
    codec: PayloadCodec | None = None,
    external_storage: ExternalStorage | Literal["env"] | None = "env",
) -> Client:
    """Connect with ratchet's data converter.

    Settings come from ``temporalio.envconfig`` (``TEMPORAL_ADDRESS``,
    ``TEMPORAL_NAMESPACE``, ``TEMPORAL_API_KEY``, TLS settings, ``temporal.toml``
    profiles), so the same code reaches the embedded dev server, a self-hosted
    cluster or Temporal Cloud. Explicit arguments win over the environment.

    ``interceptors`` (e.g. :func:`ratchet.telemetry.tracing_interceptor`) apply to the
    client and to every worker built on it; ``runtime`` (e.g.
    :func:`ratchet.telemetry.metrics_runtime`) is the Temporal runtime, which carries
    the metrics configuration.

    ``codec`` (e.g. :class:`ratchet.codec.AesGcmCodec`) encodes every payload; without
    it, payloads are encrypted when ``RATCHET_ENCRYPTION_KEYS`` or
    ``RATCHET_ENCRYPTION_KEYS_FILE`` holds keys (see :mod:`ratchet.codec`), so every
    worker and client built here encrypts and decrypts alike.

    ``external_storage`` keeps payloads above a threshold out of the event history
    (see :mod:`ratchet.payloads`); by default ``RATCHET_PAYLOAD_STORE`` decides, and
    unset means local files in ratchet's data directory, ``s3://BUCKET`` an S3 bucket
    (checked here). Or pass any driver; None turns it off.

    Raises:
        ConnectionFailed: the server is unreachable; the message says what to do.
        ConfigError: the address or the encryption keys are malformed, or the S3
            bucket of ``RATCHET_PAYLOAD_STORE`` is unusable.
    """
    converter = await data_converter(codec=codec, external_storage=external_storage)
    if address and "://" in address:
        raise ConfigError(f"bad Temporal address {address!r}: use host:port, e.g. 127.0.0.1:7233")
    try:
        config: dict[str, Any] = dict(ClientConfig.load_client_connect_config(profile=profile))
    except Exception as e:  # a malformed temporal.toml or TEMPORAL_* variable
        raise ConfigError(f"cannot load the Temporal client configuration: {e}") from e
    if address:
        config["target_host"] = address
    if namespace:
        config["namespace"] = namespace
    config.setdefault("target_host", DEFAULT_ADDRESS)
    # A server that has just started accepts connections a moment before its frontend
    # is healthy; wait for it briefly instead of failing.
    deadline = time.monotonic() + _STARTING_GRACE_SECONDS
    while True:
        try:
            return await Client.connect(
                **config,
                data_converter=converter,
                interceptors=interceptors,
                runtime=runtime,
            )
        except (RuntimeError, ValueError) as e:
            if "not healthy yet" in str(e) and time.monotonic() < deadline:
                await asyncio.sleep(0.2)
                continue
            raise ConnectionFailed(
                f"cannot reach the Temporal server at {config['target_host']}: "
                f"{_first_line(e)}. Start the embedded one with `ratchet up`, "
                "or set TEMPORAL_ADDRESS."
            ) from e


async def data_converter(
    *,
    codec: PayloadCodec | None = None,
    external_storage: ExternalStorage | Literal["env"] | None = "env",
) -> DataConverter:
    """The data converter :func:`connect` gives its client (arguments as there).

    For programs that connect by other means, e.g. Temporal's Lambda integration
    (:mod:`ratchet.serverless`).

    Raises:
        ConfigError: the encryption keys are malformed, or the S3 bucket of
            ``RATCHET_PAYLOAD_STORE`` is unusable.
    """
    converter = _data_converter(codec)
    if external_storage == "env":
        from .payloads import external_storage_from_env

        external_storage = external_storage_from_env()
    if external_storage is not None:
        from .payloads import check_external_storage

        # An S3 bucket given by name is checked now, not at the first large payload,
        # deep inside a run.
        await check_external_storage(external_storage)
        converter = dataclasses.replace(converter, external_storage=external_storage)
    return converter


def _data_converter(codec: PayloadCodec | None) -> DataConverter:
    # Imported here: `cryptography` must stay out of the workflow sandbox's imports.
    from .codec import codec_from_env, encrypted_converter

    codec = codec if codec is not None else codec_from_env()
    return DATA_CONVERTER if codec is None else encrypted_converter(codec)


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    for known in ("Connection refused", "timed out", "dns error", "certificate"):
        if known.lower() in text.lower():
            return known.lower()
    return text.splitlines()[0] if text else type(e).__name__
