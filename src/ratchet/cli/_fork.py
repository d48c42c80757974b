"""`ratchet fork`: a new run from a step of a recorded one."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .._protocol import DEFAULT_TASK_QUEUE
from ..client import AgentClient
from ..errors import ConfigError
from ._common import Address, Namespace, Stream, TaskQueue, TranscriptStoreUrl, _run, out
from ._runs import follow_to_answer


@_run
async def fork(
    run_id: Annotated[str, typer.Argument(help="The run to fork (see `ratchet ls`).")],
    at: Annotated[
        str,
        typer.Option(
            "--at",
            help="The step, as `ratchet trace` numbers them: turnN (that model call's "
            "prompt) or msg:K (the transcript up to message K, then a model call).",
        ),
    ],
    edit_message: Annotated[
        str | None,
        typer.Option("--edit-message", help="Replace the user message the step ends with by TEXT."),
    ] = None,
    instructions: Annotated[
        Path | None,
        typer.Option("--instructions", help="A file with other instructions for the agent."),
    ] = None,
    model: Annotated[
        str | None, typer.Option(help="Another model, e.g. openai:gpt-4o-mini.")
    ] = None,
    id: Annotated[str | None, typer.Option("--id", help="The new run's id.")] = None,
    wait: Annotated[bool, typer.Option(help="Follow the new run until it ends.")] = False,
    stream: Stream = True,
    task_queue: TaskQueue = DEFAULT_TASK_QUEUE,
    address: Address = None,
    namespace: Namespace = None,
    transcript_store: TranscriptStoreUrl = None,
) -> None:
    """Start a new run from a step of RUN: the same prompt there (tool results reused,
    never run again), then live."""
    from ..transcripts import store_from_url

    text = None
    if instructions is not None:
        try:
            text = instructions.read_text()
        except OSError as e:
            raise ConfigError(
                f"cannot read the instructions file {str(instructions)!r}: {e.strerror}"
            ) from e
    client = await AgentClient.connect(address, namespace=namespace, task_queue=task_queue)
    store = store_from_url(transcript_store)
    try:
        handle = await client.fork(
            run_id,
            at=at,
            edit_message=edit_message,
            instructions=text,
            model=model,
            id=id,
            store=store,
        )
    finally:
        await store.close()
    agent = (await handle.input()).agent
    out.print(f"run {handle.id} (fork of {run_id} at {at})", markup=False)
    if not wait:
        out.print(
            f"follow it with `ratchet run {agent} --id {handle.id} --attach`, "
            f"see it with `ratchet trace {handle.id}`",
            markup=False,
        )
        return
    await follow_to_answer(
        handle, agent, stream=stream, task_queue=task_queue, address=address, namespace=namespace
    )
