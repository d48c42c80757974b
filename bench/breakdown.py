"""Where each millisecond and each history event of a run goes, per step (issue 18):
``python -m bench.breakdown [--runs N] [--smoke]``.

One invocation starts the benchmark's dev server (``harness.start_temporal``, as
``python -m bench`` starts it), the scripted model server at 0 ms latency, and one worker
process each for (b) the bare SDK, (c) ratchet and (d) the OpenAI Agents contrib (skipped
when it is not installed). Then:

1. **history events per step**: the history of one completed run of each, cut into the
   workload's steps (``bench.history_steps``): events, their types, protobuf bytes and
   payload bytes per step;
2. **milliseconds per step**: N sequential runs each, the implementations taking turns;
   from each run's event timestamps, the medians per step of workflow-task and activity
   latencies, and the client's wall time per run;
3. **worker CPU by category**: M runs (C at a time) on each worker under ``py-spy record``
   (``bench.profile``), its samples sorted into kinds of code (``bench.cpu_categories``),
   the worker's CPU from ``/proc`` shared out over them.

    python -m bench.breakdown            # 20 runs each, 150 profiled: ~2 minutes on 2 cores
    python -m bench.breakdown --smoke    # 2 runs, 10 profiled: seconds; writes nothing

It writes its section of ``bench/RESULTS.md``, between ``<!-- breakdown:begin -->`` and
``<!-- breakdown:end -->``; ``python -m bench`` keeps that block when it rewrites the file.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from temporalio.api.history.v1 import HistoryEvent

from . import results_block
from . import run as bench_run
from .breakdown_report import Report
from .cpu_categories import CpuProfile, ThreadClock
from .harness import SERVER_ARGS
from .history_steps import Group, Timing, cut, describe, timings
from .impls import BY_KEY, Impl
from .profile import Recording, py_spy, read_stacks
from .run import RESULTS, Bench, _machine, _versions

__all__ = ["BLOCK", "MODES", "ImplBreakdown", "Mode", "main"]

BLOCK = "breakdown"
KEYS = ("b", "c", "d")
"""The bare floor, ratchet, and the framework closest to it."""
SPY_RATE = 500
"""py-spy samples per second (as ``python -m bench.profile``)."""


@dataclass(frozen=True)
class Mode:
    name: str
    warmup: int
    runs: int
    """Sequential runs per implementation at 0 ms model latency, for the milliseconds."""
    profile_runs: int
    """Runs per implementation under py-spy, for the CPU categories."""
    concurrency: int
    """Of the profiled runs, started at once."""


MODES = {
    "full": Mode("full", warmup=2, runs=20, profile_runs=150, concurrency=20),
    "smoke": Mode("smoke", warmup=1, runs=2, profile_runs=10, concurrency=10),
}


def log(message: str) -> None:
    print(message, flush=True)


@dataclass
class ImplBreakdown:
    """What one implementation's runs showed."""

    impl: Impl
    wall_ms: list[float] = field(default_factory=list)
    """Client wall time per timed run: ``start_workflow`` (or ``AgentClient.start``) to
    its result."""
    run_ids: list[str] = field(default_factory=list)
    timings: list[list[Timing]] = field(default_factory=list)
    """Per timed run, per group."""
    server_ms: list[float] = field(default_factory=list)
    """Per timed run: ``WorkflowExecutionStarted`` to ``WorkflowExecutionCompleted``."""
    client_extra_ms: list[float] = field(default_factory=list)
    """Per timed run: its client wall time less its time on the server."""
    groups: list[Group] = field(default_factory=list)
    """The last timed run's history, cut into steps."""
    odd_runs: int = 0
    """Timed runs whose history did not have the workload's 3 model and 2 tool calls."""
    cpu: CpuProfile | None = None
    errors: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "label": self.impl.label,
            "wall_ms": self.wall_ms,
            "server_ms": self.server_ms,
            "client_extra_ms": self.client_extra_ms,
            "run_ids": self.run_ids,
            "timings": [[dataclasses.asdict(t) for t in run] for run in self.timings],
            "groups": [
                {
                    "label": g.label,
                    "events": len(g.events),
                    "types": describe(g),
                    "bytes": g.size,
                    "payload_bytes": g.payload_size,
                }
                for g in self.groups
            ],
            "odd_runs": self.odd_runs,
            "cpu": None if self.cpu is None else self.cpu.as_json(),
            "errors": self.errors,
        }


def _steps_ok(groups: list[Group]) -> bool:
    kinds = [g.kind for g in groups]
    return kinds.count("model") == 3 and kinds.count("tool") == 2


