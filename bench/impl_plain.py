"""(a) The non-durable floor: a plain asyncio loop with the ``openai`` client, in process.

Run by ``bench.worker`` as a runner that takes commands on stdin, so its CPU and
memory are measured like a Temporal worker's.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import openai

from . import workload


class PlainAgent:
    def __init__(self, base_url: str) -> None:
        self.client = openai.AsyncOpenAI(base_url=base_url, api_key=workload.API_KEY, max_retries=0)

    async def run(self, approval: asyncio.Event | None = None, parked: Any = None) -> str:
        messages = workload.first_messages()
        for _ in range(10):
            completion = await self.client.chat.completions.create(
                model=workload.MODEL,
                messages=messages,  # type: ignore[arg-type]
                tools=workload.OPENAI_TOOLS,  # type: ignore[arg-type]
                timeout=120,
            )
            message = completion.choices[0].message
            messages.append(workload.assistant_message(message))
            if not message.tool_calls:
                return message.content or ""
            if approval is not None:
                # Waiting on a person before the tool runs: the run sits in memory.
                parked()
                await approval.wait()
            results = await asyncio.gather(
                *(
                    workload.run_tool_call(c.function.name, c.function.arguments)  # type: ignore[union-attr]
                    for c in message.tool_calls
                )
            )
            messages.extend(
                {"role": "tool", "tool_call_id": c.id, "content": r}
                for c, r in zip(message.tool_calls, results, strict=True)
            )
        raise RuntimeError("no final answer within 10 turns")


class Runner:
    """Answers the driver's commands (one JSON object per line)."""

    def __init__(self, base_url: str) -> None:
        self.agent = PlainAgent(base_url)
        self.approval = asyncio.Event()
        self.parked_tasks: list[asyncio.Task[str]] = []

    async def command(self, cmd: dict[str, Any]) -> dict[str, Any]:
        if cmd["cmd"] == "run":
            return await self._burst(int(cmd["n"]))
        if cmd["cmd"] == "park":
            n = int(cmd["n"])
            arrived = 0
            all_parked = asyncio.Event()

            def parked() -> None:
                nonlocal arrived
                arrived += 1
                if arrived == n:
                    all_parked.set()

            self.parked_tasks = [
                asyncio.create_task(self.agent.run(self.approval, parked)) for _ in range(n)
            ]
            await all_parked.wait()
            return {"parked": n}
        return {"error": f"unknown command {cmd['cmd']!r}"}

    async def _burst(self, n: int) -> dict[str, Any]:
        start = time.monotonic()

        async def one() -> tuple[float, float]:
            t0 = time.monotonic()
            output = await self.agent.run()
            if output != workload.FINAL_ANSWER:
                raise RuntimeError(f"unexpected answer {output!r}")
            t1 = time.monotonic()
            return t1 - t0, t1

        done = await asyncio.gather(*(one() for _ in range(n)))
        return {
            "latencies": [d[0] for d in done],
            "wall": max(d[1] for d in done) - start,
        }
