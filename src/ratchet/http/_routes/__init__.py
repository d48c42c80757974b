"""The API's routes, one module per resource."""

from __future__ import annotations

from fastapi import APIRouter

from . import agents, agui, approvals, events, keys, limits, runs, session

__all__ = ["ROUTERS"]

ROUTERS: list[APIRouter] = [
    session.router,
    agents.router,
    runs.router,
    events.router,
    approvals.router,
    limits.router,
    keys.router,
    agui.router,
]
