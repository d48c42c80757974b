"""`ratchet tools AGENT`: the tools an agent offers its model, MCP ones included."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Annotated

import typer

from .._app import load_agents
from .._tool_listing import discovered_spec, listed_tools
from ..agent import AgentSpec
from ..client import AgentClient
from ..errors import ConfigError
from ..events import AgentSnapshotted
from ._common import Address, Namespace, TaskQueue, _run, out


@_run
async def tools(
    agent: Annotated[str, typer.Argument(help="The agent's name.")],
    app_spec: Annotated[
        str | None,
        typer.Option(
            "--app",
            help="Read the agent from module:attribute and ask its MCP servers now "
            "(default: the tools of the agent's most recent run).",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON document.")] = False,
    task_queue: TaskQueue = "ratchet",
    address: Address = None,
    namespace: Namespace = None,
) -> None:
    """List an agent's tools with their JSON schemas: functions, sub-agents, handoffs
    and the tools of its MCP servers."""
    if app_spec is not None:
        agents = {a.name: a for a in load_agents(app_spec)}
        reachable = {n: a for found in agents.values() for n, a in found.reachable().items()}
        if agent not in reachable:
            raise ConfigError(
                f"{app_spec} has no agent named {agent!r} (it has: {', '.join(sorted(reachable))})"
            )
        spec = await discovered_spec(reachable[agent])
        asked = ", MCP servers asked now" if reachable[agent].mcp_servers else ""
        where = f"from {app_spec}{asked}"
    else:
        spec, run_id = await _latest_snapshot(agent, task_queue, address, namespace)
        where = f"as recorded by run {run_id}"
    listed = listed_tools(spec)
    if as_json:
        out.print_json(json.dumps({"agent": agent, "tools": [asdict(t) for t in listed]}))
        return
    out.print(f"agent {agent}: {len(listed)} tool(s), {where}", markup=False)
    for t in listed:
        out.print(f"\n{t.name}  [{t.source}] {t.detail}", markup=False)
        out.print(f"  {t.description}", markup=False)
        out.print(f"  parameters: {json.dumps(t.parameters)}", markup=False)


async def _latest_snapshot(
    agent: str, task_queue: str, address: str | None, namespace: str | None
) -> tuple[AgentSpec, str]:
    client = await AgentClient.connect(address, namespace=namespace, task_queue=task_queue)
    for run in await client.list(agent=agent, limit=20):
        async for event in client.get(run.id).events(follow=False):
            if isinstance(event, AgentSnapshotted):
                return event.spec, run.id
    raise ConfigError(
        f"no run of agent {agent!r} recorded its tools yet; start one, or pass "
        "--app module:attribute to read the agent's definition"
    )
