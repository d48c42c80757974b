"""`ratchet tool run AGENT TOOL --args JSON`: one tool, durably, outside any run."""

from __future__ import annotations

import asyncio
import json
from dataclasses import asdict
from typing import Annotated, Any

import typer
from rich.markup import escape

from .._standalone_tools import ToolCallHandle, ToolCallProgress
from ..client import AgentClient
from ..errors import ConfigError
from ._common import Address, Namespace, TaskQueue, _run, err, out, ui_namespace_url

tool_app = typer.Typer(
    help="Run one tool of an agent on its own, as a Temporal standalone activity.",
    no_args_is_help=True,
)


@tool_app.command("run")
@_run
async def tool_run(
    agent: Annotated[str, typer.Argument(help="The agent whose tool it is.")],
    tool: Annotated[str, typer.Argument(help="The tool's name (ratchet tools AGENT).")],
    args: Annotated[
        str, typer.Option("--args", help="The tool's arguments, a JSON object.")
    ] = "{}",
    id: Annotated[
        str | None,
        typer.Option(
            "--id",
            help="Activity id (default: AGENT.TOOL-<random>). The same id again attaches "
            "to that call (running or completed); only a failed call's id runs again.",
        ),
    ] = None,
    idempotency_key: Annotated[
        str | None,
        typer.Option(
            "--idempotency-key",
            help="The key the tool sees (default: the activity id). Give a run's call "
            "key (RUN_ID/turnN-toolM) to redo that call's side effect by hand.",
        ),
    ] = None,
    approved_by: Annotated[
        str | None,
        typer.Option(
            "--approved-by",
            help="Who approved the call, for a tool the agent's policy puts behind an "
            "approval (recorded with the call).",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON document.")] = False,
    task_queue: TaskQueue = "ratchet",
    address: Address = None,
    namespace: Namespace = None,
) -> None:
    """Run one tool of AGENT durably, outside any run: with the tool's timeout, retries
    and heartbeat, the agent's policy, and one idempotency key for every attempt."""
    arguments = _parsed(tool, args)
    client = await AgentClient.connect(address, namespace=namespace, task_queue=task_queue)
    handle = await client.start_tool_call(
        agent, tool, arguments, id=id, idempotency_key=idempotency_key, approved_by=approved_by
    )
    result = await _waited(handle, show=not as_json)
    if as_json:
        out.print_json(json.dumps(asdict(result)))
    else:
        out.print(result.content, markup=False)
        attempts = f"{result.attempts} attempt{'s' if result.attempts != 1 else ''}"
        out.print(
            f"activity {result.activity_id} ({attempts}), idempotency key {result.idempotency_key}",
            markup=False,
        )
        pages = ui_namespace_url(address, namespace)
        if pages and result.activity_run_id:
            page = f"{pages}/activities/{result.activity_id}/{result.activity_run_id}"
        else:
            page = f"Standalone Activities, activity id {result.activity_id}"
        out.print(f"Web UI: {page}", markup=False)
        out.print(f"temporal activity describe --activity-id {result.activity_id}", markup=False)
    if result.is_error:
        raise typer.Exit(1)


def _parsed(tool: str, args: str) -> dict[str, Any]:
    try:
        arguments = json.loads(args)
    except ValueError as e:
        raise ConfigError(f"--args of tool {tool!r} is not valid JSON ({e})") from None
    if not isinstance(arguments, dict):
        raise ConfigError(f"--args of tool {tool!r} must be a JSON object, like '{{\"id\": 1}}'")
    return arguments


async def _waited(handle: ToolCallHandle, *, show: bool) -> Any:
    """The call's result; meanwhile (with ``show``) its state on stderr, asked every second."""
    waiting = asyncio.ensure_future(handle.result())
    if not show:
        return await waiting
    with err.status(escape(f"{handle.agent}.{handle.tool}: starting")) as status:
        while True:
            done, _ = await asyncio.wait({waiting}, timeout=1.0)
            if done:
                return waiting.result()
            status.update(escape(_line(handle, await handle.progress())))


def _line(handle: ToolCallHandle, progress: ToolCallProgress) -> str:
    line = f"{handle.agent}.{handle.tool}: {progress.state}, attempt {progress.attempt}"
    if progress.last_failure:
        line += f" (last attempt: {progress.last_failure})"
    return line
