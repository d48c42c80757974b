"""Runs and pending approvals as MCP resources (JSON documents).

- ``ratchet://runs``: the most recent runs, newest first.
- ``ratchet://pending``: the tool calls (and spent budgets) waiting for approval,
  across runs.
- ``ratchet://runs/{run_id}``: one run: its status, its live step and pending
  approvals while it works, its answer or error once it ended.
- ``ratchet://runs/{run_id}/pending``: one run's pending approvals.

A run id is percent-encoded in a URI (``quote(run_id, safe="")``). A caller bound to
a tenant sees only that tenant's runs.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote, unquote

import mcp_types as types
from pydantic import TypeAdapter
from temporalio.client import WorkflowQueryFailedError
from temporalio.service import RPCError

from .._protocol import PendingApproval
from .._runs import RunInfo
from ..client import AgentClient, RunHandle
from ..errors import RatchetError, RunFailed
from ._caller import Caller, visible_run

__all__ = [
    "PENDING_URI",
    "RUNS_URI",
    "RUN_PENDING_TEMPLATE",
    "RUN_TEMPLATE",
    "RunResources",
    "run_pending_uri",
    "run_uri",
]

RUNS_URI = "ratchet://runs"
PENDING_URI = "ratchet://pending"
RUN_TEMPLATE = "ratchet://runs/{run_id}"
RUN_PENDING_TEMPLATE = "ratchet://runs/{run_id}/pending"
_JSON = "application/json"
_RECENT_RUNS = 50
_PENDING_SUFFIX = "/pending"


def run_uri(run_id: str) -> str:
    """The status resource of a run."""
    return f"{RUNS_URI}/{quote(run_id, safe='')}"


def run_pending_uri(run_id: str) -> str:
    """The pending-approvals resource of a run."""
    return run_uri(run_id) + _PENDING_SUFFIX


_INFO = TypeAdapter(RunInfo)


def _run_summary(info: RunInfo) -> dict[str, Any]:
    return {**_INFO.dump_python(info, mode="json"), "uri": run_uri(info.id)}


def _approval(run_id: str, approval: PendingApproval) -> dict[str, Any]:
    return {"run_id": run_id, **approval.model_dump(mode="json")}


class RunResources:
    """Lists and reads the resources for one :class:`~ratchet.AgentClient`."""

    def __init__(self, client: AgentClient) -> None:
        self.client = client

    @staticmethod
    def listed() -> list[types.Resource]:
        return [
            types.Resource(
                name="runs",
                title="Recent runs",
                uri=RUNS_URI,
                description=f"The {_RECENT_RUNS} most recent runs, newest first, each with "
                "its status and the URI of its own resource.",
                mime_type=_JSON,
            ),
            types.Resource(
                name="pending",
                title="Pending approvals",
                uri=PENDING_URI,
                description="Tool calls (and spent budgets) waiting for a person's approval, "
                "across runs. Answer them with `ratchet approve RUN CALL` or `ratchet deny`.",
                mime_type=_JSON,
            ),
        ]

    @staticmethod
    def templates() -> list[types.ResourceTemplate]:
        return [
            types.ResourceTemplate(
                name="run",
                title="A run's status",
                uri_template=RUN_TEMPLATE,
                description="One run: its status, its current step and pending approvals "
                "while it works, its answer or error once it ended.",
                mime_type=_JSON,
            ),
            types.ResourceTemplate(
                name="run-pending",
                title="A run's pending approvals",
                uri_template=RUN_PENDING_TEMPLATE,
                description="The tool calls of one run waiting for approval.",
                mime_type=_JSON,
            ),
        ]

    async def read(self, uri: str, caller: Caller) -> types.ReadResourceResult:
        """The resource at ``uri`` as ``caller`` may see it.

        Raises:
            RunNotFound: the URI names a run that does not exist (or is another
                tenant's).
            KeyError: no resource has this URI.
            ConfigError: a tenant's runs cannot be listed (the namespace lacks the
                tenant search attribute).
        """
        body: Any
        if uri == RUNS_URI:
            runs = await self.client.list(limit=_RECENT_RUNS, tenant=caller.tenant)
            body = {"runs": [_run_summary(r) for r in runs]}
        elif uri == PENDING_URI:
            waiting = await self.client.pending(tenant=caller.tenant)
            body = {"pending": [_approval(run_id, a) for run_id, a in waiting]}
        elif uri.startswith(RUNS_URI + "/"):
            rest = uri[len(RUNS_URI) + 1 :]
            pending = rest.endswith(_PENDING_SUFFIX)
            run_id = unquote(rest.removesuffix(_PENDING_SUFFIX) if pending else rest)
            if not run_id or "/" in rest.removesuffix(_PENDING_SUFFIX):
                raise KeyError(uri)
            handle, _ = await visible_run(self.client, caller, run_id)
            if pending:
                body = {"run_id": run_id, "pending": await _pending_of(handle)}
            else:
                body = await _run_view(handle)
        else:
            raise KeyError(uri)
        return types.ReadResourceResult(
            contents=[types.TextResourceContents(uri=uri, mime_type=_JSON, text=json.dumps(body))]
        )


async def _pending_of(handle: RunHandle) -> list[dict[str, Any]]:
    info = await handle.info()
    if info.closed is not None:
        return []  # an ended run waits for nothing (and no worker need answer)
    return [_approval(handle.id, a) for a in await handle.pending()]


async def _run_view(handle: RunHandle) -> dict[str, Any]:
    """A run's status document."""
    info = await handle.info()
    run_input = await handle.input()
    view: dict[str, Any] = {
        **_run_summary(info),
        "prompt": run_input.prompt,
        "pending_uri": run_pending_uri(handle.id),
    }
    if info.closed is None:
        view.update(step=None, pending_approvals=[])
        try:
            live = await handle.status()
        except (RPCError, WorkflowQueryFailedError, RatchetError):
            # No worker answered within the query's timeout: the server's view stands.
            return view
        view.update(
            status=live.state,
            step=live.step,
            turns=live.turn,
            pending_approvals=[_approval(handle.id, a) for a in live.pending_approvals],
        )
        return view
    try:
        result = await handle.result()
    except RunFailed as e:
        view.update(error_type=e.error_type, error=e.message)
    else:
        view.update(
            output=result.output,
            output_type=result.output_type,
            data=result.data,
            tool_calls=result.tool_calls,
            warnings=list(result.warnings),
        )
    return view
