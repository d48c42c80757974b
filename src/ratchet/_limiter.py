"""LimiterWorkflow: one long-lived workflow per provider that grants request and token capacity.

Why a workflow: the limit must hold across every worker process, and Temporal is
the one thing they all share. The limiter's state (limits, the reservations of the
current window, the FIFO queue, a 429 pause) is workflow state, so it needs no
extra service, survives worker and server restarts, and is carried over
continue-as-new before its history grows large.

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

Accounting is conservative: a granted call that has not settled may reach the
provider at any moment, so it counts in every window until it settles. A grant is
only given while the window holds room for it, so no window the provider sees can
exceed the limit (up to ``margin_seconds`` of clock and network slack).

Dead holders cannot leak capacity for long: each request carries a lease (the
time its activity attempt may still live). A grant whose caller never settles is
assumed to have been sent when its lease ends and counts one window after that;
the next attempt of the same call settles its predecessor's grant at once. A
queued request whose lease ends leaves the queue.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
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
    "LimiterWorkflow",
    "PauseRequest",
    "RateLimit",
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


class _Reservation(BaseModel):
    grant: str
    tokens: int
    granted_at: datetime
    expires_at: datetime
    """The lease's end: unsettled by then, it is assumed sent then."""
    sent_at: datetime | None = None
    settled: bool = False


class _Queued(BaseModel):
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
    reservations: list[_Reservation] = []
    queue: list[_Queued] = []
    paused_until: datetime | None = None
    granted_total: int = 0
    pauses_total: int = 0
    max_history_events: int = 2_000
    """Continue-as-new once the history has this many events."""


