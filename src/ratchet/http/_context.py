"""What every route reaches: the client, the agents, the authenticator, the settings;
and the tenant check every route about one run goes through."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from fastapi import Request

from .._protocol import RunInput
from ..agent import Agent
from ..client import AgentClient, RunHandle
from ..errors import RunNotFound
from ..transcripts import TranscriptStore
from ._auth import Authenticator
from ._problems import ProblemError
from ._roles import Principal

__all__ = ["ApiContext", "context", "visible_run"]


@dataclass
class ApiContext:
    client: AgentClient
    agents: dict[str, Agent]
    auth: Authenticator
    keepalive_seconds: float
    temporal_ui_url: str | None
    sign_approval: Callable[..., str] | None
    """``ratchet.approval_proof.sign_approval`` bound to the server's secret, when
    authenticated approvals are on."""
    transcript_store: TranscriptStore | None

    def agent(self, name: str) -> Agent:
        agent = self.agents.get(name)
        if agent is None:
            raise ProblemError(
                404,
                "UnknownAgent",
                f"no agent named {name!r} here; GET /v1/agents lists them "
                f"({', '.join(sorted(self.agents)) or 'none'})",
            )
        return agent


def context(request: Request) -> ApiContext:
    ctx: ApiContext = request.app.state.ratchet
    return ctx


async def visible_run(
    ctx: ApiContext, principal: Principal, run_id: str
) -> tuple[RunHandle, RunInput]:
    """The run with this id and its input, if the principal may see it.

    Raises:
        RunNotFound: no such run, or it belongs to another tenant: both answer 404 with
            the same words, so a tenant cannot learn whether another's run id exists.
    """
    not_found = RunNotFound(f"no run with id {run_id!r}; list runs with GET /v1/runs")
    handle = ctx.client.get(run_id)
    try:
        run_input = await handle.input()
    except (RunNotFound, ValueError):
        # ValueError: a workflow of another kind under this id (its input is no RunInput).
        raise not_found from None
    if not principal.sees(run_input.tenant):
        raise not_found
    return handle, run_input
