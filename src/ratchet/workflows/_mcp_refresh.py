"""Discovering MCP servers' tools again when a run continues as new, for servers
declared with ``refresh_on_continue_as_new=True`` (others keep the tools the run
recorded when it started). The new list is an activity's result: recorded, replayed."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from .._protocol import REFRESH_TOOLS_ACTIVITY, AgentSpec, ToolsRefresh, ToolsRefreshRequest
    from ..errors import RunErrorType

from ._failures import failure_of
from ._status import Status

__all__ = ["refreshed"]

_NOT_RETRIED: list[RunErrorType] = ["ConfigError", "UnknownAgent"]


async def refreshed(root: AgentSpec, *, store: bool, status: Status) -> AgentSpec:
    """``root`` (and its handoff targets) with refreshed MCP tools, where asked."""
    root = await _refreshed(root, store, status)
    if root.team:
        team = {name: await _refreshed(m, store, status) for name, m in root.team.items()}
        root = root.model_copy(update={"team": team})
    return root


async def _refreshed(spec: AgentSpec, store: bool, status: Status) -> AgentSpec:
    servers = list(dict.fromkeys(t.mcp_server for t in spec.tools if t.mcp_refresh))
    if not servers:
        return spec
    keep = [t for t in spec.tools if t.mcp_server not in servers]
    try:
        result: ToolsRefresh = await workflow.execute_activity(
            REFRESH_TOOLS_ACTIVITY,
            ToolsRefreshRequest(
                agent=spec.name, servers=[s for s in servers if s], keep=keep, store=store
            ),
            result_type=ToolsRefresh,
            activity_id=f"refresh-tools-{spec.name}",
            start_to_close_timeout=timedelta(seconds=60),
            retry_policy=RetryPolicy(maximum_attempts=5, non_retryable_error_types=_NOT_RETRIED),
            summary=f"discover the MCP tools of {spec.name} again",
        )
    except ActivityError as e:
        status.fail_from(
            failure_of(e), f"discovering the MCP tools of {spec.name!r} again failed: "
        )
    return spec.model_copy(update={"tools": result.tools, "tools_ref": result.tools_ref})
