"""Profile one implementation's worker with py-spy while it runs the workload.

    python -m bench.profile ratchet [--runs 200] [--concurrency 20] [--out DIR]

Starts the same dev server and model server as the benchmark (0 ms model latency),
one worker for the implementation under ``py-spy record`` (collapsed stacks, native
Temporal threads excluded), runs ``--runs`` runs ``--concurrency`` at a time, then
prints the functions with the most samples (own and cumulative). The raw profile
(``profile.txt``, one collapsed stack per line) stays in ``--out`` for flame graphs
(e.g. speedscope.app).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import shutil
import sys
import tempfile
import uuid
from pathlib import Path

from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from ratchet import _search as ratchet_search

from . import harness, procstat
from .impls import IMPLS
from .run import SERVER_ARGS, Bench, Mode


async def profile(impl_name: str, runs: int, concurrency: int, out: Path) -> Path:
    impl = next(i for i in IMPLS if i.name == impl_name)
    binary = str(Path(sys.executable).parent / "temporal")
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=binary,
        data_converter=pydantic_data_converter,
        ui=False,
        dev_server_log_level="error",
        search_attributes=ratchet_search.ALL,
        dev_server_extra_args=list(SERVER_ARGS),
    )
    model, model_url = await harness.start_model_server(out)
    address = str(env.client.service_client.config.target_host)
    queue = f"profile-{uuid.uuid4().hex[:6]}"
    worker = await harness.start_worker(impl.name, address, queue, model_url, out)
    mode = Mode("profile", 0, 0, 0, 0, (), (), 0, {})
    bench = Bench(mode, [impl], out, 0, [])
    bench.env, bench.model, bench.model_url = env, model, model_url
    bench.workers[impl.key], bench.queues[impl.key] = worker, queue
    raw = out / "profile.txt"
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    try:
        await bench.burst(impl, 3)  # warm
        recorder = await asyncio.create_subprocess_exec(
            spy,
            "record",
            "--pid",
            str(worker.pid),
            "--rate",
            "500",
            "--format",
            "raw",
            "--output",
            str(raw),
            "--nonblocking",
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        await asyncio.sleep(1)
        cpu0 = procstat.cpu_seconds(worker.pid)
        done = 0
        while done < runs:
            n = min(concurrency, runs - done)
            await bench.burst(impl, n)
            done += n
        cpu = procstat.cpu_seconds(worker.pid) - cpu0
        print(f"{impl.label}: {runs} runs, worker CPU {cpu / runs * 1000:.1f} ms/run")
        recorder.send_signal(2)  # SIGINT: py-spy writes the profile and exits
        await recorder.wait()
    finally:
        await worker.stop()
        await model.stop()
        await env.shutdown()
    return raw


def summarize(raw: Path, top: int = 35) -> None:
    own: collections.Counter[str] = collections.Counter()
    cumulative: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        frames = [
            f
            for f in stack.split(";")
            if not f.startswith("process ") and not f.startswith("thread ")
        ]
        if not frames:
            continue
        total += count
        own[frames[-1]] += count
        for frame in set(frames):
            cumulative[frame] += count
    print(f"\n{total} samples; top own time:")
    for frame, n in own.most_common(top):
        print(f"  {n / total * 100:5.1f} %  {frame}")
    print("\ntop cumulative time:")
    for frame, n in cumulative.most_common(top):
        print(f"  {n / total * 100:5.1f} %  {frame}")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.profile")
    parser.add_argument("impl", choices=[i.name for i in IMPLS if i.key != "a"])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--out", help="directory for the profile and logs")
    args = parser.parse_args()
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="ratchet-profile-"))
    out.mkdir(parents=True, exist_ok=True)
    raw = asyncio.run(profile(args.impl, args.runs, args.concurrency, out))
    summarize(raw)
    print(f"\nraw profile: {raw}")
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
