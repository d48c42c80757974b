"""`ratchet run`, `ls`, `show`, `trace` and `cancel`: starting and reading runs."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from typing import Annotated

import typer
from temporalio.client import WorkflowQueryFailedError
from temporalio.service import RPCError

from .. import events as ev
from .._protocol import DEFAULT_TASK_QUEUE, RunInput
from .._render import describe_event, plural, shorten
from .._runs import ratchet_spelling
from ..agent import parse_model
from ..client import RUN_STATES, AgentClient, RunHandle, check_status
from ..errors import ConfigError, RatchetError, RunFailed
from ._common import (
    Address,
    Namespace,
    Stream,
    TaskQueue,
    TranscriptStoreUrl,
    _run,
    _ui_url,
    err,
    out,
)
from ._follow import _warn_if_no_worker, follow_run


@_run
async def run(
    agent: Annotated[str, typer.Argument(help="Name of the agent.")],
    prompt: Annotated[
        str | None, typer.Argument(help="What to ask the agent (not needed with --attach).")
    ] = None,
    id: Annotated[
        str | None,
        typer.Option("--id", help="Run id; the same id and prompt again attach to that run."),
    ] = None,
    attach: Annotated[
        bool,
        typer.Option(
            "--attach", help="Follow the run that has this --id, whatever its prompt was."
        ),
    ] = False,
    model: Annotated[
        str | None, typer.Option(help="Override the model, e.g. openai:gpt-4o-mini.")
    ] = None,
    wait: Annotated[bool, typer.Option(help="Follow the run until it ends.")] = True,
    stream: Stream = True,
    task_queue: TaskQueue = DEFAULT_TASK_QUEUE,
    address: Address = None,
    namespace: Namespace = None,
) -> None:
    """Start a run of AGENT and follow its progress."""
    if attach and id is None:
        raise ConfigError("--attach follows the run with this --id: give --id RUN")
    if prompt is None and attach:
        prompt = (await _existing_input(id, address, namespace)).prompt
    if prompt is None or not prompt.strip():
        raise ConfigError("the prompt is empty: tell the agent what to do")
    if model is not None:
        parse_model(model)
    client = await AgentClient.connect(address, namespace=namespace, task_queue=task_queue)
    handle = await client.start(
        agent, prompt, id=id, model=model, check_hosted=not attach, attach=attach
    )
    if not wait:
        out.print(handle.id)
        return
    following = " (it existed already: following it)" if handle.existed else ""
    out.print(f"run {handle.id}{following}")
    await follow_to_answer(
        handle, agent, stream=stream, task_queue=task_queue, address=address, namespace=namespace
    )


async def follow_to_answer(
    handle: RunHandle,
    agent: str,
    *,
    stream: bool,
    task_queue: str,
    address: str | None,
    namespace: str | None,
) -> None:
    """Follow a run as ``ratchet run`` does, then print its answer (or raise its failure)."""
    url = _ui_url(handle.id, address, namespace)
    hint = asyncio.create_task(_warn_if_no_worker(handle, task_queue))
    try:
        await follow_run(handle, stream=stream)
    except asyncio.CancelledError:  # Ctrl-C: the run is durable, only this view ends
        err.print(
            f"stopped following; run {handle.id} goes on. Follow it again with "
            f"`ratchet run {agent} --id {handle.id} --attach`, see it with "
            f"`ratchet show {handle.id}`, stop it with `ratchet cancel {handle.id}`",
            markup=False,
        )
        raise typer.Exit(130) from None
    finally:
        hint.cancel()
    try:
        result = await handle.result()
    except RunFailed:
        if url:
            err.print(f"history: {url}", markup=False)
        raise
    out.print(f"\nanswer: {result.output}", markup=False)
    for warning in result.warnings:
        out.print(f"warning: {warning}", markup=False)
    out.print(
        f"run:    {handle.id}  ({plural(result.turns, 'turn')}, "
        f"{plural(result.tool_calls, 'tool call')}, {plural(result.usage.total_tokens, 'token')})"
    )
    if url:
        out.print(f"history: {url}")


async def _existing_input(
    run_id: str | None, address: str | None, namespace: str | None
) -> RunInput:
    """What the run with this id was started with (``--attach`` without a prompt)."""
    assert run_id is not None
    client = await AgentClient.connect(address, namespace=namespace)
    return await client.get(run_id).input()


@_run
async def trace(
    run_id: Annotated[str, typer.Argument(help="The run's id (see `ratchet ls`).")],
    full: Annotated[
        bool, typer.Option("--full", help="Show whole messages, not shortened.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the trace as JSON.")] = False,
    address: Address = None,
    namespace: Namespace = None,
    transcript_store: TranscriptStoreUrl = None,
) -> None:
    """Show a run's timeline from its event history: every prompt, call, result and retry."""
    from .._connect import connect
    from ..trace import build_trace, render_trace
    from ..transcripts import store_from_url

    if not run_id.strip():
        raise ConfigError("the run id is empty")
    store = store_from_url(transcript_store)
    try:
        t = await build_trace(await connect(address, namespace=namespace), run_id, store=store)
    finally:
        await store.close()
    if as_json:
        print(t.model_dump_json(indent=2))
        return
    for line in render_trace(t, full=full):
        out.print(line, markup=False)