class Breakdown:
    def __init__(self, mode: Mode, impls: list[Impl], logs: Path, spy: bool) -> None:
        self.mode = mode
        self.logs = logs
        self.spy = spy
        """Whether py-spy is run (installed, and not turned off)."""
        self.spy_problem: str | None = None
        run_mode = bench_run.Mode("breakdown", mode.warmup, mode.runs, 0, 0, (), (), 0, {})
        self.bench = Bench(run_mode, impls, logs, 0, list(SERVER_ARGS))
        self.results = {i.key: ImplBreakdown(i) for i in impls}
        self.loads: list[float] = [os.getloadavg()[0]]

    def live(self) -> list[Impl]:
        return [i for i in self.bench.live() if not self.results[i.key].errors]

    def fail(self, impl: Impl, phase: str, e: Exception) -> None:
        message = f"{phase}: {type(e).__name__}: {e}"
        self.results[impl.key].errors.append(message)
        log(f"  !! {impl.label} failed in {message}")

    async def setup(self) -> None:
        await self.bench.setup()
        await self.bench.start_workers()
        for key, result in self.bench.results.items():
            self.results[key].errors.extend(result.errors)
        await self.bench.set_delay(0)
        for impl in self.live():
            try:
                for _ in range(self.mode.warmup):
                    await self.bench.burst(impl, 1)
            except Exception as e:
                self.fail(impl, "warm-up", e)

    async def timed_runs(self) -> None:
        """``runs`` sequential runs each, the implementations taking turns."""
        self.loads.append(os.getloadavg()[0])
        log(f"timed runs: {self.mode.runs} sequential runs each at 0 ms model latency")
        for rep in range(self.mode.runs):
            for impl in self.bench.rotated(rep):
                result = self.results[impl.key]
                if result.errors:
                    continue
                try:
                    latencies, _ = await self.bench.burst(impl, 1)
                except Exception as e:
                    self.fail(impl, "timed runs", e)
                    continue
                run_id = self.bench.results[impl.key].last_run_id
                assert run_id is not None
                result.wall_ms.append(latencies[0] * 1000)
                result.run_ids.append(run_id)
        for impl in self.live():
            try:
                await self._read_histories(self.results[impl.key])
            except Exception as e:
                self.fail(impl, "histories", e)

    async def _read_histories(self, result: ImplBreakdown) -> None:
        for run_id, wall in zip(result.run_ids, result.wall_ms, strict=True):
            history = await self.bench.client.get_workflow_handle(run_id).fetch_history()
            events: list[HistoryEvent] = list(history.events)
            groups = cut(events)
            result.groups = groups
            if not _steps_ok(groups):
                result.odd_runs += 1
                continue
            server = (
                events[-1].event_time.ToNanoseconds() - events[0].event_time.ToNanoseconds()
            ) / 1e6
            result.timings.append(timings(groups))
            result.server_ms.append(server)
            result.client_extra_ms.append(wall - server)
        median_ms = sorted(result.wall_ms)[len(result.wall_ms) // 2] if result.wall_ms else 0
        log(
            f"  {result.impl.label:<36} {len(result.run_ids)} runs, client p50 "
            f"{median_ms:.1f} ms, last history {sum(len(g.events) for g in result.groups)} "
            "events"
        )

    async def profiled_runs(self) -> None:
        self.loads.append(os.getloadavg()[0])
        m = self.mode
        how = f"under py-spy at {SPY_RATE} Hz" if self.spy else "without py-spy"
        log(f"worker CPU: {m.profile_runs} runs each, {m.concurrency} at a time, {how}")
        for impl in self.live():
            try:
                await self._profile(impl)
            except Exception as e:
                self.fail(impl, "profiled runs", e)

    async def _profile(self, impl: Impl) -> None:
        m, bench = self.mode, self.bench
        worker = bench.workers[impl.key]
        await bench.settle(worker, limit=10)
        raw = self.logs / f"py-spy-{impl.name}.txt"
        recording = None
        if self.spy and self.spy_problem is None:
            try:
                recording = await Recording.start(
                    worker.pid,
                    raw,
                    self.logs / "py-spy.log",
                    rate=SPY_RATE,
                    threads=True,
                    full_filenames=True,
                )
            except RuntimeError as e:
                # No ptrace permission, most likely: the same for every worker.
                self.spy_problem = str(e)
                log(f"  !! py-spy: {e}")
        clock = ThreadClock(worker.pid)
        clock.start()
        cpu0 = worker.cpu_seconds()
        done = 0
        try:
            while done < m.profile_runs:
                n = min(m.concurrency, m.profile_runs - done)
                await bench.burst(impl, n)
                done += n
            await asyncio.sleep(0.3)  # the last workflow tasks' bookkeeping
            cpu = worker.cpu_seconds() - cpu0
        finally:
            await clock.stop()
            if recording is not None:
                await recording.stop()
        stacks = read_stacks(raw) if recording is not None else []
        profile = CpuProfile.build(done, cpu, clock.native_seconds(), stacks, clock.native_ids())
        self.results[impl.key].cpu = profile
        log(
            f"  {impl.label:<36} worker CPU {cpu / done * 1000:6.1f} ms/run "
            f"(native threads {profile.native_s / done * 1000:.1f}), "
            f"{profile.busy_samples} busy samples"
        )

    async def problems(self) -> str:
        model = self.bench.model
        if model is None:
            return ""
        return str((await model.ask({"cmd": "problems"}))["problems"])


async def measure(mode: Mode, keys: list[str], logs: Path, use_spy: bool) -> Report:
    started = datetime.datetime.now(datetime.UTC)
    t0 = time.monotonic()
    wanted = [BY_KEY[k] for k in keys]
    skipped = {i.key: why for i in wanted if (why := i.missing()) is not None}
    for key, why in skipped.items():
        log(f"skipping {BY_KEY[key].label}: {why}")
    spy_note = None
    if use_spy and py_spy() is None:
        spy_note = "py-spy is not installed (pip install -e '.[bench]')"
    elif not use_spy:
        spy_note = "py-spy was not run (--no-spy)"
    if spy_note:
        log(f"{spy_note}: the worker CPU is not split by kind of code")
    run = Breakdown(mode, [i for i in wanted if i.key not in skipped], logs, spy=spy_note is None)
    try:
        await run.setup()
        await run.timed_runs()
        await run.profiled_runs()
        problems = await run.problems()
        if problems:
            log(f"the model server saw requests it did not expect:\n{problems}")
    finally:
        run.loads.append(os.getloadavg()[0])
        await run.bench.teardown()
    if run.spy_problem:
        spy_note = f"py-spy failed: {run.spy_problem}"
    meta = {
        "command": "python -m bench.breakdown " + " ".join(sys.argv[1:]),
        "started": started.strftime("%Y-%m-%d %H:%M"),
        "seconds": time.monotonic() - t0,
        "machine": _machine(),
        "load": " ".join(f"{x:.1f}" for x in run.loads),
        "versions": _versions(),
        "cpu_per_run_s": {
            k: r.cpu.cpu_s / r.cpu.runs for k, r in run.results.items() if r.cpu is not None
        },
    }
    return Report(run.results, mode, meta, skipped, spy_note)


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.breakdown",
        description="Where each millisecond and each history event of a run goes, per step.",
    )
    parser.add_argument(
        "--smoke", action="store_true", help="2 runs, 10 profiled: seconds; writes nothing"
    )
    parser.add_argument("--runs", type=int, help="timed runs per implementation (default: 20)")
    parser.add_argument(
        "--profile-runs", type=int, help="runs per implementation under py-spy (default: 150)"
    )
    parser.add_argument("--concurrency", type=int, help="profiled runs at once (default: 20)")
    parser.add_argument("--impls", help="comma-separated keys among b,c,d (default: all three)")
    parser.add_argument(
        "--no-spy", action="store_true", help="do not run py-spy (no CPU categories)"
    )
    parser.add_argument("--results", help="write the block into this file (default: RESULTS.md)")
    parser.add_argument("--json", help="write every measurement here as JSON")
    parser.add_argument("--logs", help="directory for the processes' logs and the profiles")
    args = parser.parse_args()
    mode = MODES["smoke" if args.smoke else "full"]
    changes = {
        "runs": args.runs,
        "profile_runs": args.profile_runs,
        "concurrency": args.concurrency,
    }
    mode = dataclasses.replace(mode, **{k: v for k, v in changes.items() if v is not None})
    if min(mode.runs, mode.profile_runs, mode.concurrency) < 1:
        parser.error("--runs, --profile-runs and --concurrency must be at least 1")
    keys = args.impls.split(",") if args.impls else list(KEYS)
    if unknown := [k for k in keys if k not in KEYS]:
        parser.error(f"unknown implementation(s) {unknown}: choose among {', '.join(KEYS)}")
    logs = Path(args.logs) if args.logs else Path(tempfile.mkdtemp(prefix="ratchet-breakdown-"))
    logs.mkdir(parents=True, exist_ok=True)
    report = asyncio.run(measure(mode, keys, logs, use_spy=not args.no_spy))
    body = report.body()
    log("")
    log(body)
    target = Path(args.results) if args.results else (None if args.smoke else RESULTS)
    if target is not None:
        old = target.read_text() if target.exists() else ""
        target.write_text(results_block.replace(old, BLOCK, body))
        log(f"wrote {target}")
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "mode": dataclasses.asdict(mode),
                    "meta": report.meta,
                    "skipped": report.skipped,
                    "spy_note": report.spy_note,
                    "results": {k: r.as_json() for k, r in report.results.items()},
                },
                indent=1,
            )
        )
    failed = any(r.errors for r in report.results.values())
    sys.stdout.flush()
    # Skip interpreter teardown: Temporal's native threads can abort it noisily.
    os._exit(1 if failed else 0)


if __name__ == "__main__":
    main()
