"""The ratchet agents ``bench.streaming`` measures, and its worker process.

``python -m bench.worker ratchet_streaming ...`` hosts :data:`WORKER_AGENTS` in a
process of its own, so its CPU time is its own. Every agent talks to the scripted
server, which answers by the prompt's first word (see ``bench.streaming``). With
``BENCH_DISCARD_DELTAS=1`` the worker streams into :class:`DiscardedDeltas`: the CPU
of streaming without the delta store's writes.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence

from bench import workload
from temporalio.worker import Worker

from ratchet import Agent, OpenAICompatible, connect, create_worker, tool
from ratchet.streaming import CallKey, Delta, DeltaStore, StoredDelta

TTFT = "ttft"
"""One model call, its answer streamed: time to first token and the gaps after it."""
HISTORY = "history"
"""A tool call turn, then an answer turn: the history, streaming on or off."""
CPU_ON = "cpu_on"
CPU_OFF = "cpu_off"
"""One answer of known length, streamed or not: the worker's CPU."""
DISCARD_ENV = "BENCH_DISCARD_DELTAS"


def agent(name: str, *, stream: bool = True, tools: bool = False) -> Agent:
    return Agent(
        name,
        instructions=workload.INSTRUCTIONS,
        model=f"openai:{workload.MODEL}",
        tools=[tool(workload.lookup_order)] if tools else [],
        stream=stream,
    )


WORKER_AGENTS = [agent(TTFT), agent(CPU_ON), agent(CPU_OFF, stream=False)]


class DiscardedDeltas(DeltaStore):
    """Keeps no delta: the provider streams and the model activity hands every piece
    to its writer as usual, but nothing is written anywhere."""

    async def append(
        self, run_id: str, key: CallKey, attempt: int, deltas: Sequence[tuple[int, Delta]]
    ) -> None:
        return None

    async def read(
        self, key: CallKey, after: tuple[int, int] = (0, -1), limit: int = 1000
    ) -> list[StoredDelta]:
        return []

    async def version(self) -> int:
        return 0

    async def wait_changed(self, since: int, seconds: float) -> int:
        await asyncio.sleep(seconds)
        return 0

    async def delete_older_than(self, cutoff: float) -> int:
        return 0

    async def delete_run(self, run_id: str) -> int:
        return 0


def provider(base_url: str) -> OpenAICompatible:
    return OpenAICompatible(base_url=base_url, api_key=workload.API_KEY)


async def make_worker(address: str, queue: str, base_url: str) -> Worker:
    client = await connect(address)
    return create_worker(
        client,
        WORKER_AGENTS,
        task_queue=queue,
        providers={"openai": provider(base_url)},
        # None: the embedded default beside the transcripts, as any worker.
        delta_store=DiscardedDeltas() if os.environ.get(DISCARD_ENV) == "1" else None,
    )
