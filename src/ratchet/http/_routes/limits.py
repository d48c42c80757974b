"""``/v1/limits``: the provider rate limiters, read and changed live."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path
from temporalio.service import RPCError, RPCStatusCode

from ..._limiter_protocol import LimiterStatus, limiter_id
from .._problems import PROBLEM_RESPONSES, ProblemError
from .._schemas import PROVIDER, LimitsChange
from ._deps import Admin, Ctx, Viewer

__all__ = ["router"]

router = APIRouter(prefix="/v1", tags=["limits"], responses=PROBLEM_RESPONSES)


@router.get("/limits", summary="Every provider limiter: limits, usage, queue")
async def get_limits(ctx: Ctx, _: Viewer) -> list[LimiterStatus]:
    return await ctx.client.limits()


@router.put("/limits/{provider}", summary="Change a provider's limits live")
async def set_limits(
    provider: Annotated[str, Path(pattern=PROVIDER)], body: LimitsChange, ctx: Ctx, _: Admin
) -> LimiterStatus:
    try:
        await ctx.client.temporal.get_workflow_handle(limiter_id(provider)).describe()
    except RPCError as e:
        if e.status != RPCStatusCode.NOT_FOUND:
            raise
        raise ProblemError(
            404,
            "ConfigError",
            f"provider {provider!r} has no limiter: it starts with the first model call of a "
            "worker given rate limits for it; GET /v1/limits lists the running ones",
        ) from None
    return await ctx.client.set_limits(
        provider, rpm=body.rpm, tpm=body.tpm, window_seconds=body.window_seconds
    )
