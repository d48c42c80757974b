"""Benchmark: provider limits shared by 3 workers keep 50 busy agents at the TPM limit.

Usage (from the repository root, with the venv)::

    .venv/bin/python -m scripts.limits_bench [--seconds 90] [--window 20] [--tpm 16000]
                                             [--margin 1] [--workers 3]

All on 127.0.0.1: a Temporal dev server (in memory, free port), a
``ScriptedModelServer`` that answers every call with a ~41-token reply after a short
delay and, like a real provider, answers 429 to any request that would put more
than ``--tpm`` tokens into a sliding window of ``--window`` seconds (60 s scaled
down), and ``--workers`` ``ratchet worker`` processes given the same limit
(``--rate-limit P:tpm=...``). 50 agents (``scripts/limits_app.py``) each run
one-call runs back to back for ``--seconds``.

It prints, on the last lines::

    tokens/min: achieved 9,512 of limit 10,000 per window-minute ... ratio=0.95
    429s: 0
    fairness: completed runs per agent min=5 max=6 spread=1.20

The ratio is the mean token count of the provider's sliding windows (every window
that starts after the first, which may take the whole budget at once, and ends by
the end), from the tokens the provider saw, over the limit per window. The goal is a
ratio >= 0.9 with zero 429s. The spread is max/min completed runs per agent (1.0 is
perfectly fair). Not part of ``make test``: ``make limits-bench``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from ratchet import AgentClient, connect
from ratchet.local import TemporalDevServer
from ratchet.local._proc import free_port
from ratchet.testing import RecordedRequest, ScriptedModelServer, Step, reply

from .limits_app import AGENTS

ROOT = Path(__file__).resolve().parent.parent
API_KEY = "sk-bench"
PROMPT = "Write a short line about product {n}. " + "Details: soft, light, warm. " * 16
ANSWER = "A light, warm and soft companion for every day, made to last. " * 2 + "Buy it."


def log(text: str) -> None:
    print(f"[limits-bench] {text}", flush=True)


def answer(_: RecordedRequest) -> Step:
    return reply(ANSWER, delay=0.2)


def spawn_worker(
    address: str,
    queue: str,
    provider: str,
    server: ScriptedModelServer,
    limit: str,
    env: dict[str, str],
    out: Any,
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ratchet.cli",
            "worker",
            "--app",
            "scripts.limits_app:agents",
            "--task-queue",
            queue,
            "--address",
            address,
            "--provider",
            f"{provider}={server.base_url}",
            "--rate-limit",
            limit,
        ],
        env=env,
        cwd=ROOT,
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def ready(tmp: Path, workers: int) -> bool:
    return all("Ctrl-C to stop" in (tmp / f"worker-{i}.log").read_text() for i in range(workers))


async def agent_loop(client: AgentClient, name: str, until: float, done: dict[str, int]) -> None:
    n = 0
    while time.monotonic() < until:
        n += 1
        handle = await client.start(name, PROMPT.format(n=n))
        await handle.result()
        if time.monotonic() <= until:
            done[name] += 1


async def bench(args: argparse.Namespace, temporal: TemporalDevServer, tmp: Path) -> int:
    provider = f"bench{uuid.uuid4().hex[:6]}"
    server = ScriptedModelServer(
        handler=answer,
        expected_api_key=API_KEY,
        tpm_limit=args.tpm,
        limit_window_seconds=args.window,
    ).start()
    queue = f"bench-{uuid.uuid4().hex[:6]}"
    limit = f"{provider}:tpm={args.tpm},window={args.window},margin={args.margin}"
    env = {
        **os.environ,
        "BENCH_PROVIDER": provider,
        f"{provider.upper()}_API_KEY": API_KEY,
        "PYTHONPATH": str(ROOT),
    }
    procs: list[subprocess.Popen[bytes]] = []
    logs = []
    try:
        for i in range(args.workers):
            out = (tmp / f"worker-{i}.log").open("w")
            logs.append(out)
            procs.append(spawn_worker(temporal.address, queue, provider, server, limit, env, out))
        deadline = time.monotonic() + 60
        while not all(
            "Ctrl-C to stop" in (tmp / f"worker-{i}.log").read_text() for i in range(args.workers)
        ):
            if time.monotonic() > deadline:
                log("workers did not start; see " + str(tmp))
                return 1
            await asyncio.sleep(0.2)
        log(
            f"{args.workers} workers up; {AGENTS} agents run for {args.seconds:g} s "
            f"under tpm={args.tpm} per {args.window:g} s window"
        )
        client = AgentClient(await connect(temporal.address), task_queue=queue)
        done = {f"bench-{i:02d}": 0 for i in range(AGENTS)}
        started = time.time()
        until = time.monotonic() + args.seconds
        loops = [asyncio.create_task(agent_loop(client, name, until, done)) for name in done]
        progress = asyncio.create_task(report_progress(server, client, provider, started))
        await asyncio.gather(*loops)
        progress.cancel()
        ended = started + args.seconds
        status = await client.limits_of(provider)
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
        for f in logs:
            f.close()
        server.stop()

    requests = server.requests
    # The mean tokens of a sliding window, over every window that starts after the first
    # one and ends by the end: the provider's own measure, so it cannot exceed the limit
    # while no window does. (Tokens over a fixed span would misread bursty traffic: a
    # full window can be granted at once, then nothing until it slides past.)
    measured_from = started + args.window
    starts = [
        measured_from + i * 0.1 for i in range(int((ended - args.window - measured_from) * 10))
    ]
    if not starts:
        log(f"--seconds must be more than twice --window ({args.window:g}) to measure")
        return 1
    occupancy = sum(
        sum(r.tokens for r in requests if t <= r.received_at < t + args.window) for t in starts
    ) / len(starts)
    per_minute = occupancy / args.window * 60
    limit_per_minute = args.tpm / args.window * 60
    _, peak_tokens = server.peak_in_window(args.window)
    counts = sorted(done.values())
    spread = counts[-1] / counts[0] if counts[0] else float("inf")
    log(
        f"requests={len(requests)} granted={status.granted_total} pauses={status.pauses_total} "
        f"peak window tokens={peak_tokens} of {args.tpm}"
    )
    print(
        f"tokens/min: achieved {per_minute:,.0f} of limit {limit_per_minute:,.0f} "
        f"(tpm={args.tpm} per {args.window:g} s window; mean of the sliding windows after the "
        "first) "
        f"ratio={per_minute / limit_per_minute:.2f}"
    )
    print(f"429s: {server.rate_limited}")
    histogram = " ".join(f"{n}:{counts.count(n)}" for n in sorted(set(counts)))
    print(
        f"fairness: completed runs per agent min={counts[0]} max={counts[-1]} "
        f"spread={spread:.2f} (total {sum(counts)} runs; runs:agents {histogram})"
    )
    return 0


async def report_progress(
    server: ScriptedModelServer, client: AgentClient, provider: str, started: float
) -> None:
    while True:
        await asyncio.sleep(10)
        requests = server.requests
        tokens = sum(r.tokens for r in requests)
        s = await client.limits_of(provider)
        log(
            f"{time.time() - started:.0f} s: {len(requests)} requests, {tokens:,} tokens, "
            f"{server.rate_limited} 429s; limiter: {s.tokens_in_window} tokens in window, "
            f"{s.in_flight} in flight, {s.queued} queued"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=90.0, help="how long the agents run")
    parser.add_argument("--window", type=float, default=20.0, help="the limit's window (s)")
    parser.add_argument("--tpm", type=int, default=16000, help="tokens per window")
    parser.add_argument("--margin", type=float, default=1.0, help="limiter margin (s)")
    parser.add_argument("--workers", type=int, default=3)
    args = parser.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="ratchet-limits-bench-"))
    temporal = TemporalDevServer(
        db_path=None, log_path=tmp / "temporal.log", port=free_port(), ui_port=None
    )
    temporal.start()
    try:
        return asyncio.run(bench(args, temporal, tmp))
    finally:
        temporal.stop()


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    # Skip interpreter teardown: the Temporal SDK can crash there in short-lived processes.
    os._exit(code)
