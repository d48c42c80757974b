"""Opt-in payload encryption: an AES-256-GCM payload codec, its keys and a codec server.

With encryption on, every payload the event history holds (prompts, messages,
tool arguments and results, run results, memos, activity and run summaries, and
the message and stack trace of failures) is encrypted by the client or worker
before it leaves the process; the Temporal server only ever stores ciphertext.

Keys come from the environment (see :func:`codec_from_env`)::

    RATCHET_ENCRYPTION_KEYS="k2:<base64 32 bytes>,k1:<base64 32 bytes>"
    RATCHET_ENCRYPTION_KEYS_FILE=/run/secrets/ratchet-keys   # one id:key per line

The first key is the active one, used for new payloads; the others only decrypt,
so a key is rotated by putting a new one first and keeping the old one after it
for as long as histories written with it are read. :func:`ratchet.connect` (and
so every worker, ``AgentClient`` and CLI command) encrypts whenever keys are
configured. A :class:`CodecServer` lets the Temporal Web UI (or
``temporal --codec-endpoint``) decode payloads for people who hold a token, and
shows each model call's input with its transcript references expanded into the
exact prompt (with or without encryption).
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import hmac
import ipaddress
import json
import logging
import os
import re
import threading
from collections.abc import Coroutine, Mapping, Sequence
from concurrent.futures import TimeoutError as FutureTimeout
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, cast

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from google.protobuf import json_format
from temporalio.api.common.v1 import Payload, Payloads
from temporalio.api.failure.v1 import Failure
from temporalio.converter import (
    DataConverter,
    DefaultFailureConverterWithEncodedAttributes,
    PayloadCodec,
)

from ._converter import DATA_CONVERTER
from ._prompt_expansion import PromptExpander
from .errors import ConfigError, RatchetError
from .transcripts import TranscriptStore

__all__ = [
    "DEFAULT_ORIGINS",
    "ENCODING",
    "KEYS_ENV",
    "KEYS_FILE_ENV",
    "KEY_ID_METADATA",
    "TOKEN_ENV",
    "AesGcmCodec",
    "CodecServer",
    "PayloadDecryptionError",
    "codec_from_env",
    "decrypt_failure",
    "encrypted_converter",
    "generate_key",
    "parse_keys",
]

ENCODING = "binary/encrypted"
"""The ``encoding`` metadata of an encrypted payload."""
KEY_ID_METADATA = "encryption-key-id"
"""The metadata entry naming the key that encrypted a payload."""
KEYS_ENV = "RATCHET_ENCRYPTION_KEYS"
"""``id:base64key`` entries separated by commas; the first is the active key."""
KEYS_FILE_ENV = "RATCHET_ENCRYPTION_KEYS_FILE"
"""A file with one ``id:base64key`` per line; the first is the active key."""
TOKEN_ENV = "RATCHET_CODEC_TOKEN"
"""The bearer token the codec server requires."""
DEFAULT_ORIGINS = ("http://127.0.0.1:8233", "http://localhost:8233")
"""The embedded Temporal Web UI, the codec server's default CORS origins."""

_KEY_BYTES = 32
_NONCE_BYTES = 12
_KEY_ID_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_GENERATE_HINT = "generate one with `ratchet codec-server --generate-key`"
_MAX_BODY_BYTES = 64 * 1024 * 1024
# A decode waits this long for the transcript store before answering 504.
_REQUEST_TIMEOUT_SECONDS = 60.0
_LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})

log = logging.getLogger("ratchet.codec")


class PayloadDecryptionError(RatchetError):
    """A payload cannot be decrypted: its key is not configured, or it is wrong or altered."""


