"""LimiterWorkflow: one long-lived workflow per provider that grants request and token capacity.

Why a workflow: the limit must hold across every worker process, and Temporal is
the one thing they all share. The limiter's state (limits, the reservations of the
current window, the FIFO queue, a 429 pause) is workflow state, so it needs no
extra service, survives worker and server restarts, and is carried over
continue-as-new before its history grows large. Its protocol (signals, the grant
board in the memo, queries) is described in ``ratchet._limiter_protocol``.

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
    from .._limiter_protocol import (
        LIMITER_CONFIGURE_UPDATE,
        LIMITER_MEMO,
        LIMITER_PAUSE_SIGNAL,
        LIMITER_REQUEST_SIGNAL,
        LIMITER_SETTLE_SIGNAL,
        LIMITER_STATUS_QUERY,
        LIMITER_TICKET_QUERY,
        LIMITER_WORKFLOW_TYPE,
        CapacityRequest,
        LimiterInput,
        LimiterStatus,
        PauseRequest,
        QueuedRequest,
        RateLimit,
        Reservation,
        SettleRequest,
        TicketState,
    )

from ._history_size import history_full

__all__ = ["LimiterWorkflow"]


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
        return history_full(self._s.max_history_events)

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
            QueuedRequest(
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
                Reservation(
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
