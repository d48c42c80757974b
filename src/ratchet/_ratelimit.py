"""The model activity's side of the provider limiter: request, wait, settle, report 429s.

The agent workflow never sees any of this: a model call that must wait for
capacity waits inside its activity, heartbeating, so the agent's history and
its determinism are unchanged whether or not a provider is rate-limited.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from temporalio import activity
from temporalio.client import Client, WorkflowHandle
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError

from ._heartbeat import beat
from ._limiter_protocol import (
    LIMITER_MEMO,
    LIMITER_PAUSE_SIGNAL,
    LIMITER_REQUEST_SIGNAL,
    LIMITER_SETTLE_SIGNAL,
    LIMITER_WORKFLOW_TYPE,
    CapacityRequest,
    LimiterInput,
    PauseRequest,
    RateLimit,
    SettleRequest,
    TicketState,
    limiter_id,
)
from ._protocol import ModelRequest
from .models import ProviderResponse

__all__ = ["estimate_tokens", "limited_call"]

_log = logging.getLogger(__name__)

_CHARS_PER_TOKEN = 4
"""The usual rule of thumb; the estimate only has to be close, settling corrects it."""
_MIN_POLL_SECONDS = 0.1
_MAX_POLL_SECONDS = 1.0
_RESEND_SECONDS = 5.0
"""Ask again when the limiter has not seen the request after this long."""


def estimate_tokens(request: ModelRequest, limit: RateLimit) -> int:
    """Prompt tokens (from the size of the messages and tool schemas) plus max_tokens."""
    chars = 0
    for m in request.messages:
        chars += len(m.content or "")
        for c in m.tool_calls or []:
            chars += len(c.name) + len(c.arguments)
    for t in request.tools:
        chars += len(t.name) + len(t.description) + len(json.dumps(t.parameters))
    completion = request.max_tokens or limit.default_max_tokens
    return chars // _CHARS_PER_TOKEN + 1 + completion


@dataclass
class _Limiter:
    client: Client
    provider: str
    limit: RateLimit
    task_queue: str

    async def send(self, request: CapacityRequest) -> None:
        # Signal-with-start: the first call that needs the limiter starts it; every
        # later one finds it running. Signals have no in-flight cap, unlike updates.
        await self.client.start_workflow(
            LIMITER_WORKFLOW_TYPE,
            LimiterInput(provider=self.provider, limit=self.limit),
            id=limiter_id(self.provider),
            task_queue=self.task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            start_signal=LIMITER_REQUEST_SIGNAL,
            start_signal_args=[request],
            static_summary=f"rate limiter of provider {self.provider}",
        )

    async def acquire(self, request: CapacityRequest, deadline: float) -> None:
        """Wait until the limiter grants ``request`` (the caller heartbeats).

        Raises:
            ApplicationError: ``ModelRateLimited`` (retryable) when the wait would not
                leave the call its own timeout before the activity's deadline.
        """
        await self.send(request)
        handle = self.client.get_workflow_handle(limiter_id(self.provider))
        sent = time.monotonic()
        while True:
            try:
                state = await _board_state(handle, request.grant)
            except RPCError as e:  # a busy server: ask again shortly
                _log.info("limiter %s: %s; asking again", self.provider, e)
                state = TicketState(known=True)
            if state.granted:
                return
            if not state.known and time.monotonic() - sent > _RESEND_SECONDS:
                await self.send(request)
                sent = time.monotonic()
            # Not on the board yet: the request signal is on its way.
            wait = (state.eta - datetime.now(UTC)).total_seconds() if state.eta else 0.5
            # Poll often near the expected grant, rarely far back in the queue: grants
            # often come sooner, as calls settle with less than they reserved.
            sleep = min(max(wait * 0.5, _MIN_POLL_SECONDS), _MAX_POLL_SECONDS)
            if time.monotonic() + sleep > deadline:
                raise ApplicationError(
                    f"no capacity of provider {self.provider!r} in time (position "
                    f"{state.position} in its queue); the call is retried and keeps its "
                    "place. Raise Limits.model_queue_seconds to let calls wait longer.",
                    type="ModelRateLimited",
                    next_retry_delay=timedelta(seconds=0.1),
                )
            beat(f"waiting for {self.provider} capacity, position {state.position}")
            await asyncio.sleep(sleep)

    async def signal(self, name: str, arg: SettleRequest | PauseRequest) -> None:
        try:
            await self.client.get_workflow_handle(limiter_id(self.provider)).signal(name, arg)
        except RPCError as e:  # a grant not settled counts until its lease ends
            _log.warning("limiter %s: could not send %s: %s", self.provider, name, e)


async def _board_state(handle: WorkflowHandle[Any, Any], grant: str) -> TicketState:
    """``grant``'s state from the limiter's grant board (its memo)."""
    desc = await handle.describe()
    board = (await desc.memo()).get(LIMITER_MEMO)
    if not isinstance(board, dict):
        return TicketState(known=False)
    if grant in board.get("granted", []):
        return TicketState(known=True, granted=True)
    queued = board.get("queued", {})
    if grant not in queued:
        return TicketState(known=False)
    at = datetime.fromisoformat(board["at"])
    position = list(queued).index(grant)
    return TicketState(known=True, eta=at + timedelta(seconds=queued[grant]), position=position)


async def limited_call(
    provider: str,
    limit: RateLimit,
    request: ModelRequest,
    call: Callable[[], Awaitable[ProviderResponse]],
) -> ProviderResponse:
    """Run ``call`` within ``provider``'s limits, shared by every worker through its limiter.

    Reserves the estimated tokens first (waiting in the FIFO queue if need be),
    settles the reservation with the usage the provider reports, and turns a 429
    with ``Retry-After`` into a pause for every worker. The caller heartbeats
    (the wait for capacity included).
    """
    info = activity.info()
    limiter = _Limiter(activity.client(), provider, limit, info.task_queue)
    # Keep the call's own timeout (plus slack) out of the time spent waiting.
    lease = (info.start_to_close_timeout or timedelta(hours=1)).total_seconds()
    deadline = time.monotonic() + lease - request.timeout_seconds - 5
    capacity = CapacityRequest(
        # One place in the queue per model call, kept across its attempts.
        ticket=f"{info.workflow_id}/{info.activity_id}",
        attempt=info.attempt,
        tokens=estimate_tokens(request, limit),
        lease_seconds=lease,
        agent=request.agent,
    )
    try:
        await limiter.acquire(capacity, deadline)
    except asyncio.CancelledError:
        # The run was cancelled (or the worker is shutting down) while waiting: leave
        # the queue, or the grant would count against everyone until its lease ends.
        withdraw = SettleRequest(grant=capacity.grant, tokens=0, sent_at=None)
        await asyncio.shield(limiter.signal(LIMITER_SETTLE_SIGNAL, withdraw))
        raise
    sent_at = datetime.now(UTC)
    tokens = capacity.tokens  # usage unknown (a timeout, a cancellation): the estimate
    try:
        response = await call()
        tokens = response.usage.total_tokens
        return response
    except ApplicationError as e:
        if e.type == "ModelRateLimited" and e.next_retry_delay is not None:
            seconds = e.next_retry_delay.total_seconds()
            pause = PauseRequest(seconds=seconds, reporter=capacity.grant)
            await limiter.signal(LIMITER_PAUSE_SIGNAL, pause)
        if e.type is not None and e.type.startswith("Model") and e.type != "ModelTimeout":
            tokens = 0  # the provider refused the call, or was never reached
        raise
    finally:
        settle = SettleRequest(grant=capacity.grant, tokens=tokens, sent_at=sent_at)
        await asyncio.shield(limiter.signal(LIMITER_SETTLE_SIGNAL, settle))
