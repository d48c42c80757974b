"""Kill-to-next-step latency after `kill -9` of a worker, measured (not asserted).

    python -m scripts.recovery_time [--repeat 5]

For each repetition a run is started on worker A; while its model call (or its
tool call) is in flight, A is killed with SIGKILL and worker B is started. We
measure, from the kill:

- `retry`: until the interrupted call is started again on B (what the heartbeat
  timeout buys);
- `done`: until the run completes (adds the sticky-queue hand-over of the next
  workflow task).

Two agents run the same script: `recovery` with ratchet's defaults (heartbeat
timeouts of 2 s, sticky-queue timeout 1 s) and `recovery_baseline` with a 10 s
heartbeat, the kind of value people set by hand. The last lines print medians,
p95 and the ratio to the baseline. Target: about 2-3 s to the retried step.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from ratchet import AgentClient
from ratchet.testing import ScriptedModelServer, call, hang, reply, tool_calls
from tests.conftest import API_KEY, temporal_binary
from tests.workers import WorkerProcess, tool_log, wait_for


async def one(env: WorkflowEnvironment, agent: str, phase: str, tmp: Path) -> tuple[float, float]:
    address = env.client.service_client.config.target_host
    queue = f"recovery-{uuid.uuid4().hex[:6]}"
    if phase == "model":
        steps = [hang(), reply("done")]
    else:
        steps = [tool_calls(call("refund", {"order_id": 1042})), reply("done")]
    with ScriptedModelServer(steps, expected_api_key=API_KEY) as server:
        a = WorkerProcess(address, queue, server, tmp, pause_in_refund=(phase == "tool"))
        b: WorkerProcess | None = None
        try:
            handle = await AgentClient(env.client, task_queue=queue).start(agent, "go")
            if phase == "model":
                await server.wait_for_requests_async(1, timeout=30)
                before = 1
            else:
                await asyncio.to_thread(
                    wait_for, lambda: len(tool_log(tmp)) >= 1, 30, "the tool to start"
                )
                before = len(tool_log(tmp))
            await asyncio.sleep(0.5)  # let the worker settle into the call
            killed = time.monotonic()
            a.kill9()
            b = WorkerProcess(address, queue, server, tmp)
            if phase == "model":
                await server.wait_for_requests_async(before + 1, timeout=60)
            else:
                await asyncio.to_thread(
                    wait_for, lambda: len(tool_log(tmp)) > before, 60, "the tool's retry"
                )
            retried = time.monotonic() - killed
            await handle.result()
            done = time.monotonic() - killed
            return retried, done
        finally:
            a.stop()
            if b:
                b.stop()


def summary(label: str, values: list[float]) -> str:
    p95 = sorted(values)[max(0, round(0.95 * len(values)) - 1)]
    return f"{label:<32} median {statistics.median(values):5.2f} s   p95 {p95:5.2f} s"


async def main(repeat: int) -> None:
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_binary(), data_converter=pydantic_data_converter
    )
    results: dict[tuple[str, str, str], list[float]] = {}
    try:
        for i in range(repeat):
            for agent in ("recovery", "recovery_baseline"):
                for phase in ("model", "tool"):
                    with tempfile.TemporaryDirectory() as tmp:
                        retried, done = await one(env, agent, phase, Path(tmp))
                    results.setdefault((agent, phase, "retry"), []).append(retried)
                    results.setdefault((agent, phase, "done"), []).append(done)
                    print(
                        f"#{i + 1} {agent:<18} kill during {phase}: retry {retried:.2f} s, "
                        f"run done {done:.2f} s",
                        flush=True,
                    )
    finally:
        await env.shutdown()
    print()
    for phase in ("model", "tool"):
        for what in ("retry", "done"):
            ours = results[("recovery", phase, what)]
            base = results[("recovery_baseline", phase, what)]
            ratio = statistics.median(ours) / statistics.median(base)
            print(
                summary(f"kill during {phase} -> {what}", ours)
                + f"   vs 10 s heartbeat {ratio:.2f}x"
            )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    asyncio.run(main(args.repeat))
    sys.stdout.flush()
    os._exit(0)
