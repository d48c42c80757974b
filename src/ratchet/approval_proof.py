"""Authenticated approvals: a proof that a trusted service vouched for the approver.

An approval is an update of the run's workflow, and anyone with access to the
Temporal namespace can send one (the Temporal Web UI's "Send an Update" form, the
``temporal`` CLI) with any approver name typed in. A deployment that wants the
approver to be an *authenticated* person gives its workers, and the service that
authenticates people (``ratchet serve``, or an operator's ``ratchet approve``), one
shared secret in ``RATCHET_APPROVAL_SECRET``:

- the service signs each answer with :func:`sign_approval`, naming the principal it
  authenticated, and sends the proof along (``RunHandle.approve(..., proof=...)``);
- the worker checks the proof in an activity before the run records the decision
  (:func:`verify_approval`), and refuses an answer without a valid one, so the call
  keeps waiting.

The proof is an HMAC-SHA256 over the run id, the call id, the decision, the approver,
the new budget limit and the time it was issued (a proof is good for 10 minutes). It
names no secret: only the proof enters the run's history. The threat model is in the
README ("Authenticated approvals").
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import math
import os
import re
from datetime import UTC, datetime, timedelta

from .errors import ApprovalError, ConfigError

__all__ = [
    "MAX_AGE",
    "MIN_SECRET_BYTES",
    "SECRET_ENV",
    "secret_from_env",
    "sign_approval",
    "verify_approval",
]

SECRET_ENV = "RATCHET_APPROVAL_SECRET"
"""The environment variable holding the shared secret (workers, ``ratchet serve``, CLI)."""

MAX_AGE = timedelta(minutes=10)
"""How long a proof is good for, by default."""

MIN_SECRET_BYTES = 16
"""Shorter secrets are refused: an HMAC is only as strong as its key."""

_CLOCK_SKEW = timedelta(seconds=60)
"""A proof dated this far in the future still counts (the signer's clock runs ahead)."""

_VERSION = "v1"
_STAMP = re.compile(r"[0-9]{1,12}")
_MAC = re.compile(r"[A-Za-z0-9_-]{1,128}")


def secret_from_env() -> bytes | None:
    """The secret in ``RATCHET_APPROVAL_SECRET``; None when it is unset or empty."""
    value = os.environ.get(SECRET_ENV, "")
    return value.encode() if value else None


def sign_approval(
    secret: bytes | str,
    *,
    run_id: str,
    call_id: str,
    approve: bool,
    approver: str,
    raise_to: float | None,
    issued_at: datetime | None = None,
) -> str:
    """A proof that ``approver`` gave this answer, for ``RunHandle.approve``/``deny``.

    Args:
        secret: the deployment's shared secret (``RATCHET_APPROVAL_SECRET``).
        run_id: the run's id (its workflow id).
        call_id: the waiting call's id (``PendingApproval.call_id``).
        approve: True to approve, False to deny.
        approver: the authenticated principal; the run records this name.
        raise_to: the new budget limit of a budget decision (None otherwise).
        issued_at: when the proof was made (default: now); it expires ``MAX_AGE`` later.

    Returns:
        An opaque string, ``v1.<issued_at>.<HMAC>``, safe to store in the history.

    Raises:
        ConfigError: the secret is too short, ``issued_at`` has no time zone, or
            ``raise_to`` is not a finite number.
    """
    key = _key(secret)
    when = issued_at if issued_at is not None else datetime.now(UTC)
    if when.tzinfo is None:
        raise ConfigError("issued_at has no time zone: give an aware datetime, e.g. in UTC")
    stamp = int(when.timestamp())
    mac = _mac(key, run_id, call_id, approve, approver, raise_to, stamp)
    return f"{_VERSION}.{stamp}.{_b64(mac)}"


def verify_approval(
    secret: bytes | str,
    proof: str,
    *,
    run_id: str,
    call_id: str,
    approve: bool,
    approver: str,
    raise_to: float | None,
    max_age: timedelta = MAX_AGE,
    now: datetime | None = None,
) -> None:
    """Check that ``proof`` was signed with ``secret`` for exactly this answer.

    Args:
        secret: the deployment's shared secret.
        proof: what :func:`sign_approval` returned.
        run_id, call_id, approve, approver, raise_to: the answer as the run received it.
        max_age: how old a proof may be.
        now: the time to check against (default: now).

    Raises:
        ApprovalError: the proof is malformed, was signed with another secret or for
            another answer (run, call, decision, approver or budget limit), or is
            older than ``max_age``; the message says which.
        ConfigError: the secret is too short.
    """
    key = _key(secret)
    version, stamp, mac = _parse(proof)
    if version != _VERSION:
        raise ApprovalError(
            f"the approval proof has version {version!r}; this worker reads {_VERSION!r}"
        )
    expected = _mac(key, run_id, call_id, approve, approver, raise_to, stamp)
    if not hmac.compare_digest(mac, expected):
        raise ApprovalError(
            "the approval proof does not match this answer: it was made for another run, "
            "call, decision, approver or budget limit, or with another secret"
        )
    issued = datetime.fromtimestamp(stamp, UTC)
    current = now if now is not None else datetime.now(UTC)
    if issued - current > _CLOCK_SKEW:
        raise ApprovalError(
            f"the approval proof is dated {issued:%Y-%m-%d %H:%M:%S} UTC, in the future; "
            "check the clocks of the signing service and the worker"
        )
    if current - issued > max_age:
        raise ApprovalError(
            f"the approval proof expired: issued {issued:%Y-%m-%d %H:%M:%S} UTC, more than "
            f"{max_age} ago; answer again"
        )


def _key(secret: bytes | str) -> bytes:
    key = secret.encode() if isinstance(secret, str) else secret
    if len(key) < MIN_SECRET_BYTES:
        raise ConfigError(
            f"the approval secret has {len(key)} bytes; use at least {MIN_SECRET_BYTES} "
            "random bytes (e.g. `python -c 'import secrets; print(secrets.token_urlsafe(32))'`) "
            f"in {SECRET_ENV}"
        )
    return key


def _mac(
    key: bytes,
    run_id: str,
    call_id: str,
    approve: bool,
    approver: str,
    raise_to: float | None,
    issued_at: int,
) -> bytes:
    if raise_to is not None and not math.isfinite(raise_to):
        raise ConfigError(f"raise_to must be a finite number, got {raise_to!r}")
    # Canonical JSON: the same answer gives the same bytes whoever serializes it; the
    # purpose field keeps a MAC made with this secret for anything else from passing.
    fields = {
        "purpose": "ratchet.approval",
        "run_id": run_id,
        "call_id": call_id,
        "approve": approve,
        "approver": approver,
        # An answer's raise_to is a float once it crossed the wire (20000 -> 20000.0).
        "raise_to": None if raise_to is None else float(raise_to),
        "issued_at": issued_at,
    }
    text = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def _parse(proof: str) -> tuple[str, int, bytes]:
    parts = proof.split(".")
    if len(parts) != 3 or not _STAMP.fullmatch(parts[1]) or not _MAC.fullmatch(parts[2]):
        raise ApprovalError("the approval proof is malformed: expected v1.<issued_at>.<HMAC>")
    version, stamp, mac = parts
    try:
        digest = base64.urlsafe_b64decode(mac + "=" * (-len(mac) % 4))
    except binascii.Error:
        raise ApprovalError("the approval proof is malformed: its HMAC is not base64url") from None
    return version, int(stamp), digest


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()
