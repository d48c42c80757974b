"""The model activity's side of the provider limiter: reserve, wait, settle, report 429s.

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
from datetime import timedelta
from typing import Any, TypeVar

from temporalio import activity
from temporalio.client import (
    Client,
    WithStartWorkflowOperation,
    WorkflowUpdateFailedError,
)
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError

from ._limiter import (
    LIMITER_ACQUIRE_UPDATE,
    LIMITER_PAUSE_SIGNAL,
    LIMITER_SETTLE_SIGNAL,
    LIMITER_WORKFLOW_TYPE,
    AcquireReply,
    AcquireRequest,
    LimiterInput,
    PauseRequest,
    RateLimit,
    SettleRequest,
    limiter_id,
)
from ._protocol import ModelRequest, ModelResponse

__all__ = ["estimate_tokens", "limited_call"]

_log = logging.getLogger(__name__)
T = TypeVar("T")

_CHARS_PER_TOKEN = 4
"""The usual rule of thumb; the estimate only has to be close, settling corrects it."""
_MIN_POLL_SECONDS = 0.5
_RPC_RETRY_SECONDS = 0.5


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

    async def _acquire_once(self, request: AcquireRequest) -> AcquireReply:
        start: WithStartWorkflowOperation[Any, Any] = WithStartWorkflowOperation(
            LIMITER_WORKFLOW_TYPE,
            LimiterInput(provider=self.provider, limit=self.limit),
            id=limiter_id(self.provider),
            task_queue=self.task_queue,
            # Started by the first call that needs it; every later call finds it running.
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            static_summary=f"rate limiter of provider {self.provider}",
        )
        reply: AcquireReply = await self.client.execute_update_with_start_workflow(
            LIMITER_ACQUIRE_UPDATE,
            request,
            start_workflow_operation=start,
            result_type=AcquireReply,
            rpc_timeout=timedelta(seconds=10),
        )
        return reply

    async def acquire(self, request: AcquireRequest, deadline: float) -> None:
        """Wait (heartbeating) until the limiter grants ``request``.

        Raises:
            ApplicationError: ``ModelRateLimited`` (retryable) when the wait would not
                leave the call its own timeout before the activity's deadline.
        """
        waited = 0
        while True:
            try:
                reply = await self._acquire_once(request)
            except (RPCError, WorkflowUpdateFailedError) as e:
                # The limiter is between runs (continue-as-new) or the server is busy:
                # ask again shortly, the ticket keeps its place.
                _log.info("limiter %s: %s; asking again", self.provider, e)
                reply = AcquireReply(granted=False, wait_seconds=_RPC_RETRY_SECONDS)
            if reply.granted:
                return
            # Ask again at the estimated grant time, sooner when it is far off: settled
            # calls that used less than their estimate bring it forward.
            sleep = reply.wait_seconds
            if sleep > _MIN_POLL_SECONDS:
                sleep = max(_MIN_POLL_SECONDS, sleep * 0.6)
            if time.monotonic() + sleep > deadline:
                raise ApplicationError(
                    f"waited {waited} times for capacity of provider {self.provider!r} "
                    f"(position {reply.position} in its queue); the call is retried. Raise "
                    "Limits.model_timeout_seconds to let calls wait longer.",
                    type="ModelRateLimited",
                    next_retry_delay=timedelta(seconds=_MIN_POLL_SECONDS),
                )
            waited += 1
            activity.heartbeat(f"waiting for {self.provider} capacity, position {reply.position}")
            await asyncio.sleep(sleep)

    async def settle(self, ticket: str, tokens: int) -> None:
        try:
            handle = self.client.get_workflow_handle(limiter_id(self.provider))
            await handle.signal(LIMITER_SETTLE_SIGNAL, SettleRequest(ticket=ticket, tokens=tokens))
        except RPCError as e:  # the reservation then counts its estimate for one window
            _log.warning("limiter %s: could not settle %s: %s", self.provider, ticket, e)

    async def pause(self, seconds: float, reporter: str) -> None:
        try:
            handle = self.client.get_workflow_handle(limiter_id(self.provider))
            await handle.signal(
                LIMITER_PAUSE_SIGNAL, PauseRequest(seconds=seconds, reporter=reporter)
            )
        except RPCError as e:
            _log.warning("limiter %s: could not report a 429: %s", self.provider, e)


async def limited_call(
    provider: str,
    limit: RateLimit,
    request: ModelRequest,
    call: Callable[[], Awaitable[ModelResponse]],
) -> ModelResponse:
    """Run ``call`` within ``provider``'s limits, shared by every worker through its limiter.

    Reserves the estimated tokens first (waiting in the FIFO queue if need be),
    settles the reservation with the usage the provider reports, and turns a 429
    with ``Retry-After`` into a pause for every worker. The caller heartbeats
    (the wait for capacity included).
    """
    info = activity.info()
    limiter = _Limiter(activity.client(), provider, limit, info.task_queue)
    # One place in the queue per model call, kept across its attempts.
    ticket = f"{info.workflow_id}/{info.activity_id}"
    estimate = estimate_tokens(request, limit)
    # Keep the call's own timeout (plus slack) out of the time spent waiting.
    budget = (info.start_to_close_timeout or timedelta(hours=1)).total_seconds()
    deadline = time.monotonic() + budget - request.timeout_seconds - 5
    await limiter.acquire(
        AcquireRequest(ticket=ticket, attempt=info.attempt, tokens=estimate, agent=request.agent),
        deadline,
    )
    ticket = f"{ticket}#{info.attempt}"  # the reservation is the attempt's
    try:
        response = await call()
    except ApplicationError as e:
        if e.type == "ModelRateLimited" and e.next_retry_delay is not None:
            await limiter.pause(e.next_retry_delay.total_seconds(), ticket)
        if e.type is not None and e.type.startswith("Model") and e.type != "ModelTimeout":
            # The provider answered with an error: no tokens were used.
            await limiter.settle(ticket, 0)
        raise
    await limiter.settle(ticket, response.usage.total_tokens)
    return response