class AesGcmCodec(PayloadCodec):
    """AES-256-GCM encryption of whole payloads, with key rotation by key id.

    :meth:`encode` replaces each payload by one with the metadata
    ``encoding: binary/encrypted`` and ``encryption-key-id: <active key id>``, whose
    data is a random 12-byte nonce followed by the AES-GCM ciphertext of the
    serialized original payload (its metadata included). The key id is bound as
    associated data, so a payload relabelled with another key id fails to decrypt.
    :meth:`decode` decrypts with the key the payload names and passes payloads
    that are not encrypted through unchanged, so histories written before
    encryption was turned on stay readable.

    Args:
        keys: key id → 32-byte key. Ids are letters, digits, ``.``, ``_`` or ``-``.
        active_key_id: the key that encrypts new payloads; the others only decrypt.

    Raises:
        ConfigError: a key id or key is invalid, or ``active_key_id`` is not in ``keys``.
    """

    def __init__(self, keys: Mapping[str, bytes], active_key_id: str) -> None:
        for key_id, key in keys.items():
            _check_key_id(key_id, "the codec's keys")
            if len(key) != _KEY_BYTES:
                raise ConfigError(
                    f"key {key_id!r} is {len(key)} bytes; AES-256-GCM needs {_KEY_BYTES} "
                    f"random bytes ({_GENERATE_HINT})"
                )
        if active_key_id not in keys:
            raise ConfigError(f"the active key {active_key_id!r} is not among the codec's keys")
        self._ciphers = {key_id: AESGCM(bytes(key)) for key_id, key in keys.items()}
        self._active = active_key_id

    @property
    def active_key_id(self) -> str:
        """The id of the key that encrypts new payloads."""
        return self._active

    @property
    def key_ids(self) -> list[str]:
        """Every configured key id, the active one first."""
        return [self._active, *(k for k in self._ciphers if k != self._active)]

    def __repr__(self) -> str:
        return f"AesGcmCodec(key_ids={self.key_ids!r}, active_key_id={self._active!r})"

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        """Encrypt each payload with the active key.

        Args:
            payloads: the payloads to encrypt; they are not modified.

        Returns:
            The encrypted payloads, one for each input.
        """
        return [self.encrypt(p) for p in payloads]

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        """Decrypt each encrypted payload; pass the others through.

        Args:
            payloads: the payloads to decrypt; they are not modified.

        Returns:
            The original payloads, one for each input.

        Raises:
            PayloadDecryptionError: a payload's key is not configured, or the key is
                wrong or the payload was altered.
        """
        return [self.decrypt(p) for p in payloads]

    def encrypt(self, payload: Payload) -> Payload:
        """Encrypt one payload with the active key (the synchronous form of :meth:`encode`).

        Args:
            payload: the payload to encrypt.

        Returns:
            The encrypted payload.
        """
        nonce = os.urandom(_NONCE_BYTES)
        key_id = self._active.encode()
        sealed = self._ciphers[self._active].encrypt(nonce, payload.SerializeToString(), key_id)
        return Payload(
            metadata={"encoding": ENCODING.encode(), KEY_ID_METADATA: key_id},
            data=nonce + sealed,
        )

    def decrypt(self, payload: Payload) -> Payload:
        """Decrypt one payload (the synchronous form of :meth:`decode`).

        Args:
            payload: an encrypted payload, or any other payload (returned as is).

        Returns:
            The original payload.

        Raises:
            PayloadDecryptionError: the payload's key is not configured, or the key is
                wrong or the payload was altered.
        """
        if payload.metadata.get("encoding") != ENCODING.encode():
            return payload
        raw_id = payload.metadata.get(KEY_ID_METADATA)
        if raw_id is None:
            raise PayloadDecryptionError(
                f"an encrypted payload has no {KEY_ID_METADATA!r} metadata: it was not "
                "written by ratchet's codec"
            )
        key_id = raw_id.decode("utf-8", "replace")
        cipher = self._ciphers.get(key_id)
        if cipher is None:
            raise PayloadDecryptionError(
                f"a payload is encrypted with key {key_id!r}, which is not configured: add "
                f"'{key_id}:<base64 key>' to {KEYS_ENV} (or {KEYS_FILE_ENV}) after the "
                f"active key (configured: {', '.join(self.key_ids)})"
            )
        data = payload.data
        if len(data) < _NONCE_BYTES + 16:
            raise PayloadDecryptionError(f"a payload encrypted with key {key_id!r} is truncated")
        try:
            plain = cipher.decrypt(data[:_NONCE_BYTES], data[_NONCE_BYTES:], raw_id)
        except InvalidTag:
            raise PayloadDecryptionError(
                f"cannot decrypt a payload with key {key_id!r}: the configured key with that "
                "id is not the one that encrypted it, or the payload was altered"
            ) from None
        original = Payload()
        original.ParseFromString(plain)
        return original


