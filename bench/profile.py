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
import contextlib
import os
import shutil
import signal
import sys
import tempfile
import uuid
from dataclasses import dataclass
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
    try:
        await bench.burst(impl, 3)  # warm
        recording = await Recording.start(worker.pid, raw, out / "py-spy.log")
        cpu0 = procstat.cpu_seconds(worker.pid)
        done = 0
        while done < runs:
            n = min(concurrency, runs - done)
            await bench.burst(impl, n)
            done += n
        cpu = procstat.cpu_seconds(worker.pid) - cpu0
        print(f"{impl.label}: {runs} runs, worker CPU {cpu / runs * 1000:.1f} ms/run")
        await recording.stop()
    finally:
        await worker.stop()
        await model.stop()
        await env.shutdown()
    return raw


def py_spy() -> str | None:
    """The py-spy executable (the virtualenv's, else on PATH), or None if not installed."""
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else shutil.which("py-spy")


class Recording:
    """``py-spy record`` on a running process, in raw collapsed stacks, until :meth:`stop`.

    Non-blocking sampling (the process is not paused), Python frames only: the native
    threads of Temporal's core have no Python stack to sample. ``threads`` puts each
    sample's thread id and name first; ``full_filenames`` keeps the frames' whole paths
    (the package-relative ones py-spy prints by default are ambiguous for an editable
    install).
    """

    def __init__(self, proc: asyncio.subprocess.Process, raw: Path, log: Path) -> None:
        self.proc, self.raw, self.log = proc, raw, log

    @classmethod
    async def start(
        cls,
        pid: int,
        raw: Path,
        log: Path,
        *,
        rate: int = 500,
        threads: bool = False,
        full_filenames: bool = False,
    ) -> Recording:
        spy = py_spy()
        if spy is None:
            raise RuntimeError("py-spy is not installed (pip install -e '.[bench]')")
        flags = [
            *(["--threads"] if threads else []),
            *(["--full-filenames"] if full_filenames else []),
        ]
        with log.open("ab") as err:
            proc = await asyncio.create_subprocess_exec(
                spy,
                "record",
                "--pid",
                str(pid),
                "--rate",
                str(rate),
                "--format",
                "raw",
                "--output",
                str(raw),
                "--nonblocking",
                *flags,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=err,
            )
        await asyncio.sleep(1)  # attached and sampling
        if proc.returncode is not None:
            raise RuntimeError(f"py-spy exited at once: {cls._tail(log)}")
        return cls(proc, raw, log)

    async def stop(self) -> None:
        """SIGINT: py-spy writes the profile and exits."""
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signal.SIGINT)
        await self.proc.wait()
        if not self.raw.exists():
            raise RuntimeError(f"py-spy wrote no profile: {self._tail(self.log)}")

    @staticmethod
    def _tail(log: Path) -> str:
        lines = log.read_text(errors="replace").strip().splitlines()[-3:]
        return " / ".join(lines) or f"(nothing in {log})"


@dataclass(frozen=True)
class Stack:
    """One line of a raw py-spy profile: a call stack (outermost first) and its samples."""

    frames: list[str]
    """``function (file:line)`` each."""
    count: int
    thread_id: int | None = None
    """The OS thread id (``--threads`` only)."""
    thread_name: str | None = None
    """Python's name for the thread; None for a thread Python did not start."""


def read_stacks(raw: Path) -> list[Stack]:
    stacks = []
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        thread_id, thread_name = None, None
        frames = []
        for frame in stack.split(";"):
            if frame.startswith("process "):
                continue
            if frame.startswith("thread ("):
                head, _, name = frame.partition(": ")
                with contextlib.suppress(ValueError):
                    thread_id = int(head[len("thread (") : head.index(")")], 0)
                thread_name = name or None
                continue
            frames.append(frame)
        stacks.append(Stack(frames, int(count_text), thread_id, thread_name))
    return stacks


def summarize(raw: Path, top: int = 35) -> None:
    own: collections.Counter[str] = collections.Counter()
    cumulative: collections.Counter[str] = collections.Counter()
    total = 0
    for stack in read_stacks(raw):
        if not stack.frames:
            continue
        total += stack.count
        own[stack.frames[-1]] += stack.count
        for frame in set(stack.frames):
            cumulative[frame] += stack.count
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