@workflow.defn(name=LIMITER_WORKFLOW_TYPE)
class LimiterWorkflow:
    """Grants a provider's capacity fairly (FIFO) to the model calls of every worker."""

    @workflow.init
    def __init__(self, inp: LimiterInput) -> None:
        self._s = inp.model_copy(deep=True)
        self._changed = False
        # Computed once per workflow task, not per query: callers poll often.
        self._etas: dict[str, datetime] = {}
        self._published: dict[str, Any] = {}

    @workflow.run
    async def run(self, inp: LimiterInput) -> None:
        workflow.set_current_details(f"rate limiter of provider **{inp.provider}**")
        while not self._history_full():
            now = workflow.now()
            self._trim(now)
            self._grant(now)
            self._etas = self._schedule(now)
            self._publish(now)
            wake = self._next_event(now)
            self._changed = False
            with contextlib.suppress(asyncio.TimeoutError):
                await workflow.wait_condition(
                    lambda: self._changed or self._history_full(),
                    timeout=None if wake is None else max(wake - now, _TICK),
                )
        # Handlers are synchronous: none is ever left waiting.
        await workflow.wait_condition(workflow.all_handlers_finished)
        self._trim(workflow.now())
        workflow.continue_as_new(self._s)

    def _publish(self, now: datetime) -> None:
        """Mirror grants and expected grant times into the memo, where callers poll them.

        Callers read it with DescribeWorkflowExecution, which the server answers
        alone: no worker, no workflow task, no cap on how many poll at once (queries
        are buffered one at a time while a workflow task runs, and this workflow
        nearly always has one).
        """
        board = {
            "granted": sorted(r.grant for r in self._s.reservations if not r.settled),
            "queued": {
                grant: round(max((eta - now).total_seconds(), 0.0), 3)
                for grant, eta in self._etas.items()
            },
        }
        if board != self._published:
            self._published = board
            workflow.upsert_memo({LIMITER_MEMO: {**board, "at": now.isoformat()}})

    def _history_full(self) -> bool:
        info = workflow.info()
        return (
            info.get_current_history_length() >= self._s.max_history_events
            or info.is_continue_as_new_suggested()
        )

    # -- handlers -------------------------------------------------------------------

    @workflow.signal(name=LIMITER_REQUEST_SIGNAL)
    def request(self, request: CapacityRequest) -> None:
        now = workflow.now()
        self._changed = True
        for r in self._s.reservations:
            if r.grant == request.grant:
                return  # sent twice: already granted
            if r.grant.startswith(request.ticket + "#") and not r.settled:
                # An earlier attempt of this call died holding a grant: it may have
                # reached the provider just before; count it as sent now.
                r.sent_at, r.settled = now, True
        for q in self._s.queue:
            if q.request.ticket == request.ticket:
                # A retry keeps the call's place in the queue.
                q.request = request
                q.expires_at = now + timedelta(seconds=request.lease_seconds)
                return
        self._s.queue.append(
            _Queued(
                request=request,
                enqueued_at=now,
                expires_at=now + timedelta(seconds=request.lease_seconds),
            )
        )

    @workflow.signal(name=LIMITER_SETTLE_SIGNAL)
    def settle(self, request: SettleRequest) -> None:
        self._changed = True
        for r in self._s.reservations:
            if r.grant == request.grant:
                r.tokens = request.tokens
                # Never sent: it takes no room in any window.
                r.sent_at = request.sent_at or r.granted_at - self._span()
                r.settled = True
                return
        # Not granted yet: the caller gave up waiting (cancelled), so it leaves the queue.
        self._s.queue = [q for q in self._s.queue if q.request.grant != request.grant]

    @workflow.signal(name=LIMITER_PAUSE_SIGNAL)
    def pause(self, request: PauseRequest) -> None:
        self._changed = True
        until = workflow.now() + timedelta(seconds=request.seconds)
        if self._s.paused_until is None or until > self._s.paused_until:
            self._s.paused_until = until
            self._s.pauses_total += 1
            workflow.logger.info(
                "provider %s paused for %.1f s (429 to %s)",
                self._s.provider,
                request.seconds,
                request.reporter,
            )

    @workflow.update(name=LIMITER_CONFIGURE_UPDATE)
    def configure(self, limit: RateLimit) -> LimiterStatus:
        self._changed = True
        self._s.limit = limit
        return self.status()

    @configure.validator
    def _check_limit(self, limit: RateLimit) -> None:
        if limit.rpm is None and limit.tpm is None:
            raise ApplicationError("set at least one of rpm and tpm")

    @workflow.query(name=LIMITER_TICKET_QUERY)
    def ticket(self, grant: str) -> TicketState:
        if any(r.grant == grant for r in self._s.reservations):
            return TicketState(known=True, granted=True)
        for position, q in enumerate(self._s.queue):
            if q.request.grant == grant:
                return TicketState(known=True, eta=self._etas.get(grant), position=position)
        return TicketState(known=False)

    @workflow.query(name=LIMITER_STATUS_QUERY)
    def status(self) -> LimiterStatus:
        now = workflow.now()
        inside = self._inside(now)
        paused = self._s.paused_until
        return LimiterStatus(
            provider=self._s.provider,
            limit=self._s.limit,
            requests_in_window=len(inside),
            tokens_in_window=sum(tokens for _, tokens in inside),
            in_flight=sum(1 for r in self._s.reservations if not r.settled),
            queued=len(self._s.queue),
            paused_until=paused if paused is not None and paused > now else None,
            granted_total=self._s.granted_total,
            pauses_total=self._s.pauses_total,
            as_of=now,
        )

    # -- granting -------------------------------------------------------------------

    def _span(self) -> timedelta:
        limit = self._s.limit
        return timedelta(seconds=limit.window_seconds + limit.margin_seconds)

    def _trim(self, now: datetime) -> None:
        """Settle dead holders, forget what left every window, drop expired requests."""
        span = self._span()
        for r in self._s.reservations:
            if not r.settled and r.expires_at <= now:
                r.sent_at, r.settled = r.expires_at, True
        self._s.reservations = [
            r
            for r in self._s.reservations
            if not r.settled or (r.sent_at is not None and r.sent_at > now - span)
        ]
        self._s.queue = [q for q in self._s.queue if q.expires_at > now]
        if self._s.paused_until is not None and self._s.paused_until <= now:
            self._s.paused_until = None

    def _inside(self, at: datetime) -> list[tuple[datetime, int]]:
        """(until, tokens) of what counts in the window ending at ``at``.

        Unsettled grants count in every window until they settle (``until`` is then
        unknown: taken as their lease's end plus a window).
        """
        span = self._span()
        out: list[tuple[datetime, int]] = []
        for r in self._s.reservations:
            if r.settled and r.sent_at is not None:
                if r.sent_at > at - span:
                    out.append((r.sent_at + span, r.tokens))
            else:
                out.append((r.expires_at + span, r.tokens))
        return out

    def _fits(self, booked: list[tuple[datetime, int]], at: datetime, tokens: int) -> bool:
        limit = self._s.limit
        inside = [(until, t) for until, t in booked if until > at]
        if limit.rpm is not None and len(inside) + 1 > limit.rpm:
            return False
        used = sum(t for _, t in inside)
        # A call larger than the whole budget goes alone into an empty window rather
        # than never.
        return limit.tpm is None or used + tokens <= limit.tpm or not inside

    def _grant(self, now: datetime) -> None:
        """Grant queued requests in order while the window has room (FIFO: no overtaking)."""
        if self._s.paused_until is not None and self._s.paused_until > now:
            return
        while self._s.queue:
            head = self._s.queue[0].request
            if not self._fits(self._inside(now), now, head.tokens):
                return
            self._s.queue.pop(0)
            self._s.reservations.append(
                _Reservation(
                    grant=head.grant,
                    tokens=head.tokens,
                    granted_at=now,
                    expires_at=now + timedelta(seconds=head.lease_seconds),
                )
            )
            self._s.granted_total += 1

    def _schedule(self, now: datetime) -> dict[str, datetime]:
        """When each queued request would be granted if every call in flight settled now.

        An estimate for the callers' polling; the grant itself is decided by ``_grant``.
        """
        span = self._span()
        booked = [
            (now + span if until > now + span else until, tokens)
            for until, tokens in self._inside(now)
        ]
        t = now if self._s.paused_until is None else max(now, self._s.paused_until)
        etas: dict[str, datetime] = {}
        for q in self._s.queue:
            while not self._fits(booked, t, q.request.tokens):
                t = min(until for until, _ in booked if until > t)
            etas[q.request.grant] = t
            booked.append((t + span, q.request.tokens))
        return etas

    def _next_event(self, now: datetime) -> datetime | None:
        """When the head of the queue may fit, a pause ends or a lease runs out."""
        times: list[datetime] = []
        if self._s.queue:
            if self._s.paused_until is not None and self._s.paused_until > now:
                times.append(self._s.paused_until)
            times += [until for until, _ in self._inside(now) if until > now]
            times += [q.expires_at for q in self._s.queue]
        times += [r.expires_at for r in self._s.reservations if not r.settled]
        return min(times) if times else None


_TICK = timedelta(milliseconds=10)