def encrypted_converter(codec: PayloadCodec, *, encrypt_failures: bool = True) -> DataConverter:
    """ratchet's data converter (pydantic JSON) with ``codec`` applied to every payload.

    Use it for clients built without :func:`ratchet.connect`, e.g.
    ``Client.connect(address, data_converter=encrypted_converter(codec))``.

    Args:
        codec: the payload codec, usually an :class:`AesGcmCodec`.
        encrypt_failures: also move failure messages and stack traces into an
            encoded (so encrypted) payload, as they may quote prompts or arguments.

    Returns:
        The data converter.
    """
    converter = dataclasses.replace(DATA_CONVERTER, payload_codec=codec)
    if encrypt_failures:
        converter = dataclasses.replace(
            converter, failure_converter_class=DefaultFailureConverterWithEncodedAttributes
        )
    return converter


async def decrypt_failure(converter: DataConverter, failure: Failure) -> Failure:
    """A copy of a failure from a raw history, with its message and stack trace readable.

    With :func:`encrypted_converter` a failure's message and stack trace travel in an
    encrypted ``encoded_attributes`` payload and ``message`` says ``Encoded failure``;
    this decrypts them (and the failure's details) with ``converter``'s codec, for
    the failure and each of its causes. Other failures come back unchanged.

    Args:
        converter: the data converter of the client that read the history.
        failure: the failure, e.g. ``event.activity_task_failed_event_attributes.failure``.

    Returns:
        The decoded copy; ``failure`` itself is not modified.

    Raises:
        PayloadDecryptionError: the key that encrypted the failure is not configured.
    """
    decoded = Failure()
    decoded.CopyFrom(failure)
    if converter.payload_codec is not None:
        await converter.payload_codec.decode_failure(decoded)
    current: Failure | None = decoded
    while current is not None:
        if current.HasField("encoded_attributes"):
            attrs = converter.payload_converter.from_payloads([current.encoded_attributes])[0]
            if isinstance(attrs, dict):
                if isinstance(message := attrs.get("message"), str):
                    current.message = message
                if isinstance(stack_trace := attrs.get("stack_trace"), str):
                    current.stack_trace = stack_trace
                current.ClearField("encoded_attributes")
        current = current.cause if current.HasField("cause") else None
    return decoded


def generate_key() -> str:
    """A new random AES-256 key, base64-encoded: the part after ``id:`` in a key entry.

    Returns:
        44 characters of standard base64.
    """
    return base64.b64encode(os.urandom(_KEY_BYTES)).decode("ascii")


def parse_keys(text: str, *, source: str = KEYS_ENV) -> tuple[dict[str, bytes], str]:
    """Parse ``id:base64key`` entries, separated by commas or newlines.

    Blank entries and lines starting with ``#`` are skipped. Error messages name the
    entry and never show key material.

    Args:
        text: the entries; the first is the active key.
        source: where the text comes from, for error messages.

    Returns:
        The keys by id (in the order given) and the active key id.

    Raises:
        ConfigError: an entry is malformed, a key is not 32 bytes of base64, an id
            repeats, or there is no entry at all.
    """
    keys: dict[str, bytes] = {}
    entries = [e.strip() for line in text.splitlines() for e in line.split(",")]
    entries = [e for e in entries if e and not e.startswith("#")]
    for n, entry in enumerate(entries, 1):
        key_id, sep, encoded = (part.strip() for part in entry.partition(":"))
        if not sep or not key_id or not encoded:
            raise ConfigError(
                f"{source}: entry {n} is not 'id:base64key'; expected e.g. "
                f"'k2:<base64 key>,k1:<base64 key>' with the active key first ({_GENERATE_HINT})"
            )
        if not _KEY_ID_RE.match(key_id):
            # The id is not shown: a mangled entry may hold key material there.
            raise ConfigError(
                f"{source}: the key id of entry {n} is invalid: use 1-64 letters, digits, "
                "'.', '_' or '-'"
            )
        if key_id in keys:
            raise ConfigError(f"{source}: key id {key_id!r} appears twice; key ids must be unique")
        key = _b64decode(encoded)
        if key is None:
            raise ConfigError(f"{source}: key {key_id!r} is not valid base64 ({_GENERATE_HINT})")
        if len(key) != _KEY_BYTES:
            raise ConfigError(
                f"{source}: key {key_id!r} is {len(key)} bytes; AES-256-GCM needs {_KEY_BYTES} "
                f"random bytes, base64-encoded ({_GENERATE_HINT})"
            )
        keys[key_id] = key
    if not keys:
        raise ConfigError(
            f"{source} holds no key: give 'id:base64key' entries ({_GENERATE_HINT}), "
            "or unset it to turn encryption off"
        )
    return keys, next(iter(keys))