@_run
async def cancel(
    run_id: Annotated[str, typer.Argument(help="The run's id (see `ratchet ls`).")],
    address: Address = None,
    namespace: Namespace = None,
) -> None:
    """Cancel a run: in-flight calls are cancelled, the transcript is kept."""
    client = await AgentClient.connect(address, namespace=namespace)
    handle = client.get(run_id)
    state = await handle.temporal_status()
    if state != "running":
        raise ConfigError(
            f"run {run_id!r} is already {ratchet_spelling(state)}; "
            "only running runs can be cancelled"
        )
    await handle.cancel()
    out.print(f"cancellation requested for {run_id}")


@_run
async def list_runs(
    agent: Annotated[str | None, typer.Option(help="Only runs of this agent.")] = None,
    status: Annotated[
        str | None,
        typer.Option(help=f"Only runs in this state: {', '.join(RUN_STATES)}."),
    ] = None,
    limit: Annotated[int, typer.Option(help="How many runs to show.", min=1)] = 20,
    address: Address = None,
    namespace: Namespace = None,
) -> None:
    """List recent runs, newest first (times in UTC)."""
    if status is not None:
        check_status(status)
    client = await AgentClient.connect(address, namespace=namespace)
    runs = await client.list(limit=limit, agent=agent, status=status)
    if not runs:
        out.print("no runs")
        return
    rows = [
        (
            r.id,
            r.agent,
            r.status,
            _utc(r.started),
            "-" if r.turns is None else str(r.turns),
            "-" if r.tokens is None else str(r.tokens),
            "-" if r.cost_usd is None else f"${r.cost_usd:.4f}",
        )
        for r in runs
    ]
    header = ("RUN", "AGENT", "STATUS", "STARTED (UTC)", "TURNS", "TOKENS", "COST")
    # Columns as wide as their longest value: a long id or status never shifts the rest.
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    right = {4, 5}  # numbers
    for row in [header, *rows]:
        cells = [
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        out.print("  ".join(cells).rstrip(), markup=False)


def _utc(at: datetime | None) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S") if at else "-"


@_run
async def show(
    run_id: Annotated[str, typer.Argument(help="The run's id (see `ratchet ls`).")],
    address: Address = None,
    namespace: Namespace = None,
) -> None:
    """Show a run: its state, what waits for whom, its steps, the answer or error."""
    client = await AgentClient.connect(address, namespace=namespace)
    handle = client.get(run_id)
    info = await handle.info()
    events = [e async for e in handle.events(follow=False)]
    out.print(f"run:     {run_id}")
    out.print(f"agent:   {info.agent}")
    out.print(f"status:  {info.status}{_status_note(info.status, run_id)}", markup=False)
    origin = next((e.forked_from for e in events if isinstance(e, ev.RunStarted)), None)
    if origin is not None:
        out.print(f"forked:  from {origin.run_id} at {origin.step}")
    for e in events:
        if line := describe_event(e, run_id):
            out.print(f"  {line}", markup=False)
    if info.status == "waiting-approval":
        await _show_waiting(handle, events, run_id)
    end = next((e for e in events if isinstance(e, ev.RunFinished)), None)
    if end is not None and end.outcome == "completed":
        out.print(f"answer:  {end.output}", markup=False)
        usage = end.usage.total_tokens if end.usage else 0
        out.print(
            f"turns:   {end.turns}, tool calls: "
            f"{sum(1 for e in events if isinstance(e, ev.ToolCallStarted))}, tokens: {usage}"
        )
        for warning in end.warnings:
            out.print(f"warning: {warning}", markup=False)
    elif end is not None and end.outcome != "completed":
        what = f"{end.error_type}: " if end.error_type else ""
        out.print(f"error:   {what}{shorten(end.error or end.outcome, 400)}", markup=False)
    if url := _ui_url(run_id, address, namespace):
        out.print(f"history: {url}")


def _status_note(status: str, run_id: str) -> str:
    """What a waiting state waits for, and the command that moves it on."""
    if status == "queued":
        return " (waiting for a concurrency slot of its agent or tenant: `ratchet limits`)"
    if status == "waiting-input":
        return f' (a chat waiting for the next message: `ratchet send {run_id} "..."`)'
    if status == "waiting-approval":
        return " (a person must decide; see below)"
    return ""


async def _show_waiting(handle: RunHandle, events: list[ev.RunEvent], run_id: str) -> None:
    """The calls waiting for approval, with the commands that answer them."""
    try:
        waiting = await handle.pending()  # exact, budgets included; needs a worker
    except (RPCError, WorkflowQueryFailedError, RatchetError):
        answered = {e.record.call_id for e in events if isinstance(e, ev.ApprovalAnswered)}
        waiting = [
            e.approval
            for e in events
            if isinstance(e, ev.ApprovalRequested) and e.approval.call_id not in answered
        ]
    for p in waiting:
        out.print(
            f"waiting: {p.call_id} {p.tool}({json.dumps(p.arguments)}) by rule {p.rule!r}, "
            f"until {p.deadline:%Y-%m-%d %H:%M:%S %Z}",
            markup=False,
        )
        out.print(
            f"         `ratchet approve {run_id} {p.call_id}` or "
            f"`ratchet deny {run_id} {p.call_id} --reason ...`",
            markup=False,
        )
