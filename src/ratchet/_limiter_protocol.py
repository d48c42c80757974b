"""The limiter's contract: its names, its messages and the workflow ids of limiters.

Model calls (``ratchet._ratelimit``), the client and the CLI talk to the limiter
workflow (``ratchet.workflows._limiter``) through these; they hold no workflow code.

Protocol. Requests travel as signals and answers through the workflow's memo:
neither has a cap on how many may be in flight. (Updates are capped at 10 in flight
per workflow, which 50 waiting calls exceed at once; queries are buffered one at a
time while a workflow task runs.)

- ``request`` (signal, with start): a model call asks for ``tokens`` (its
  estimate). It joins a FIFO queue. The workflow grants queued calls in order,
  at the moment the sliding window has room for them (a timer wakes it then).
- the grant board (memo): the caller polls for its grant with a describe call,
  which the server answers alone; it also says when each queued grant is
  expected, so callers poll rarely while far back in the queue. (The ``ticket``
  query answers the same for one grant, for tools and tests.)
- ``settle`` (signal): the call reports when it really reached the provider and
  what it used; the reservation counts from then, for one window, with that usage.
- ``pause`` (signal): a provider's 429 with ``Retry-After``; nothing is granted to
  anybody until it has passed.
- ``configure`` (update): new limits, effective at once.
- ``status`` (query): limits, usage of the current window, queue depth.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = [
    "LIMITER_CONFIGURE_UPDATE",
    "LIMITER_MEMO",
    "LIMITER_PAUSE_SIGNAL",
    "LIMITER_REQUEST_SIGNAL",
    "LIMITER_SETTLE_SIGNAL",
    "LIMITER_STATUS_QUERY",
    "LIMITER_TICKET_QUERY",
    "LIMITER_WORKFLOW_TYPE",
    "CapacityRequest",
    "LimiterInput",
    "LimiterStatus",
    "PauseRequest",
    "QueuedRequest",
    "RateLimit",
    "Reservation",
    "SettleRequest",
    "TicketState",
    "limiter_id",
    "provider_of_limiter",
]

LIMITER_WORKFLOW_TYPE = "ratchet.Limiter"
LIMITER_REQUEST_SIGNAL = "ratchet.limiter.request"
LIMITER_TICKET_QUERY = "ratchet.limiter.ticket"
LIMITER_CONFIGURE_UPDATE = "ratchet.limiter.configure"
LIMITER_SETTLE_SIGNAL = "ratchet.limiter.settle"
LIMITER_PAUSE_SIGNAL = "ratchet.limiter.pause"
LIMITER_STATUS_QUERY = "ratchet.limiter.status"

LIMITER_MEMO = "ratchet.limiter"
"""Memo key of the grant board: ``{"granted": [...], "queued": {grant: eta_s}, "at": iso}``."""

_LIMITER_ID_PREFIX = "ratchet-limiter-"


def limiter_id(provider: str) -> str:
    """The workflow id of a provider's limiter."""
    return f"{_LIMITER_ID_PREFIX}{provider}"


def provider_of_limiter(workflow_id: str) -> str:
    """The provider whose limiter has this workflow id (the inverse of ``limiter_id``)."""
    return workflow_id.removeprefix(_LIMITER_ID_PREFIX)


