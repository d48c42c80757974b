"""What every route reaches: the client, the agents, the authenticator, the settings;
and the tenant checks every route about one run goes through (also used by the A2A
server, ``ratchet.a2a``, which has no ``ApiContext``)."""

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

__all__ = ["ApiContext", "context", "run_visible_to", "start_as", "visible_run"]


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
    return await run_visible_to(ctx.client, principal, run_id)


async def run_visible_to(
    client: AgentClient, principal: Principal, run_id: str
) -> tuple[RunHandle, RunInput]:
    """:func:`visible_run` for a bare client."""
    not_found = RunNotFound(f"no run with id {run_id!r}; list runs with GET /v1/runs")
    handle = client.get(run_id)
    try:
        run_input = await handle.input()
    except (RunNotFound, ValueError):
        # ValueError: a workflow of another kind under this id (its input is no RunInput).
        raise not_found from None
    if not principal.sees(run_input.tenant):
        raise not_found
    return handle, run_input


async def start_as(
    client: AgentClient,
    principal: Principal,
    agent: str,
    prompt: str,
    *,
    id: str | None = None,
    model: str | None = None,
    chat: bool = False,
) -> RunHandle:
    """Start a run of ``agent`` as ``principal`` (in its tenant), or attach to the run
    with ``id`` when it is the same agent and prompt.

    Raises:
        ProblemError: 400 when the principal's tenant could never list the run; 409 when
            the id names a run the principal may not see.
        ConfigError: as :meth:`AgentClient.start` (e.g. ``id`` names another prompt's run).
    """
    if principal.tenant is not None and not await client.tenants_indexed():
        # Started now, the run could never be listed for its tenant.
        raise ProblemError(
            400,
            "ConfigError",
            f"cannot start runs for tenant {principal.tenant!r}: namespace "
            f"{client.temporal.namespace!r} has no RatchetTenant search attribute, so "
            "the tenant could never list them. Register ratchet's search attributes "
            "(`ratchet up` does for the embedded server; else "
            "`await ratchet.register_search_attributes(client)`)",
        )
    taken = ProblemError(
        409, "ConfigError", f"run id {id!r} is taken by another run; choose another"
    )
    if id is not None and principal.tenant is not None:
        # Checked before starting: attaching would answer with another tenant's details.
        try:
            await run_visible_to(client, principal, id)
        except RunNotFound:
            if await client.exists(id):
                raise taken from None
    handle = await client.start(
        agent, prompt, id=id, model=model, chat=chat, tenant=principal.tenant
    )
    if handle.existed and not principal.sees((await handle.input()).tenant):
        raise taken  # started by another tenant in the meantime
    return handle
