"""`make demo`: the support agent, end to end, on the embedded defaults.

Starts (or reuses) the embedded Temporal dev server and the local LLM, hosts the
support agent in a worker inside this process, runs two customer requests and
prints each model call and tool call as it is recorded, and the model's answers as
they are written (``follow_run`` streams them). The services keep
running afterwards (`ratchet down` stops them), so a second demo starts at once.
"""

from __future__ import annotations

import asyncio
import os
import sys
import uuid

from rich.console import Console
from rich.markup import escape

from examples.support import agent, db
from ratchet import AgentClient, RunFailed, connect, create_worker, register_search_attributes
from ratchet.cli import follow_run
from ratchet.local import up

TASKS = ["Has order 1044 shipped?", "Please refund order 1043."]
console = Console(highlight=False, soft_wrap=True)


def plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


async def main() -> int:
    console.print(
        "[bold]ratchet demo[/]: starting the embedded services (first run builds the local LLM)"
    )
    services = up(on_progress=lambda line: console.print(f"  {line}", markup=False))
    client = await connect(services.temporal_address)
    await register_search_attributes(client)  # agent, status, tokens, cost in `ratchet ls`
    queue = f"ratchet-demo-{uuid.uuid4().hex[:6]}"
    failures = 0
    refund_runs: list[str] = []
    async with create_worker(client, [agent], task_queue=queue):
        agents = AgentClient(client, task_queue=queue)
        for prompt in TASKS:
            console.print()  # the follower prints the customer's message as its first step
            handle = await agents.start(agent.name, prompt)
            if "refund" in prompt:
                refund_runs.append(handle.id)
            await follow_run(handle, console)
            try:
                result = await handle.result()
            except RunFailed as e:
                failures += 1
                console.print(f"[red]run failed:[/] {escape(f'{e.error_type}: {e.message}')}")
            else:
                console.print(f"[bold green]answer:[/] {escape(result.output)}")
                console.print(
                    f"  {plural(result.turns, 'turn')} · {plural(result.tool_calls, 'tool call')}"
                    f" · {plural(result.usage.total_tokens, 'token')}"
                )
            console.print(f"  run id:  {handle.id}")
            console.print(f"  history: {services.ui_url}/namespaces/default/workflows/{handle.id}")
    for run_id in refund_runs:
        console.print(
            f"\nrefund rows written by {run_id} in {db.db_path()}: {db.refunds_by_run(run_id)}"
            " (the refund tool is idempotent by key: a retried call never adds a second row)"
        )
    console.print("The services keep running; `ratchet down` (or `make down`) stops them.")
    return 1 if failures else 0


if __name__ == "__main__":
    code = asyncio.run(main())
    sys.stdout.flush()
    sys.stderr.flush()
    # Skip interpreter teardown: the Temporal SDK can crash there in short scripts.
    os._exit(code)
