"""`ratchet run`, `ls`, `show`, `trace` and `cancel`: starting and reading runs."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer
from temporalio.client import WorkflowQueryFailedError
from temporalio.service import RPCError

from .._protocol import DEFAULT_TASK_QUEUE
from .._render import describe_message, shorten
from ..agent import parse_model
from ..client import AgentClient
from ..errors import ConfigError, RunFailed
from ._common import Address, Namespace, TaskQueue, TranscriptStoreUrl, _run, _ui_url, out
from ._follow import _warn_if_no_worker, follow_run


@_run
async def run(
    agent: Annotated[str, typer.Argument(help="Name of the agent.")],
    prompt: Annotated[str, typer.Argument(help="What to ask the agent.")],
    id: Annotated[
        str | None, typer.Option("--id", help="Run id; reusing one attaches to that run.")
    ] = None,
    model: Annotated[
        str | None, typer.Option(help="Override the model, e.g. openai:gpt-4o-mini.")
    ] = None,
    wait: Annotated[bool, typer.Option(help="Follow the run until it ends.")] = True,
    task_queue: TaskQueue = DEFAULT_TASK_QUEUE,
    address: Address = None,
    namespace: Namespace = None,
) -> None:
    """Start a run of AGENT and follow its progress."""
    if not prompt.strip():
        raise ConfigError("the prompt is empty: tell the agent what to do")
    if model is not None:
        parse_model(model)
    client = await AgentClient.connect(address, namespace=namespace, task_queue=task_queue)
    handle = await client.start(agent, prompt, id=id, model=model, check_hosted=True)
    if not wait:
        out.print(handle.id)
        return
    out.print(f"run {handle.id}")
    hint = asyncio.create_task(_warn_if_no_worker(handle, task_queue))
    try:
        await follow_run(handle)
    finally:
        hint.cancel()
    result = await handle.result()
    out.print(f"\nanswer: {result.output}", markup=False)
    out.print(
        f"run:    {handle.id}  ({result.turns} turns, {result.tool_calls} tool calls, "
        f"{result.usage.total_tokens} tokens)"
    )
    if url := _ui_url(handle.id, address, namespace):
        out.print(f"history: {url}")


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
        raise ConfigError(f"run {run_id!r} is already {state}; only running runs can be cancelled")
    await handle.cancel()
    out.print(f"cancellation requested for {run_id}")


@_run
async def list_runs(
    agent: Annotated[str | None, typer.Option(help="Only runs of this agent.")] = None,
    status: Annotated[
        str | None,
        typer.Option(help="Only runs in this state: running, completed, failed, cancelled."),
    ] = None,
    limit: Annotated[int, typer.Option(help="How many runs to show.", min=1)] = 20,
    address: Address = None,
    namespace: Namespace = None,
) -> None:
    """List recent runs, newest first."""
    client = await AgentClient.connect(address, namespace=namespace)
    runs = await client.list(limit=limit, agent=agent, status=status)
    if not runs:
        out.print("no runs")
        return
    out.print(
        f"{'RUN':<40} {'AGENT':<16} {'STATUS':<12} {'STARTED':<19} TURNS TOKENS COST", markup=False
    )
    for r in runs:
        started = r.started.strftime("%Y-%m-%d %H:%M:%S") if r.started else "-"
        turns = "-" if r.turns is None else str(r.turns)
        tokens = "-" if r.tokens is None else str(r.tokens)
        cost = "-" if r.cost_usd is None else f"${r.cost_usd:.4f}"
        out.print(
            f"{r.id:<40} {r.agent:<16} {r.status:<12} {started:<19} {turns:>5} {tokens:>6} {cost}",
            markup=False,
        )


@_run
async def show(
    run_id: Annotated[str, typer.Argument(help="The run's id (see `ratchet ls`).")],
    address: Address = None,
    namespace: Namespace = None,
) -> None:
    """Show a run: status, final answer or error, turns and tool calls."""
    client = await AgentClient.connect(address, namespace=namespace)
    handle = client.get(run_id)
    state = await handle.temporal_status()
    out.print(f"run:     {run_id}")
    out.print(f"status:  {state}")
    try:
        transcript = await handle.transcript()
    except (RPCError, WorkflowQueryFailedError):
        transcript = []
        out.print("  (steps unavailable: the run is live and no worker answered; start one)")
    turn = 0
    for message in transcript:
        if message.role == "assistant":
            turn += 1
        if line := describe_message(message, turn):
            out.print(f"  {line}", markup=False)
    if state == "completed":
        result = await handle.result()
        out.print(f"answer:  {result.output}", markup=False)
        out.print(
            f"turns:   {result.turns}, tool calls: {result.tool_calls}, "
            f"tokens: {result.usage.total_tokens}"
        )
    elif state == "failed":
        try:
            await handle.result()
        except RunFailed as e:
            out.print(f"error:   {e.error_type}: {shorten(e.message, 400)}", markup=False)
    if url := _ui_url(run_id, address, namespace):
        out.print(f"history: {url}")
