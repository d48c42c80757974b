"""How long a worker stalls when its connection to the Temporal server goes half-open.

    python -m scripts.half_open_server [--keepalive 5:3]

A worker connects to the dev server through ratchet.testing.FaultProxy. After a
warm-up run, the proxy leaves the worker's connections half-open (nothing moves,
nobody is told), and a second run starts. The worker notices only when its
client's HTTP/2 keepalive ping goes unanswered, reconnects and finishes the run.
Printed: the second run's seconds, with Temporal's default keepalive (ping every
30 s, 15 s timeout) and with the one given (``INTERVAL:TIMEOUT`` seconds).
A measurement, not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid

from temporalio.client import Client, KeepAliveConfig

from ratchet import Agent, AgentClient
from ratchet.testing import (
    FaultProxy,
    ScriptedModelServer,
    in_process_worker,
    reply,
    temporal_dev_server,
)


async def stalled_run(keepalive: KeepAliveConfig) -> float:
    """Seconds a run takes after the worker's server connections went half-open."""
    async with temporal_dev_server() as env:
        direct = env.client
        with (
            ScriptedModelServer(handler=lambda _: reply("ok")) as model,
            FaultProxy(direct.service_client.config.target_host, name="temporal") as proxy,
        ):
            cut = await Client.connect(
                proxy.address,
                namespace=direct.namespace,
                data_converter=direct.data_converter,
                keep_alive_config=keepalive,
            )
            agent = Agent("half-open", instructions="x", model="openai:scripted")
            queue = f"half-open-{uuid.uuid4().hex[:6]}"
            async with in_process_worker(cut, [agent], model, task_queue=queue):
                client = AgentClient(direct, task_queue=queue)
                await client.run("half-open", "warm up")
                proxy.half_open()
                started = time.monotonic()
                await client.run("half-open", "after the fault")
                return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keepalive", default="5:3", help="INTERVAL:TIMEOUT in seconds")
    args = parser.parse_args()
    interval, timeout = (float(x) for x in args.keepalive.split(":"))
    for label, config in [
        ("default keepalive (30 s, 15 s timeout)", KeepAliveConfig()),
        (
            f"keepalive {interval:g} s, {timeout:g} s timeout",
            KeepAliveConfig(
                interval_millis=int(interval * 1000), timeout_millis=int(timeout * 1000)
            ),
        ),
    ]:
        seconds = asyncio.run(stalled_run(config))
        print(f"half-open server connection, {label}: run done in {seconds:.1f} s", flush=True)


if __name__ == "__main__":
    main()
