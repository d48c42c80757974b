"""``/v1/approvals`` and ``/v1/runs/{id}/approvals/...``: the inbox, approve, deny.

The approver recorded is always the authenticated principal, never a name the caller
types. With authenticated approvals on (``RATCHET_APPROVAL_SECRET``), each answer also
carries a proof signed with the secret, which the run checks before recording it.
"""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Path
from temporalio.client import WorkflowQueryFailedError
from temporalio.service import RPCError

from ..._protocol import ApprovalRecord, PendingApproval
from ..._runs import RunInfo
from ...errors import ConfigError, RatchetError, RunNotFound
from .._context import ApiContext, visible_run
from .._problems import PROBLEM_RESPONSES, ProblemError
from .._roles import Principal
from .._schemas import NOT_BLANK, ApproveBody, DenyBody, PendingInfo, RunId
from ._deps import Approver, Ctx, Viewer

__all__ = ["router"]

router = APIRouter(prefix="/v1", tags=["approvals"], responses=PROBLEM_RESPONSES)

CallId = Annotated[str, Path(max_length=1000, pattern=NOT_BLANK)]
_MAX_RUNS = 500
"""The inbox asks at most this many waiting runs (newest first) for their calls."""


@router.get("/approvals", summary="Tool calls and budgets waiting for a decision, across runs")
async def pending_approvals(ctx: Ctx, principal: Viewer) -> list[PendingInfo]:
    # Without search attributes every running run must be asked.
    status = "waiting-approval" if await ctx.client.has_search_attributes() else "running"
    run_ids: list[str] = []
    runs: dict[str, RunInfo] = {}
    token: str | None = None
    while len(run_ids) < _MAX_RUNS:
        page = await ctx.client.list_page(
            status=status, tenant=principal.tenant, page_size=100, page_token=token
        )
        run_ids += [r.id for r in page.runs]
        runs.update((r.id, r) for r in page.runs)
        token = page.next_page_token
        if token is None:
            break
    answers = await asyncio.gather(
        *(ctx.client.get(i).pending() for i in run_ids), return_exceptions=True
    )
    out: list[PendingInfo] = []
    for run_id, calls in zip(run_ids, answers, strict=True):
        if isinstance(calls, WorkflowQueryFailedError | RPCError | RatchetError):
            continue  # closed meanwhile, or no worker to answer for it now
        if isinstance(calls, BaseException):
            raise calls
        out += [_info(runs[run_id], c) for c in calls]
    return sorted(out, key=lambda p: p.requested_at)


def _info(run: RunInfo, p: PendingApproval) -> PendingInfo:
    return PendingInfo(
        run_id=run.id,
        agent=run.agent,
        tenant=run.tenant,
        call_id=p.call_id,
        tool=p.tool,
        arguments=p.arguments,
        rule=p.rule,
        reason=p.reason,
        requested_at=p.requested_at,
        deadline=p.deadline,
        kind=p.kind,
    )


@router.post(
    "/runs/{run_id}/approvals/{call_id}/approve",
    summary="Approve a waiting call (or raise a spent budget)",
)
async def approve(
    run_id: RunId, call_id: CallId, body: ApproveBody, ctx: Ctx, principal: Approver
) -> ApprovalRecord:
    return await _answer(ctx, principal, run_id, call_id, True, body.reason, body.raise_to)


@router.post("/runs/{run_id}/approvals/{call_id}/deny", summary="Deny a waiting call, saying why")
async def deny(
    run_id: RunId, call_id: CallId, body: DenyBody, ctx: Ctx, principal: Approver
) -> ApprovalRecord:
    return await _answer(ctx, principal, run_id, call_id, False, body.reason, None)


async def _answer(
    ctx: ApiContext,
    principal: Principal,
    run_id: str,
    call_id: str,
    approve: bool,
    reason: str,
    raise_to: float | None,
) -> ApprovalRecord:
    handle, _ = await visible_run(ctx, principal, run_id)
    proof: str | None = None
    if ctx.sign_approval is not None:
        proof = ctx.sign_approval(
            run_id=run_id,
            call_id=call_id,
            approve=approve,
            approver=principal.name,
            raise_to=raise_to if approve else None,
        )
    try:
        if approve:
            record = await handle.approve(
                call_id, approver=principal.name, reason=reason, raise_to=raise_to, proof=proof
            )
        else:
            record = await handle.deny(call_id, approver=principal.name, reason=reason, proof=proof)
    except (RunNotFound, ConfigError):
        # The run was found a moment ago: it has ended since (and so has its approval).
        raise ProblemError(
            409, "ApprovalError", f"run {run_id!r} has ended; {call_id!r} waits no more"
        ) from None
    return record
