"""``/v1/runs``: start, list, read, steer and cancel runs."""

from __future__ import annotations

import dataclasses
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Query, Response
from pydantic import AwareDatetime

from ..._history import execution_ids
from ..._protocol import ChatReply
from ..._runs import RunInfo, ratchet_spelling
from ...messages import Message
from ...trace import Trace, build_trace
from .._context import ApiContext, start_as, visible_run
from .._problems import PROBLEM_RESPONSES, ProblemError
from .._roles import Principal
from .._schemas import (
    AGENT_NAME,
    TENANT,
    Accepted,
    ExecutionRef,
    ForkedRun,
    ForkRun,
    RunDetail,
    RunId,
    RunPageBody,
    RunStatus,
    RunSummary,
    SendMessage,
    StartedRun,
    StartRun,
)
from ._deps import Ctx, Operator, Viewer

__all__ = ["router", "start_visible_run"]

router = APIRouter(prefix="/v1", tags=["runs"], responses=PROBLEM_RESPONSES)


async def start_visible_run(ctx: ApiContext, principal: Principal, body: StartRun) -> StartedRun:
    """Start a run as ``principal`` (in its tenant), or return the run with ``body.id``.

    Raises:
        ProblemError: 409 when the id names a run the principal may not see.
    """
    agent = ctx.agent(body.agent)
    handle = await start_as(
        ctx.client,
        principal,
        agent.name,
        body.prompt,
        id=body.id,
        model=body.model,
        chat=body.chat,
    )
    info = await handle.info()
    return StartedRun(id=handle.id, existed=handle.existed, agent=agent.name, status=info.status)


@router.post(
    "/runs",
    status_code=201,
    summary="Start a run (idempotent with a client-given id)",
    responses={200: {"model": StartedRun, "description": "The run with this id existed"}},
)
async def start_run(
    body: StartRun, ctx: Ctx, principal: Operator, response: Response
) -> StartedRun:
    started = await start_visible_run(ctx, principal, body)
    if started.existed:
        response.status_code = 200
    return started


@router.get("/runs", summary="List runs, newest first, a page at a time")
async def list_runs(
    ctx: Ctx,
    principal: Viewer,
    agent: Annotated[str | None, Query(pattern=AGENT_NAME)] = None,
    status: RunStatus | None = None,
    tenant: Annotated[str | None, Query(pattern=TENANT)] = None,
    started_after: AwareDatetime | None = None,
    started_before: AwareDatetime | None = None,
    page_size: Annotated[int, Query(ge=1, le=200)] = 50,
    page_token: str | None = None,
) -> RunPageBody:
    if principal.tenant is not None:
        if tenant not in (None, principal.tenant):
            return RunPageBody(runs=[], next_page_token=None)
        tenant = principal.tenant
    page = await ctx.client.list_page(
        agent=agent,
        status=status,
        tenant=tenant,
        started_after=started_after,
        started_before=started_before,
        page_size=page_size,
        page_token=page_token,
    )
    return RunPageBody(runs=[_summary(r) for r in page.runs], next_page_token=page.next_page_token)


def _summary(i: RunInfo) -> RunSummary:
    return RunSummary(
        id=i.id,
        agent=i.agent,
        status=i.status,
        tenant=i.tenant,
        started=i.started,
        closed=i.closed,
        turns=i.turns,
        tokens=i.tokens,
        cost_usd=i.cost_usd,
    )


@router.get("/runs/{run_id}", summary="A run's status and what it was started with")
async def get_run(run_id: RunId, ctx: Ctx, principal: Viewer) -> RunDetail:
    handle, run_input = await visible_run(ctx, principal, run_id)
    info = await handle.info()
    # The run's input is the truth for its tenant (the search attribute may be missing).
    summary = _summary(dataclasses.replace(info, tenant=run_input.tenant))
    ui = None
    if ctx.temporal_ui_url:
        namespace = quote(ctx.client.temporal.namespace, safe="")
        base = ctx.temporal_ui_url.rstrip("/")
        ui = f"{base}/namespaces/{namespace}/workflows/{quote(run_id, safe='')}"
    return RunDetail(
        **summary.model_dump(),
        prompt=run_input.prompt,
        model=run_input.model,
        chat=run_input.chat,
        temporal_ui_url=ui,
        executions=[
            ExecutionRef(execution=n, run_id=execution)
            for n, execution in enumerate(await execution_ids(ctx.client.temporal, run_id), 1)
        ],
    )


@router.get("/runs/{run_id}/trace", summary="A run's timeline: every prompt, call and result")
async def get_trace(run_id: RunId, ctx: Ctx, principal: Viewer) -> Trace:
    await visible_run(ctx, principal, run_id)
    return await build_trace(ctx.client.temporal, run_id, store=ctx.transcript_store)


@router.get("/runs/{run_id}/transcript", summary="Every message of a run so far")
async def get_transcript(run_id: RunId, ctx: Ctx, principal: Viewer) -> list[Message]:
    handle, _ = await visible_run(ctx, principal, run_id)
    return await handle.transcript(store=ctx.transcript_store)


@router.post("/runs/{run_id}/cancel", status_code=202, summary="Cancel a running run")
async def cancel_run(run_id: RunId, ctx: Ctx, principal: Operator) -> Accepted:
    handle, _ = await visible_run(ctx, principal, run_id)
    state = await handle.temporal_status()
    if state != "running":
        raise ProblemError(
            409,
            "ConfigError",
            f"run {run_id!r} is already {ratchet_spelling(state)}; "
            "only running runs can be cancelled",
        )
    await handle.cancel()
    return Accepted(id=run_id, action="cancel")


@router.post(
    "/runs/{run_id}/fork",
    status_code=201,
    summary="Start a new run from a step of this one (tool results before it are reused)",
)
async def fork_run(run_id: RunId, body: ForkRun, ctx: Ctx, principal: Operator) -> ForkedRun:
    await visible_run(ctx, principal, run_id)
    if body.id is not None and await ctx.client.exists(body.id):
        raise ProblemError(
            409, "ConfigError", f"run id {body.id!r} is taken by another run; choose another"
        )
    # The fork is the parent's tenant's run: the principal sees it as it sees the parent.
    handle = await ctx.client.fork(
        run_id,
        at=body.at,
        edit_message=body.edit_message,
        instructions=body.instructions,
        model=body.model,
        id=body.id,
        store=ctx.transcript_store,
    )
    info = await handle.info()
    started = await handle.input()
    assert started.fork is not None
    return ForkedRun(
        id=handle.id,
        agent=info.agent,
        status=info.status,
        forked_from=run_id,
        step=started.fork.step,
    )


@router.post("/runs/{run_id}/messages", summary="Send a chat run a message; wait for the reply")
async def send_message(
    run_id: RunId, body: SendMessage, ctx: Ctx, principal: Operator
) -> ChatReply:
    handle, _ = await visible_run(ctx, principal, run_id)
    return await handle.send(body.text)


@router.post("/runs/{run_id}/end", status_code=202, summary="End a chat run")
async def end_chat(run_id: RunId, ctx: Ctx, principal: Operator) -> Accepted:
    handle, run_input = await visible_run(ctx, principal, run_id)
    if not run_input.chat:
        raise ProblemError(409, "ConfigError", f"run {run_id!r} is not a chat; cancel it instead")
    state = await handle.temporal_status()
    if state != "running":
        raise ProblemError(
            409, "ConfigError", f"run {run_id!r} has already ended ({ratchet_spelling(state)})"
        )
    await handle.end_chat()
    return Accepted(id=run_id, action="end")
