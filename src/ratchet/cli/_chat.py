"""`ratchet chat` and `send`: conversations with an agent."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from .._protocol import DEFAULT_TASK_QUEUE
from ..client import AgentClient, RunHandle
from ..errors import ConfigError
from ._common import Address, Namespace, TaskQueue, _run, out


@_run
async def chat(
    agent: Annotated[str, typer.Argument(help="Name of the agent.")],
    id: Annotated[str | None, typer.Option("--id", help="Run id of the conversation.")] = None,
    model: Annotated[str | None, typer.Option(help="Override the model.")] = None,
    task_queue: TaskQueue = DEFAULT_TASK_QUEUE,
    address: Address = None,
    namespace: Namespace = None,
) -> None:
    """Talk with an agent: each line you type is a message; Ctrl-D or /exit ends."""
    client = await AgentClient.connect(address, namespace=namespace, task_queue=task_queue)
    handle: RunHandle | None = None
    while True:
        try:
            text = await asyncio.to_thread(input, "you> ")
        except EOFError:
            text = "/exit"
        if text.strip() in ("/exit", "/quit"):
            break
        if not text.strip():
            continue
        if handle is None:
            handle = await client.start(
                agent, text, id=id, model=model, chat=True, check_hosted=True
            )
            out.print(f"(run {handle.id})", markup=False)
            answer = await handle.first_reply()
        else:
            answer = (await handle.send(text)).output
        out.print(f"{agent}> {answer}", markup=False)
    if handle is not None:
        await handle.end_chat()
        out.print(f"(chat ended; `ratchet trace {handle.id}` shows it)", markup=False)


@_run
async def send(
    run_id: Annotated[str, typer.Argument(help="The chat run's id.")],
    message: Annotated[str, typer.Argument(help="The message.")],
    address: Address = None,
    namespace: Namespace = None,
) -> None:
    """Send one message to a chat run and print the agent's reply."""
    if not message.strip():
        raise ConfigError("the message is empty")
    client = await AgentClient.connect(address, namespace=namespace)
    reply = await client.get(run_id).send(message)
    out.print(reply.output, markup=False)
