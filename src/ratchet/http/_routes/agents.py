"""``/v1/agents``: the agents this server starts runs of."""

from __future__ import annotations

from fastapi import APIRouter

from .._problems import PROBLEM_RESPONSES
from .._schemas import AgentInfo, AgentName
from ._deps import Ctx, Viewer

__all__ = ["router"]

router = APIRouter(prefix="/v1", tags=["agents"], responses=PROBLEM_RESPONSES)


@router.get("/agents", summary="List the agents")
async def list_agents(ctx: Ctx, _: Viewer) -> list[AgentInfo]:
    return [AgentInfo.of(a) for _, a in sorted(ctx.agents.items())]


@router.get("/agents/{name}", summary="Describe one agent")
async def get_agent(name: AgentName, ctx: Ctx, _: Viewer) -> AgentInfo:
    return AgentInfo.of(ctx.agent(name))
