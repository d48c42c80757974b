"""The console's cookie sessions, their CSRF tokens, and the login rate limit.

A session is opened with a credential (``POST /v1/session``) and lives in this
process's memory: the cookie holds only a random id. Every request made with it
re-checks the API key behind it, so revoking the key ends its sessions at once.

CSRF: the cookie is ``SameSite=Strict`` (a cross-site page's requests do not carry
it), and on top of that every unsafe request authenticated by the cookie must send
the session's CSRF token in ``X-CSRF-Token``, which a cross-site page cannot read.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass

from ._roles import Principal

__all__ = ["COOKIE_NAME", "CSRF_HEADER", "LoginLimiter", "Session", "Sessions"]

COOKIE_NAME = "ratchet_session"
CSRF_HEADER = "X-CSRF-Token"


@dataclass(frozen=True)
class Session:
    principal: Principal
    csrf_token: str
    expires: float
    """Epoch seconds."""


class Sessions:
    """Open sessions by id, each until it expires or is closed."""

    def __init__(self, ttl_seconds: float) -> None:
        self.ttl_seconds = ttl_seconds
        self._open: dict[str, Session] = {}
        self._lock = threading.Lock()

    def open(self, principal: Principal, *, expires: float | None = None) -> tuple[str, Session]:
        """A new session's id and the session; it ends after the TTL or at ``expires``."""
        end = time.time() + self.ttl_seconds
        session = Session(
            principal=principal,
            csrf_token=secrets.token_urlsafe(32),
            expires=min(end, expires) if expires is not None else end,
        )
        session_id = secrets.token_urlsafe(32)
        with self._lock:
            self._sweep()
            self._open[session_id] = session
        return session_id, session

    def get(self, session_id: str) -> Session | None:
        with self._lock:
            session = self._open.get(session_id)
            if session is not None and session.expires <= time.time():
                del self._open[session_id]
                return None
        return session

    def close(self, session_id: str) -> None:
        with self._lock:
            self._open.pop(session_id, None)

    def _sweep(self) -> None:
        now = time.time()
        for session_id in [i for i, s in self._open.items() if s.expires <= now]:
            del self._open[session_id]


class LoginLimiter:
    """At most ``attempts`` failed logins per client address in any ``window_seconds``.

    Past that, logins from the address are refused (even with a right key) until the
    oldest failure leaves the window: guessing costs time, whatever the credential.
    """

    def __init__(self, attempts: int = 5, window_seconds: float = 60.0) -> None:
        self.attempts = attempts
        self.window_seconds = window_seconds
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def wait_seconds(self, address: str) -> float:
        """How long ``address`` must wait before its next login (0: it may try now)."""
        with self._lock:
            failures = self._recent(address)
            if len(failures) < self.attempts:
                return 0.0
            return failures[0] + self.window_seconds - time.monotonic()

    def failed(self, address: str) -> None:
        with self._lock:
            self._recent(address)
            self._failures.setdefault(address, deque()).append(time.monotonic())

    def _recent(self, address: str) -> deque[float]:
        failures = self._failures.get(address)
        if failures is None:
            return deque()
        cutoff = time.monotonic() - self.window_seconds
        while failures and failures[0] <= cutoff:
            failures.popleft()
        if not failures:
            del self._failures[address]  # quiet addresses are forgotten: no growing table
        return failures
