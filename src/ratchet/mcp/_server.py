"""ratchet agents as an MCP server: each agent is a tool that runs it on a prompt.

A call starts a durable run (:meth:`ratchet.AgentClient.start`), reports the run's
steps as MCP progress notifications while it works, and returns its answer: the text,
and for an agent with an output type the structured answer as structured content. A
run that fails is a tool error result naming the error type (``BudgetExceeded``,
``Cancelled``...), so the calling model sees what happened. A call the client gives
up on leaves the run going: calling again with the same ``run_id`` returns its answer.

Runs and approvals are resources (see ``_resources``). Serve it with
:func:`serve_mcp_stdio` or over streamable HTTP with
:func:`ratchet.mcp.create_mcp_http_app`; ``ratchet mcp serve`` does either.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import anyio
import mcp_types as types
from mcp.server import Server, ServerRequestContext
from mcp.server.stdio import stdio_server
from mcp.shared.exceptions import MCPError
from mcp_types import INVALID_PARAMS

from .._protocol import RunResult
from ..agent import Agent
from ..client import AgentClient, RunHandle
from ..errors import ConfigError, RatchetError, RunFailed, RunNotFound
from ._caller import Caller, caller_of, visible_run
from ._catalog import PROMPT, RUN_ID, AgentCatalog, OfferedAgent
from ._progress import progress_line
from ._resources import RunResources, run_uri
from ._single_tools import SingleTools

__all__ = ["RUN_META_KEY", "create_mcp_server", "serve_mcp_stdio"]

_log = logging.getLogger("ratchet.mcp")

RUN_META_KEY = "ratchet/run"
"""The ``_meta`` entry of a tool result that describes its run: id, resource URI,
turns, tool calls, tokens, cost, warnings (or the error type of a failed run)."""

_DRAIN_SECONDS = 5.0

_INSTRUCTIONS = (
    "Each tool runs one ratchet agent on a prompt, as a durable run, and returns its "
    "answer. Runs survive restarts and may wait for a person's approval; the resource "
    "ratchet://runs/{run_id} shows a run's status, ratchet://pending what waits for "
    "approval."
)


def create_mcp_server(
    client: AgentClient,
    agents: Sequence[Agent | str] | None = None,
    *,
    name: str = "ratchet",
    tools: Sequence[str] = (),
) -> Server[Any]:
    """An MCP server whose tools run ratchet agents.

    Args:
        client: starts the runs (its task queue is the agents' workers').
        agents: the agents offered as tools: ``Agent`` objects (the tools then describe
            their instructions and declare their output type's schema) or names. None:
            the agents the workers polling the client's task queue announce, looked up
            again every few seconds.
        name: the server's name, as MCP clients show it.
        tools: single tools of agents to offer too, as ``AGENT.TOOL``: each call runs
            the one tool on its own (:meth:`ratchet.AgentClient.call_tool`), no model,
            under the agent's policy; a tool that needs approval is refused. Not
            offered to callers whose API key belongs to a tenant.

    Returns:
        A low-level ``mcp.server.Server``: serve it over stdio with
        :func:`serve_mcp_stdio`, over HTTP with :func:`ratchet.mcp.create_mcp_http_app`.

    Raises:
        ConfigError: an agent name is invalid, or a single tool is not ``AGENT.TOOL``.
    """
    runs = _AgentTools(client, AgentCatalog(client, agents))
    single = SingleTools(client, tools)
    resources = RunResources(client)

    async def list_tools(
        ctx: ServerRequestContext[Any, Any], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        # Refuses an HTTP request nobody authenticated, as every handler does.
        caller = caller_of(ctx)
        offered = [a.tool() for a in await runs.catalog.offered()]
        return types.ListToolsResult(tools=offered + await single.listed(caller))

    async def call_tool(
        ctx: ServerRequestContext[Any, Any], params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        if single.offers(params.name):
            return await single.call(caller_of(ctx), params.name, params.arguments or {})
        return await runs.call(ctx, params.name, params.arguments or {})

    async def list_resources(
        ctx: ServerRequestContext[Any, Any], params: types.PaginatedRequestParams | None
    ) -> types.ListResourcesResult:
        caller_of(ctx)
        return types.ListResourcesResult(resources=resources.listed())

    async def list_templates(
        ctx: ServerRequestContext[Any, Any], params: types.PaginatedRequestParams | None
    ) -> types.ListResourceTemplatesResult:
        caller_of(ctx)
        return types.ListResourceTemplatesResult(resource_templates=resources.templates())

    async def read_resource(
        ctx: ServerRequestContext[Any, Any], params: types.ReadResourceRequestParams
    ) -> types.ReadResourceResult:
        caller = caller_of(ctx)
        try:
            return await resources.read(params.uri, caller)
        except KeyError:
            raise MCPError(
                INVALID_PARAMS,
                f"no resource {params.uri!r}: resources/list and resources/templates/list "
                "name them",
            ) from None
        except (RunNotFound, ConfigError) as e:
            raise MCPError(INVALID_PARAMS, str(e)) from None

    return Server(
        name,
        version=_version(),
        title="ratchet agents",
        instructions=_INSTRUCTIONS,
        on_list_tools=list_tools,
        on_call_tool=call_tool,
        on_list_resources=list_resources,
        on_list_resource_templates=list_templates,
        on_read_resource=read_resource,
    )


async def serve_mcp_stdio(server: Server[Any]) -> None:
    """Serve ``server`` over this process's stdin and stdout until the client closes them.

    Nothing else may write to stdout meanwhile: it carries the protocol.
    """
    async with stdio_server() as (read, write):
        await server.run(read, write, server.create_initialization_options())


class _AgentTools:
    """Runs an agent for each tool call."""

    def __init__(self, client: AgentClient, catalog: AgentCatalog) -> None:
        self.client = client
        self.catalog = catalog

    async def call(
        self, ctx: ServerRequestContext[Any, Any], name: str, arguments: dict[str, Any]
    ) -> types.CallToolResult:
        caller = caller_of(ctx)
        agent = await self.catalog.find(name)
        if agent is None:
            offered = ", ".join(a.name for a in await self.catalog.offered()) or "none"
            raise MCPError(
                INVALID_PARAMS, f"no agent named {name!r} here; tools/list lists them ({offered})"
            )
        try:
            prompt, run_id = _arguments(arguments)
            handle = await self._start(caller, agent, prompt, run_id)
        except RatchetError as e:
            return _error(type(e).__name__, str(e))
        try:
            outcome = await _outcome(ctx, handle)
        except RatchetError as e:  # e.g. the run vanished (its namespace's retention)
            return _error(type(e).__name__, str(e), run={"id": handle.id})
        if isinstance(outcome, RunFailed):
            run = {"id": handle.id, "uri": run_uri(handle.id)}
            return _error(outcome.error_type, outcome.message, run=run)
        result = outcome
        summary = {
            "id": handle.id,
            "uri": run_uri(handle.id),
            "turns": result.turns,
            "tool_calls": result.tool_calls,
            "total_tokens": result.usage.total_tokens,
            "cost_usd": result.cost_usd,
            "warnings": list(result.warnings),
        }
        return types.CallToolResult(
            content=[types.TextContent(text=result.output)],
            structured_content=agent.structured(result.data) if result.output_type else None,
            _meta={RUN_META_KEY: summary},
        )

    async def _start(
        self, caller: Caller, agent: OfferedAgent, prompt: str, run_id: str | None
    ) -> RunHandle:
        """Start the run (or attach to the one with ``run_id``) as ``caller``."""
        taken = ConfigError(f"run id {run_id!r} is taken by another run; choose another")
        if caller.tenant is not None:
            if not await self.client.tenants_indexed():
                raise ConfigError(
                    f"cannot start runs for tenant {caller.tenant!r}: namespace "
                    f"{self.client.temporal.namespace!r} has no RatchetTenant search "
                    "attribute, so the tenant could never see them"
                )
            if run_id is not None:
                # Checked before attaching: attaching would answer with another's run.
                try:
                    await visible_run(self.client, caller, run_id)
                except RunNotFound:
                    if await self.client.exists(run_id):
                        raise taken from None
        handle = await self.client.start(
            agent.name, prompt, id=run_id, tenant=caller.tenant, check_hosted=True
        )
        if (
            handle.existed
            and caller.tenant is not None
            and (await handle.input()).tenant != caller.tenant
        ):
            raise taken  # started by another tenant in the meantime
        return handle


def _arguments(arguments: dict[str, Any]) -> tuple[str, str | None]:
    """The prompt and the run id of a call.

    Raises:
        ConfigError: a missing or empty prompt, an empty or non-string run id, an
            unknown argument.
    """
    unknown = sorted(set(arguments) - {PROMPT, RUN_ID})
    if unknown:
        raise ConfigError(
            f"unknown argument {unknown[0]!r}: an agent takes {PROMPT!r} and optionally {RUN_ID!r}"
        )
    prompt = arguments.get(PROMPT)
    if not isinstance(prompt, str) or not prompt.strip():
        raise ConfigError(f"{PROMPT!r} must be a non-empty string: tell the agent what to do")
    run_id = arguments.get(RUN_ID)
    if run_id is not None and (not isinstance(run_id, str) or not run_id.strip()):
        raise ConfigError(f"{RUN_ID!r} must be a non-empty string when given")
    return prompt, run_id


async def _outcome(ctx: ServerRequestContext[Any, Any], handle: RunHandle) -> RunResult | RunFailed:
    """How the run ends, reporting its steps as progress while it works."""
    async with anyio.create_task_group() as progress:
        reported = anyio.Event()
        progress.start_soon(_report_progress, ctx, handle, reported)
        try:
            outcome: RunResult | RunFailed
            try:
                outcome = await handle.result()
            except RunFailed as e:
                outcome = e
            # The result may come before the follower read the last events: let it
            # report them, so the client sees the run end before the answer.
            with anyio.move_on_after(_DRAIN_SECONDS):
                await reported.wait()
        finally:
            progress.cancel_scope.cancel()
    return outcome


async def _report_progress(
    ctx: ServerRequestContext[Any, Any], handle: RunHandle, done: anyio.Event
) -> None:
    """Send a progress notification for each step of the run (a no-op for a client that
    asked for none), until the run's last event; then set ``done``. Progress is a view:
    a failure to follow the run is only logged."""
    step = 0
    try:
        async for event in handle.events(tokens=False):
            line = progress_line(event, handle.id)
            if line is not None:
                step += 1
                await ctx.session.report_progress(step, None, line)
    except Exception as e:  # the answer still comes from the run's result
        _log.warning("run %s: progress stopped: %s: %s", handle.id, type(e).__name__, e)
    finally:
        done.set()


def _error(
    error_type: str, message: str, *, run: dict[str, Any] | None = None
) -> types.CallToolResult:
    """A tool error result: the calling model reads what went wrong."""
    where = f" (run {run['id']})" if run else ""
    meta = {RUN_META_KEY: {**run, "error_type": error_type}} if run else None
    return types.CallToolResult(
        content=[types.TextContent(text=f"{error_type}: {message}{where}")],
        is_error=True,
        _meta=meta,
    )


def _version() -> str:
    try:
        return version("ratchet")
    except PackageNotFoundError:
        return ""
