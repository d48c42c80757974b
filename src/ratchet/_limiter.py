"""LimiterWorkflow: one long-lived workflow per provider that grants request and token capacity.

Why a workflow: the limit must hold across every worker process, and Temporal is
the one thing they all share. The limiter's state (limits, the reservations of the
current window, the FIFO queue, a 429 pause) is workflow state, so it needs no
extra service, survives worker and server restarts, and is carried over
continue-as-new before its history grows large.

Protocol (all handlers are synchronous, so continue-as-new never waits on one and
the server's cap of in-flight updates per workflow is never approached):

- ``acquire`` (update): a model activity asks for ``tokens`` (its estimate). The
  ticket joins a FIFO queue; it is granted once every ticket ahead of it is served
  and the request and token counts of the sliding window leave room, else the
  reply says how long to wait before asking again. Asking again keeps the place.
- ``settle`` (signal): the actual usage replaces the estimate once the call is done.
- ``pause`` (signal): a provider's 429 with ``Retry-After``; nothing is granted to
  anybody until it has passed.
- ``configure`` (update): new limits, effective at once.
- ``status`` (query): limits, usage of the current window, queue depth.

Dead holders cannot leak capacity: a reservation only counts inside its window, so
an activity that dies holding one costs at most its estimate for one window, and a
queued ticket that is not asked for again within its grace period is dropped.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = [
    "LIMITER_ACQUIRE_UPDATE",
    "LIMITER_CONFIGURE_UPDATE",
    "LIMITER_PAUSE_SIGNAL",
    "LIMITER_SETTLE_SIGNAL",
    "LIMITER_STATUS_QUERY",
    "LIMITER_WORKFLOW_TYPE",
    "AcquireReply",
    "AcquireRequest",
    "LimiterInput",
    "LimiterStatus",
    "LimiterWorkflow",
    "PauseRequest",
    "RateLimit",
    "SettleRequest",
    "limiter_id",
]

LIMITER_WORKFLOW_TYPE = "ratchet.Limiter"
LIMITER_ACQUIRE_UPDATE = "ratchet.limiter.acquire"
LIMITER_CONFIGURE_UPDATE = "ratchet.limiter.configure"
LIMITER_SETTLE_SIGNAL = "ratchet.limiter.settle"
LIMITER_PAUSE_SIGNAL = "ratchet.limiter.pause"
LIMITER_STATUS_QUERY = "ratchet.limiter.status"

_LIMITER_ID_PREFIX = "ratchet-limiter-"


def limiter_id(provider: str) -> str:
    """The workflow id of a provider's limiter."""
    return f"{_LIMITER_ID_PREFIX}{provider}"


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


class AcquireRequest(BaseModel):
    model_config = ConfigDict(frozen=True)

    ticket: str
    """The model call (workflow id / activity id): its place in the queue."""
    attempt: int = 1
    """The grant is this attempt's: a retry after a crash needs a grant of its own."""
    tokens: int = Field(ge=0)
    """The estimate: prompt tokens plus the completion tokens it may use."""
    agent: str = ""


class AcquireReply(BaseModel):
    model_config = ConfigDict(frozen=True)

    granted: bool
    wait_seconds: float = 0.0
    """Not granted: ask again after this long (the estimated time of the grant)."""
    position: int = 0
    """Not granted: tickets ahead of this one in the queue."""


class SettleRequest(BaseModel):
    model_config = ConfigDict(frozen=True)

    ticket: str
    """The grant: ``<call ticket>#<attempt>``."""
    tokens: int = Field(ge=0)
    """What the call really used (0 when the provider refused it)."""


class PauseRequest(BaseModel):
    model_config = ConfigDict(frozen=True)

    seconds: float = Field(ge=0)
    """The provider's ``Retry-After``."""
    reporter: str = ""


class _Reservation(BaseModel):
    ticket: str
    at: datetime
    tokens: int
    settled: bool = False


class _Ticket(BaseModel):
    ticket: str
    tokens: int
    agent: str = ""
    enqueued_at: datetime
    expires_at: datetime


class LimiterStatus(BaseModel):
    """What ``ratchet limits`` shows for one provider."""

    provider: str
    limit: RateLimit
    requests_in_window: int = 0
    """Requests granted within the current window (``rpm`` allows that many)."""
    tokens_in_window: int = 0
    """Tokens reserved or used within the current window."""
    queued: int = 0
    """Model calls waiting for capacity."""
    paused_until: datetime | None = None
    """A provider's 429 stops every call until then."""
    granted_total: int = 0
    pauses_total: int = 0
    as_of: datetime | None = None
    """The limiter's clock when it last handled a request."""


class LimiterInput(BaseModel):
    """Start input, and the state carried over continue-as-new."""

    provider: str
    limit: RateLimit
    reservations: list[_Reservation] = []
    queue: list[_Ticket] = []
    paused_until: datetime | None = None
    granted_total: int = 0
    pauses_total: int = 0
    max_history_events: int = 2_000
    """Continue-as-new once the history has this many events."""
    ticket_grace_seconds: float = 10.0
    """A queued ticket not asked for again this long after its wait is dropped."""


