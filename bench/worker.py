"""One implementation's worker, in its own process so its CPU and memory can be measured.

    python -m bench.worker IMPL --address HOST:PORT --queue QUEUE --model-url URL
        [--max-cached-workflows N|default]

For the Temporal implementations (bare, ratchet, ratchet_postgres,
openai_agents, pydantic_ai) it
runs a Temporal worker on QUEUE until stdin closes. For ``plain`` it runs the agent
loop itself, on the driver's commands (JSON lines on stdin, answers on stdout).
The first line on stdout is ``{"ready": true, "pid": ...}``. The workflow cache holds
``bench.workload.WORKER_OPTIONS``' 2000 runs unless ``--max-cached-workflows`` says
otherwise (``default``: Temporal's own, 1000).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import logging
import os
import sys
from typing import Any

from .workload import CACHE_ENV


async def _stdin_lines() -> asyncio.StreamReader:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 20)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    return reader


def _say(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


async def serve(impl: str, address: str, queue: str, model_url: str) -> None:
    reader = await _stdin_lines()
    if impl == "plain":
        from .impl_plain import Runner

        runner = Runner(model_url)
        _say({"ready": True, "pid": os.getpid()})
        while line := await reader.readline():
            if line.strip():
                _say(await runner.command(json.loads(line)))
        return
    module = importlib.import_module(f"bench.impl_{impl}")
    worker = await module.make_worker(address, queue, model_url)
    async with worker:
        _say({"ready": True, "pid": os.getpid()})
        while await reader.readline():
            pass  # runs until the driver closes stdin


def _cache_size(text: str) -> str:
    if text != "default" and not (text.isdigit() and int(text) > 0):
        raise argparse.ArgumentTypeError(f"a number of runs, or 'default', not {text!r}")
    return text


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("impl")
    parser.add_argument("--address", required=True)
    parser.add_argument("--queue", required=True)
    parser.add_argument("--model-url", required=True)
    parser.add_argument(
        "--max-cached-workflows",
        metavar="N|default",
        type=_cache_size,
        help="the worker's workflow cache (default: bench.workload.WORKER_OPTIONS')",
    )
    args = parser.parse_args()
    if args.max_cached_workflows is not None:
        # Read by bench.workload.worker_options() when the implementation builds its worker.
        os.environ[CACHE_ENV] = args.max_cached_workflows
    os.environ["BENCH_MODEL_URL"] = args.model_url
    os.environ["OPENAI_AGENTS_DISABLE_TRACING"] = "1"
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    asyncio.run(serve(args.impl, args.address, args.queue, args.model_url))
    sys.stdout.flush()
    os._exit(0)  # skip interpreter teardown: the driver waits for the exit


if __name__ == "__main__":
    main()