def codec_from_env(environ: Mapping[str, str] | None = None) -> AesGcmCodec | None:
    """The codec configured by ``RATCHET_ENCRYPTION_KEYS`` or ``RATCHET_ENCRYPTION_KEYS_FILE``.

    Set one of them, not both. A variable that is set but empty is an error, not
    "encryption off", so a missing secret never silently turns encryption off.

    Args:
        environ: the environment to read (default: ``os.environ``).

    Returns:
        The codec, or None when neither variable is set (encryption off).

    Raises:
        ConfigError: both are set, the file cannot be read, or the keys are malformed.
    """
    env = os.environ if environ is None else environ
    inline, path = env.get(KEYS_ENV), env.get(KEYS_FILE_ENV)
    if inline is not None and path is not None:
        raise ConfigError(f"both {KEYS_ENV} and {KEYS_FILE_ENV} are set: set only one")
    if inline is not None:
        keys, active = parse_keys(inline, source=KEYS_ENV)
    elif path is not None:
        if not path.strip():
            raise ConfigError(
                f"{KEYS_FILE_ENV} is set but empty: point it at a file of 'id:base64key' "
                "lines, or unset it to turn encryption off"
            )
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            reason = e.strerror if isinstance(e, OSError) and e.strerror else type(e).__name__
            raise ConfigError(f"cannot read {KEYS_FILE_ENV} ({path}): {reason}") from None
        keys, active = parse_keys(text, source=f"{KEYS_FILE_ENV} ({path})")
    else:
        return None
    return AesGcmCodec(keys, active)


def _b64decode(text: str) -> bytes | None:
    # Standard or URL-safe alphabet, padding optional.
    normalized = text.replace("-", "+").replace("_", "/")
    normalized += "=" * (-len(normalized) % 4)
    try:
        return base64.b64decode(normalized, validate=True)
    except ValueError:
        return None


def _check_key_id(key_id: str, source: str) -> None:
    if not _KEY_ID_RE.match(key_id):
        raise ConfigError(
            f"{source}: invalid key id {key_id!r}: use 1-64 letters, digits, '.', '_' or '-'"
        )