@workflow.defn(name=LIMITER_WORKFLOW_TYPE)
class LimiterWorkflow:
    """Grants a provider's capacity fairly (FIFO) to the model calls of every worker."""

    @workflow.init
    def __init__(self, inp: LimiterInput) -> None:
        self._s = inp.model_copy(deep=True)

    @workflow.run
    async def run(self, inp: LimiterInput) -> None:
        workflow.set_current_details(f"limiter of provider **{inp.provider}**")
        await workflow.wait_condition(
            lambda: (
                workflow.info().get_current_history_length() >= self._s.max_history_events
                or workflow.info().is_continue_as_new_suggested()
            )
        )
        await workflow.wait_condition(workflow.all_handlers_finished)
        self._trim(workflow.now())
        workflow.continue_as_new(self._s)

    # -- handlers -------------------------------------------------------------------

    @workflow.update(name=LIMITER_ACQUIRE_UPDATE)
    def acquire(self, request: AcquireRequest) -> AcquireReply:
        now = workflow.now()
        self._trim(now)
        grant = f"{request.ticket}#{request.attempt}"
        if any(r.ticket == grant for r in self._s.reservations):
            return AcquireReply(granted=True)  # asked twice (an RPC retry): already granted
        queue = self._s.queue
        mine = next((t for t in queue if t.ticket == request.ticket), None)
        if mine is None:
            mine = _Ticket(
                ticket=request.ticket,
                tokens=request.tokens,
                agent=request.agent,
                enqueued_at=now,
                expires_at=now,
            )
            queue.append(mine)
        starts = self._schedule(now)
        start = starts[mine.ticket]
        if start <= now:
            queue.remove(mine)
            self._s.reservations.append(_Reservation(ticket=grant, at=now, tokens=mine.tokens))
            self._s.granted_total += 1
            return AcquireReply(granted=True)
        wait = (start - now).total_seconds()
        mine.expires_at = start + timedelta(seconds=self._s.ticket_grace_seconds)
        return AcquireReply(granted=False, wait_seconds=wait, position=queue.index(mine))

    @workflow.signal(name=LIMITER_SETTLE_SIGNAL)
    def settle(self, request: SettleRequest) -> None:
        for r in self._s.reservations:
            if r.ticket == request.ticket:
                r.tokens = request.tokens
                r.settled = True
                return

    @workflow.signal(name=LIMITER_PAUSE_SIGNAL)
    def pause(self, request: PauseRequest) -> None:
        until = workflow.now() + timedelta(seconds=request.seconds)
        if self._s.paused_until is None or until > self._s.paused_until:
            self._s.paused_until = until
            self._s.pauses_total += 1
            workflow.logger.info(
                "provider %s paused for %.1f s (429 from %s)",
                self._s.provider,
                request.seconds,
                request.reporter,
            )

    @workflow.update(name=LIMITER_CONFIGURE_UPDATE)
    def configure(self, limit: RateLimit) -> LimiterStatus:
        self._s.limit = limit
        return self.status()

    @configure.validator
    def _check_limit(self, limit: RateLimit) -> None:
        if limit.rpm is None and limit.tpm is None:
            raise ApplicationError("set at least one of rpm and tpm")

    @workflow.query(name=LIMITER_STATUS_QUERY)
    def status(self) -> LimiterStatus:
        now = workflow.now()
        live = [r for r in self._s.reservations if r.at > now - self._span()]
        return LimiterStatus(
            provider=self._s.provider,
            limit=self._s.limit,
            requests_in_window=len(live),
            tokens_in_window=sum(r.tokens for r in live),
            queued=len([t for t in self._s.queue if t.expires_at >= now]),
            paused_until=self._s.paused_until
            if self._s.paused_until and self._s.paused_until > now
            else None,
            granted_total=self._s.granted_total,
            pauses_total=self._s.pauses_total,
            as_of=now,
        )

    # -- scheduling -----------------------------------------------------------------

    def _span(self) -> timedelta:
        limit = self._s.limit
        return timedelta(seconds=limit.window_seconds + limit.margin_seconds)

    def _trim(self, now: datetime) -> None:
        """Forget reservations outside every window, and tickets nobody came back for."""
        span = self._span()
        self._s.reservations = [r for r in self._s.reservations if r.at > now - span]
        self._s.queue = [t for t in self._s.queue if t.expires_at >= now]
        if self._s.paused_until is not None and self._s.paused_until <= now:
            self._s.paused_until = None

    def _schedule(self, now: datetime) -> dict[str, datetime]:
        """When each queued ticket would be granted, serving the queue in order (FIFO).

        Each ticket starts no earlier than the one ahead of it, at the first moment
        the window ending there has room for it. Because later windows only lose
        reservations, checking the window that ends at the start time is enough.
        """
        limit = self._s.limit
        span = self._span()
        booked = [(r.at, r.tokens) for r in self._s.reservations]
        earliest = now if self._s.paused_until is None else max(now, self._s.paused_until)
        starts: dict[str, datetime] = {}
        for ticket in self._s.queue:
            t = earliest
            while True:
                inside = [(at, tokens) for at, tokens in booked if at > t - span]
                requests_ok = limit.rpm is None or len(inside) + 1 <= limit.rpm
                used = sum(tokens for _, tokens in inside)
                # A call larger than the whole budget goes alone into an empty window
                # rather than never.
                tokens_ok = limit.tpm is None or used + ticket.tokens <= limit.tpm or not inside
                if requests_ok and tokens_ok:
                    break
                # Next moment the window loses a reservation.
                t = min(at for at, _ in inside) + span
            starts[ticket.ticket] = t
            booked.append((t, ticket.tokens))
            earliest = t
        return starts