class RateLimit(BaseModel):
    """A provider's limits, enforced across every worker.

    ``rpm`` and ``tpm`` are what every sliding window of ``window_seconds`` may hold:
    requests and tokens per minute with the default 60 s window (tests scale the
    window down).
    """

    model_config = ConfigDict(frozen=True)

    rpm: int | None = Field(None, gt=0)
    """Requests per window; None: unlimited."""
    tpm: int | None = Field(None, gt=0)
    """Tokens (prompt + completion) per window; None: unlimited."""
    window_seconds: float = Field(60.0, gt=0)
    """Length of the sliding window the limits apply to."""
    margin_seconds: float = Field(1.0, ge=0)
    """A grant counts for ``window_seconds + margin_seconds``.

    A request reaches the provider a moment after its grant, and that moment varies
    (event-loop stalls, network); the margin keeps the provider's own window within
    the limit despite it."""
    default_max_tokens: int = Field(1024, gt=0)
    """Completion tokens reserved for a call whose agent sets no ``max_tokens``."""

    @model_validator(mode="after")
    def _check(self) -> RateLimit:
        if self.margin_seconds >= self.window_seconds:
            raise ValueError(
                f"margin_seconds={self.margin_seconds} must be below "
                f"window_seconds={self.window_seconds}"
            )
        return self

    @property
    def requests_per_second(self) -> float | None:
        """``rpm`` as a per-second rate (for the task queue's server-side limit)."""
        return None if self.rpm is None else self.rpm / self.window_seconds


class CapacityRequest(BaseModel):
    """A model call asks for capacity (the request signal)."""

    model_config = ConfigDict(frozen=True)

    ticket: str
    """The model call (workflow id / activity id): its place in the queue."""
    attempt: int = 1
    """The grant is this attempt's: a retry after a crash needs a grant of its own."""
    tokens: int = Field(ge=0)
    """The estimate: prompt tokens plus the completion tokens it may use."""
    lease_seconds: float = Field(600.0, gt=0)
    """How long the attempt may still live: after that it is surely over."""
    agent: str = ""

    @property
    def grant(self) -> str:
        """The id of this attempt's grant: ``<ticket>#<attempt>``."""
        return f"{self.ticket}#{self.attempt}"


class TicketState(BaseModel):
    """The answer to the ticket query."""

    model_config = ConfigDict(frozen=True)

    known: bool
    """False: the request has not arrived yet (or its lease ended)."""
    granted: bool = False
    eta: datetime | None = None
    """Queued: when the grant is expected, if nothing changes."""
    position: int = 0
    """Queued: requests ahead of this one."""


class SettleRequest(BaseModel):
    model_config = ConfigDict(frozen=True)

    grant: str
    """``<ticket>#<attempt>``."""
    tokens: int = Field(ge=0)
    """What the call really used (0 when the provider refused it)."""
    sent_at: datetime | None = None
    """When the request left for the provider (None: it never did)."""


class PauseRequest(BaseModel):
    model_config = ConfigDict(frozen=True)

    seconds: float = Field(ge=0)
    """The provider's ``Retry-After``."""
    reporter: str = ""


class Reservation(BaseModel):
    grant: str
    tokens: int
    granted_at: datetime
    expires_at: datetime
    """The lease's end: unsettled by then, it is assumed sent then."""
    sent_at: datetime | None = None
    settled: bool = False


class QueuedRequest(BaseModel):
    request: CapacityRequest
    enqueued_at: datetime
    expires_at: datetime


class LimiterStatus(BaseModel):
    """What ``ratchet limits`` shows for one provider."""

    provider: str
    limit: RateLimit
    requests_in_window: int = 0
    """Requests in the current window, calls in flight included (``rpm`` allows that many)."""
    tokens_in_window: int = 0
    """Tokens used or reserved in the current window, calls in flight included."""
    in_flight: int = 0
    """Granted calls that have not reported back yet."""
    queued: int = 0
    """Model calls waiting for capacity."""
    paused_until: datetime | None = None
    """A provider's 429 stops every call until then."""
    granted_total: int = 0
    pauses_total: int = 0
    as_of: datetime | None = None
    """The limiter's clock when it last acted."""


class LimiterInput(BaseModel):
    """Start input, and the state carried over continue-as-new."""

    provider: str
    limit: RateLimit
    reservations: list[Reservation] = []
    queue: list[QueuedRequest] = []
    paused_until: datetime | None = None
    granted_total: int = 0
    pauses_total: int = 0
    max_history_events: int = 2_000
    """Continue-as-new once the history has this many events."""