class CodecServer:
    """An HTTP codec server for the Temporal Web UI and CLI (``--codec-endpoint``).

    It implements Temporal's remote codec protocol: ``POST <endpoint>/encode`` and
    ``POST <endpoint>/decode`` take ``{"payloads": [...]}`` (payloads in protobuf
    JSON form, bytes base64-encoded) and answer in the same shape.

    ``/decode`` decrypts with ``codec`` and, given a ``transcript_store``, shows each
    model call's input as it was sent: its fields are kept and ``prompt`` (the
    messages), ``tools_offered`` and ``expanded_by`` (a note that they are not in the
    history) are added; every other payload comes back as it was. ``/encode`` never
    expands: it encrypts with ``codec``, or returns the payloads unchanged without one
    (the Web UI encodes what a person types into its forms, e.g. a signal's input).

    Requests must carry ``Authorization: Bearer <token>``; browsers may call it from
    ``origins`` only (CORS), and ``OPTIONS`` preflights are answered without a token.
    Without a token it answers only requests addressed (``Host``) to a loopback name
    or one of ``allowed_hosts``, so no web page reaches it through DNS rebinding.

    Args:
        codec: the codec to apply, usually from :func:`codec_from_env`; None when
            payloads are not encrypted (then ``/decode`` only expands prompts).
        token: the bearer token clients must send. None serves without
            authentication, which is allowed on a loopback ``host`` only.
        origins: the Web UI origins allowed to call it from a browser.
        host: the address to bind (default: loopback only).
        port: the port to bind; 0 picks a free one (see :attr:`url`).
        transcript_store: the workers' transcript store, to expand model-call inputs
            from; None shows them as recorded. The server does not close it.
        allowed_hosts: host names it also answers without a token, e.g. the public
            name an authenticating reverse proxy forwards in ``Host``.

    Raises:
        ConfigError: the token is empty, or None with a non-loopback host; there is
            neither a codec nor a store; the port cannot be bound.
    """

    def __init__(
        self,
        codec: PayloadCodec | None,
        *,
        token: str | None,
        origins: Sequence[str] = DEFAULT_ORIGINS,
        host: str = "127.0.0.1",
        port: int = 8888,
        transcript_store: TranscriptStore | None = None,
        allowed_hosts: Sequence[str] = (),
    ) -> None:
        if token is not None and not token.strip():
            raise ConfigError("the codec server's token is empty")
        if token is None and not _is_loopback(host):
            raise ConfigError(
                f"refusing to serve decrypted payloads without a token on {host}: set "
                f"{TOKEN_ENV}, or bind 127.0.0.1"
            )
        if codec is None and transcript_store is None:
            raise ConfigError(
                "the codec server has nothing to do: give it encryption keys, a transcript "
                "store to expand prompts from, or both"
            )
        expander = None if transcript_store is None else PromptExpander(transcript_store)
        try:
            self._httpd = _CodecHTTPServer(
                (host, port),
                _Decoder(codec, expander),
                token,
                {o.rstrip("/") for o in origins},
                # With a token, a rebound page cannot authenticate: any Host will do.
                hosts=None if token is not None else _LOOPBACK_NAMES | _host_names(allowed_hosts),
            )
        except OSError as e:
            raise ConfigError(
                f"the codec server cannot listen on {host}:{port}: {e.strerror or e}"
            ) from None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The server's base URL, e.g. ``http://127.0.0.1:8888``."""
        host, port = self._httpd.server_address[:2]
        shown = host.decode() if isinstance(host, bytes) else str(host)
        return f"http://{f'[{shown}]' if ':' in shown else shown}:{port}"

    def start(self) -> CodecServer:
        """Serve in a background thread; :meth:`stop` ends it.

        Returns:
            The server itself.
        """
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, name="ratchet-codec-server", daemon=True
        )
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve in the calling thread until :meth:`stop` is called from another thread."""
        try:
            self._httpd.serve_forever()
        finally:
            self._httpd.server_close()
            self._httpd.decoder.close()

    def stop(self) -> None:
        """Stop serving (when :meth:`start` started it) and close the socket."""
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join()
            self._thread = None
        self._httpd.server_close()
        self._httpd.decoder.close()

    def __enter__(self) -> CodecServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _host_names(hosts: Sequence[str]) -> frozenset[str]:
    return frozenset(h.strip().lower().strip("[]") for h in hosts if h.strip())


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _Decoder:
    """What ``/encode`` and ``/decode`` do, on one event loop for every request.

    Request threads hand their work to that loop: a transcript store's connections
    (Postgres) belong to the loop that opened them.
    """

    def __init__(self, codec: PayloadCodec | None, expander: PromptExpander | None) -> None:
        self.codec = codec
        self.expander = expander
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="ratchet-codec-loop", daemon=True
        )
        self._thread.start()

    def run(self, operation: str, payloads: Sequence[Payload]) -> list[Payload]:
        work = self._encode(payloads) if operation == "encode" else self._decode(payloads)
        return self._call(work)

    def _call(self, work: Coroutine[Any, Any, list[Payload]]) -> list[Payload]:
        future = asyncio.run_coroutine_threadsafe(work, self._loop)
        try:
            return future.result(_REQUEST_TIMEOUT_SECONDS)
        except FutureTimeout:
            future.cancel()
            raise

    async def _encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return list(payloads) if self.codec is None else await self.codec.encode(payloads)

    async def _decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        plain = list(payloads) if self.codec is None else await self.codec.decode(payloads)
        return plain if self.expander is None else await self.expander.expand(plain)

    def close(self) -> None:
        if self._loop.is_closed():
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()


class _CodecHTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self,
        address: tuple[str, int],
        decoder: _Decoder,
        token: str | None,
        origins: set[str],
        *,
        hosts: frozenset[str] | None,
    ) -> None:
        self.decoder = decoder
        self.token = token
        self.origins = origins
        self.hosts = hosts
        try:
            super().__init__(address, _CodecHandler)
        except OSError:
            decoder.close()
            raise


class _CodecHandler(BaseHTTPRequestHandler):
    server_version = "ratchet-codec"
    sys_version = ""
    protocol_version = "HTTP/1.1"

    @property
    def _config(self) -> _CodecHTTPServer:
        return cast(_CodecHTTPServer, self.server)

    def log_message(self, format: str, *args: Any) -> None:
        log.info("%s %s", self.address_string(), format % args)

    def do_OPTIONS(self) -> None:
        """CORS preflight: answered for allowed origins, without a token."""
        if not self._caller_allowed():
            return
        self.send_response(HTTPStatus.NO_CONTENT)
        self._cors_headers()
        self.send_header("Access-Control-Allow-Methods", "POST, OPTIONS")
        self.send_header("Access-Control-Allow-Headers", "Authorization, Content-Type, X-Namespace")
        self.send_header("Access-Control-Max-Age", "600")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_POST(self) -> None:
        """``/encode`` and ``/decode``."""
        if not self._caller_allowed():
            return
        if not self._authorized():
            self._send_json(
                HTTPStatus.UNAUTHORIZED,
                {"error": "missing or wrong 'Authorization: Bearer <token>'"},
                {"WWW-Authenticate": 'Bearer realm="ratchet-codec"'},
            )
            return
        path = self.path.split("?", 1)[0].rstrip("/")
        operation = path.rsplit("/", 1)[-1]
        if operation not in ("encode", "decode"):
            self._send_json(HTTPStatus.NOT_FOUND, {"error": "POST to /encode or /decode"})
            return
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            self._send_json(HTTPStatus.LENGTH_REQUIRED, {"error": "Content-Length is required"})
            return
        if length < 0 or length > _MAX_BODY_BYTES:
            self._send_json(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, {"error": "body too large"})
            return
        body = self.rfile.read(length)
        try:
            request = json_format.Parse(body, Payloads(), ignore_unknown_fields=True)
        except (json_format.ParseError, UnicodeDecodeError) as e:
            self._send_json(
                HTTPStatus.BAD_REQUEST, {"error": f"expected {{'payloads': [...]}}: {e}"}
            )
            return
        try:
            result = self._config.decoder.run(operation, request.payloads)
        except RatchetError as e:
            self._send_json(HTTPStatus.BAD_REQUEST, {"error": str(e)})
            return
        except FutureTimeout:
            self._send_json(
                HTTPStatus.GATEWAY_TIMEOUT,
                {"error": f"{operation} took over {_REQUEST_TIMEOUT_SECONDS:.0f} s"},
            )
            return
        except Exception as e:
            log.exception("codec server: %s failed", operation)
            self._send_json(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": type(e).__name__})
            return
        answer = json_format.MessageToDict(Payloads(payloads=result))
        self._send_json(HTTPStatus.OK, {"payloads": answer.get("payloads", [])})

    def do_GET(self) -> None:
        """Nothing to get: the protocol is POST only."""
        if self._caller_allowed():
            self._send_json(HTTPStatus.NOT_FOUND, {"error": "POST to /encode or /decode"})

    def _caller_allowed(self) -> bool:
        """Refuse (and answer) requests from other origins or for other host names."""
        if not self._host_allowed():
            self._send_json(
                HTTPStatus.MISDIRECTED_REQUEST,
                {
                    "error": "without a token this codec server answers requests for "
                    "127.0.0.1, localhost or its allowed host names only"
                },
            )
            return False
        if not self._origin_allowed():
            self._send_json(HTTPStatus.FORBIDDEN, {"error": "origin not allowed"})
            return False
        return True

    def _host_allowed(self) -> bool:
        host = self.headers.get("Host")
        if self._config.hosts is None or host is None:
            return True
        name = host.strip().lower()
        if name.startswith("["):  # [::1]:8888
            name = name[1:].partition("]")[0]
        else:
            name = name.rpartition(":")[0] if ":" in name else name
        return name in self._config.hosts

    def _origin_allowed(self) -> bool:
        origin = self.headers.get("Origin")
        return origin is None or origin.rstrip("/") in self._config.origins

    def _authorized(self) -> bool:
        expected = self._config.token
        if expected is None:
            return True
        scheme, _, given = (self.headers.get("Authorization") or "").strip().partition(" ")
        if scheme.lower() != "bearer":
            return False
        return hmac.compare_digest(given.strip().encode(), expected.encode())

    def _cors_headers(self) -> None:
        origin = self.headers.get("Origin")
        if origin is not None and origin.rstrip("/") in self._config.origins:
            self.send_header("Access-Control-Allow-Origin", origin)
            self.send_header("Access-Control-Allow-Credentials", "true")
        self.send_header("Vary", "Origin")

    def _send_json(
        self, status: HTTPStatus, body: Mapping[str, Any], headers: Mapping[str, str] | None = None
    ) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self._cors_headers()
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if status != HTTPStatus.OK:
            # The request body may be unread: never reuse this connection.
            self.close_connection = True
            self.send_header("Connection", "close")
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
