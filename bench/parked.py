"""10,000 runs parked on approvals, on one worker with the default cache (issue 18):
``python -m bench.parked [--runs N] [--smoke]``.

One dev server (in memory, with ratchet's search attributes, as ``python -m bench``
starts it), one scripted model server and one ratchet worker process
(``python -m bench.worker ratchet --max-cached-workflows default``: Temporal's own
workflow cache of 1000 runs, not the 2000 of ``bench.workload.WORKER_OPTIONS``). The
driver starts N runs of ``bench_hitl``, whose first tool call waits for a person's
approval, a batch at a time with a fixed number of starts in flight; waits until the
visibility store says every one is ``waiting-approval``; and reads the worker's memory
(``VmRSS``, and ``VmHWM``, its peak) throughout. Most runs are then evicted from the
worker's cache: it holds 1000, and every run started later pushed older ones out. The
driver approves the first runs it started, long evicted, with ``RunHandle.pending`` and
``RunHandle.approve``, which bring each back into the worker (a replay of its history),
and checks that each then finishes with the workload's answer. It ends the other runs.

    python -m bench.parked              # 10,000 runs: about 10-12 minutes on 2 cores
    python -m bench.parked --smoke      # 30 runs on a cache of 10: seconds; writes nothing

It writes its section of ``bench/RESULTS.md``, between ``<!-- parked:begin -->`` and
``<!-- parked:end -->``; ``python -m bench`` keeps that block when it rewrites the file.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import datetime
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from ratchet import AgentClient, RunHandle
from ratchet._protocol import WORKFLOW_TYPE
from ratchet._search import STATUS

from . import harness, procstat, results_block, workload
from .harness import SERVER_ARGS, JsonLineProcess
from .impl_ratchet import AGENT, HITL_AGENT
from .run import RESULTS, _machine, _versions

BLOCK = "parked"
TEMPORAL_DEFAULT_CACHE = 1000
"""``temporalio.worker.Worker``'s ``max_cached_workflows`` when nobody sets it."""
RSS_GOAL_MIB = 1024
GOAL_RUNS = 10_000
APPROVER = "bench.parked"


@dataclass(frozen=True)
class Mode:
    name: str
    runs: int
    cache: str
    """The worker's ``--max-cached-workflows``: ``default`` (Temporal's own) or a number."""
    sample: int
    """Evicted runs approved: the first ones started."""
    cached_sample: int
    """Runs still in the cache approved first, for comparison: the last ones started."""
    in_flight: int
    """Starts in flight at once."""
    window: int
    """At most this many runs started and not yet at their model call (well below the
    cache, so that runs are evicted once parked, not on their way there)."""
    batch: int
    """Runs started between two progress lines."""
    park_timeout: float
    """Seconds to wait for every run to be parked, once all are started."""

    @property
    def cache_size(self) -> int:
        return TEMPORAL_DEFAULT_CACHE if self.cache == "default" else int(self.cache)


MODES = {
    "full": Mode(
        "full",
        runs=10_000,
        cache="default",
        sample=50,
        cached_sample=5,
        in_flight=50,
        window=200,
        batch=500,
        park_timeout=900,
    ),
    "smoke": Mode(
        "smoke",
        runs=30,
        cache="10",
        sample=5,
        cached_sample=3,
        in_flight=10,
        window=5,
        batch=10,
        park_timeout=120,
    ),
}


def log(message: str) -> None:
    print(message, flush=True)


def _mib(kib: int | None) -> str:
    return "—" if kib is None else f"{kib / 1024:,.0f} MiB"


@dataclass
class Comeback:
    """One evicted run brought back by its approval."""

    run_id: str
    started_index: int
    evicted: bool
    """One of the first runs started; else one of the last, still in the cache."""
    back_s: float | None = None
    """``pending()`` (a query: the worker replays the run) + ``approve()`` (accepted)."""
    done_s: float | None = None
    """From the ``pending()`` call until the run's result was in."""
    output: str | None = None
    error: str | None = None

    @property
    def completed(self) -> bool:
        return self.error is None and self.output == workload.FINAL_ANSWER


@dataclass
class Measurement:
    mode: Mode
    started: int = 0
    parked: int = 0
    start_s: float | None = None
    """From the first start until the last start returned."""
    park_s: float | None = None
    """From the first start until every run was waiting for approval."""
    cpu_s: dict[str, float] = field(default_factory=dict)
    """CPU seconds from the first start until every run was parked, by process."""
    rss_idle_kib: int | None = None
    """After two complete runs (imports and connections done), before the parked ones."""
    rss_parked_kib: int | None = None
    rss_after_kib: int | None = None
    """After the sample's approvals."""
    peak_kib: int | None = None
    """``VmHWM`` at the end: the worker's peak since it started."""
    samples: list[tuple[float, int]] = field(default_factory=list)
    """(seconds since the first start, VmRSS KiB), every half second."""
    comebacks: list[Comeback] = field(default_factory=list)
    terminated: int = 0
    errors: list[str] = field(default_factory=list)

    def approved(self, evicted: bool = True) -> list[Comeback]:
        return [c for c in self.comebacks if c.evicted == evicted]

    def back_times(self, evicted: bool = True) -> list[float]:
        return [c.back_s for c in self.approved(evicted) if c.completed and c.back_s is not None]

    def done_times(self, evicted: bool = True) -> list[float]:
        return [c.done_s for c in self.approved(evicted) if c.completed and c.done_s is not None]

    def as_json(self) -> dict[str, Any]:
        return {
            "mode": dataclasses.asdict(self.mode),
            "started": self.started,
            "parked": self.parked,
            "start_s": self.start_s,
            "park_s": self.park_s,
            "cpu_s": self.cpu_s,
            "rss_idle_kib": self.rss_idle_kib,
            "rss_parked_kib": self.rss_parked_kib,
            "rss_after_kib": self.rss_after_kib,
            "peak_kib": self.peak_kib,
            "samples": self.samples,
            "comebacks": [dataclasses.asdict(c) for c in self.comebacks],
            "terminated": self.terminated,
            "errors": self.errors,
        }


class Parked:
    def __init__(self, mode: Mode, logs: Path) -> None:
        self.mode = mode
        self.logs = logs
        self.m = Measurement(mode)
        self.queue = f"bench-parked-{uuid.uuid4().hex[:6]}"
        self.handles: list[RunHandle] = []
        self.loads: list[float] = []
        self._env: WorkflowEnvironment | None = None
        self._server_pid: int | None = None
        self._agents: AgentClient | None = None
        self._model: JsonLineProcess | None = None
        self._worker: JsonLineProcess | None = None
        self._t0 = 0.0
        self.calls = 0
        """Model calls made by the runs being parked (each makes one, then waits)."""
        self._calls_base = 0
        """Model calls before (the warm-up's)."""
        self._called = asyncio.Condition()

    @property
    def client(self) -> Client:
        assert self._env is not None
        return self._env.client

    @property
    def agents(self) -> AgentClient:
        assert self._agents is not None
        return self._agents

    @property
    def worker(self) -> JsonLineProcess:
        assert self._worker is not None
        return self._worker

    # -- setup ----------------------------------------------------------------------------

    async def setup(self) -> None:
        self._env, self._server_pid = await harness.start_temporal(SERVER_ARGS)
        address = str(self.client.service_client.config.target_host)
        self._model, model_url = await harness.start_model_server(self.logs)
        await self._model.ask({"cmd": "delay", "seconds": 0})
        self._worker = await harness.start_worker(
            "ratchet",
            address,
            self.queue,
            model_url,
            self.logs,
            args=["--max-cached-workflows", self.mode.cache],
        )
        self._agents = AgentClient(self.client, task_queue=self.queue)
        cache = (
            f"Temporal's default, {TEMPORAL_DEFAULT_CACHE}"
            if self.mode.cache == "default"
            else self.mode.cache
        )
        log(f"dev server {address}, worker pid {self.worker.pid} (workflow cache: {cache} runs)")

    async def teardown(self) -> None:
        for proc in (self._worker, self._model):
            if proc is not None:
                with contextlib.suppress(Exception):
                    await proc.stop()
        if self._env is not None:
            with contextlib.suppress(Exception):
                await self._env.shutdown()

    # -- phases ---------------------------------------------------------------------------

    async def warm_up(self) -> None:
        """Two complete runs: the worker's imports and connections are then made."""
        for _ in range(2):
            result = await self.agents.run(AGENT, workload.PROMPT)
            if result.output != workload.FINAL_ANSWER:
                raise RuntimeError(f"warm-up run answered {result.output!r}")
        await self.settle()
        self.m.rss_idle_kib = self.worker.memory_kib()["VmRSS"]
        log(f"worker idle after 2 warm-up runs: RSS {_mib(self.m.rss_idle_kib)}")

    async def settle(self, limit: float = 60) -> None:
        """Wait until the worker is idle (under 4 % of a core over 0.5 s)."""
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            before = self.worker.cpu_seconds()
            await asyncio.sleep(0.5)
            if self.worker.cpu_seconds() - before < 0.02:
                return

    def cpu_readings(self) -> dict[str, float]:
        """CPU seconds so far of the worker, the dev server, the model server and this
        driver (what the parking rate is bound by, on a machine with few cores)."""
        pids = {"worker": self.worker.pid, "dev server": self._server_pid}
        if self._model is not None:
            pids["model server"] = self._model.pid
        out = {}
        for who, pid in pids.items():
            if pid is not None:
                with contextlib.suppress(OSError):
                    out[who] = procstat.cpu_seconds(pid)
        out["driver"] = time.process_time()
        return out

    async def sample_memory(self) -> None:
        while True:
            with contextlib.suppress(OSError):
                rss = self.worker.memory_kib()["VmRSS"]
                self.m.samples.append((round(time.monotonic() - self._t0, 2), rss))
            await asyncio.sleep(0.5)

    async def count_parked(self) -> int:
        query = (
            f"WorkflowType = '{WORKFLOW_TYPE}' AND TaskQueue = '{self.queue}' "
            f"AND {STATUS.name} = 'waiting-approval'"
        )
        return (await self.client.count_workflows(query)).count

    async def progress(self, what: str) -> None:
        calls = await self.model_calls() - self._calls_base
        self.m.parked = await self.count_parked()
        memory = self.worker.memory_kib()
        log(
            f"  {time.monotonic() - self._t0:7.1f} s  {what}: started {self.m.started:,}/"
            f"{self.mode.runs:,}, model calls {calls:,}, parked {self.m.parked:,}, "
            f"worker RSS {_mib(memory['VmRSS'])} (peak {_mib(memory['VmHWM'])})"
        )

    async def model_calls(self) -> int:
        assert self._model is not None
        return int((await self._model.ask({"cmd": "count"}))["count"])

    async def follow_calls(self) -> None:
        """Keep ``self.calls`` (model calls of the parked runs so far) a moment old."""
        while True:
            calls = await self.model_calls() - self._calls_base
            if calls != self.calls:
                async with self._called:
                    self.calls = calls
                    self._called.notify_all()
            await asyncio.sleep(0.1)

    async def park(self) -> None:
        n, mode = self.mode.runs, self.mode
        log(
            f"starting {n:,} runs that wait for approval: {mode.in_flight} starts in flight, "
            f"at most {mode.window} runs started and not yet at their model call"
        )
        self.loads.append(os.getloadavg()[0])
        gate = asyncio.Semaphore(mode.in_flight)
        self.handles = []
        self.calls = 0

        async def start() -> RunHandle:
            async with gate:
                # Starting faster than the worker parks them would queue thousands of
                # runs on the server, each evicted between its first two workflow tasks
                # and replayed: a cache thrashing that no deployment would choose.
                async with self._called:
                    await self._called.wait_for(lambda: self.m.started - self.calls < mode.window)
                    self.m.started += 1
                return await self.agents.start(HITL_AGENT, workload.PROMPT)

        cpu0 = self.cpu_readings()
        self._t0 = time.monotonic()
        sampler = asyncio.create_task(self.sample_memory())
        self._calls_base = await self.model_calls()
        follower = asyncio.create_task(self.follow_calls())
        try:
            for first in range(0, n, mode.batch):
                count = min(mode.batch, n - first)
                # gather keeps the order of the starts it was given: handles[i] is the
                # i-th run asked for, and the earliest are the longest evicted.
                self.handles += await asyncio.gather(*(start() for _ in range(count)))
                await self.progress("starting")
            self.m.start_s = time.monotonic() - self._t0
            self.loads.append(os.getloadavg()[0])
            deadline = time.monotonic() + mode.park_timeout
            last_line = time.monotonic()
            while (parked := await self.count_parked()) < n:
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"only {parked:,} of {n:,} runs were waiting for approval "
                        f"{mode.park_timeout:.0f} s after the last start"
                    )
                if time.monotonic() - last_line >= 10:
                    await self.progress("parking")
                    last_line = time.monotonic()
                await asyncio.sleep(0.5)
            self.m.park_s = time.monotonic() - self._t0
            self.m.parked = parked
            self.m.cpu_s = {k: v - cpu0[k] for k, v in self.cpu_readings().items() if k in cpu0}
            await self.progress("all parked")
            await self.settle()
            memory = self.worker.memory_kib()
            self.m.rss_parked_kib, self.m.peak_kib = memory["VmRSS"], memory["VmHWM"]
        finally:
            sampler.cancel()
            follower.cancel()

    async def come_back(self) -> None:
        """Approve the first runs started, one at a time: each was evicted long ago. The
        last few started, still in the cache, go first, for comparison."""
        sample = min(self.mode.sample, len(self.handles))
        cached = min(self.mode.cached_sample, len(self.handles) - sample)
        log(
            f"approving the first {sample} runs started ({self.mode.runs - sample:,} were "
            f"started after them, the cache holds {self.mode.cache_size:,}), after the last "
            f"{cached}, still cached"
        )
        self.loads.append(os.getloadavg()[0])
        last = len(self.handles) - cached
        for index in range(last, len(self.handles)):
            await self._approve(index, evicted=False)
        for index in range(sample):
            await self._approve(index, evicted=True)
        await self.settle()
        memory = self.worker.memory_kib()
        self.m.rss_after_kib, self.m.peak_kib = memory["VmRSS"], memory["VmHWM"]
        for evicted in (False, True):
            back, done = self.m.back_times(evicted), self.m.done_times(evicted)
            if back:
                log(
                    f"  {'evicted' if evicted else 'cached'}: {len(back)} back and done, "
                    f"approval accepted after {_seconds(back)}, result after {_seconds(done)}"
                )

    async def _approve(self, index: int, *, evicted: bool) -> None:
        handle = self.handles[index]
        comeback = Comeback(handle.id, index, evicted)
        self.m.comebacks.append(comeback)
        try:
            t0 = time.monotonic()
            pending = await handle.pending()
            if len(pending) != 1:
                raise RuntimeError(f"{len(pending)} calls waiting, not 1")
            await handle.approve(pending[0].call_id, approver=APPROVER, reason="benchmark")
            comeback.back_s = time.monotonic() - t0
            comeback.output = (await asyncio.wait_for(handle.result(), 120)).output
            comeback.done_s = time.monotonic() - t0
            if comeback.output != workload.FINAL_ANSWER:
                raise RuntimeError(f"answered {comeback.output!r}")
        except Exception as e:
            comeback.error = f"{type(e).__name__}: {e}"
            log(f"  !! run #{index} ({handle.id}) did not come back: {comeback.error}")

    async def end_the_rest(self) -> None:
        """Terminate the runs still waiting: nothing else would end them."""
        approved = {c.started_index for c in self.m.comebacks}
        rest = [h for i, h in enumerate(self.handles) if i not in approved]
        gate = asyncio.Semaphore(self.mode.in_flight)
        t0 = time.monotonic()

        async def end(handle: RunHandle) -> None:
            async with gate:
                with contextlib.suppress(Exception):
                    await self.client.get_workflow_handle(handle.id).terminate(
                        reason="bench.parked: done"
                    )
                    self.m.terminated += 1

        await asyncio.gather(*(end(h) for h in rest))
        log(
            f"terminated {self.m.terminated:,} of the {len(rest):,} runs left waiting "
            f"in {time.monotonic() - t0:.1f} s"
        )


# -- report --------------------------------------------------------------------------------


def _verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("MET" if ok else "NOT MET")


def _seconds(values: list[float]) -> str:
    if not values:
        return "—"
    return f"p50 {statistics.median(values):.2f} s, max {max(values):.2f} s"


class Report:
    def __init__(self, m: Measurement, meta: dict[str, Any]) -> None:
        self.m = m
        self.mode = m.mode
        self.meta = meta

    def targets(self) -> list[str]:
        m, mode = self.m, self.mode
        peak = None if m.peak_kib is None else m.peak_kib / 1024
        at_goal = mode.runs >= GOAL_RUNS and mode.cache == "default"
        ok = None if peak is None or not at_goal or m.parked < mode.runs else peak < RSS_GOAL_MIB
        why = "" if at_goal else f" (n/a here: {mode.runs:,} runs, a cache of {mode.cache_size:,})"
        peak_text = "—" if peak is None else f"{peak:,.0f} MiB"
        evicted = m.approved()
        completed = sum(c.completed for c in evicted)
        back = m.back_times()
        p50 = "—" if not back else f"{statistics.median(back):.2f} s"
        comeback_ok = None if not evicted else completed == len(evicted)
        return [
            f"{GOAL_RUNS:,} parked runs on one worker with default cache settings: peak RSS "
            f"{peak_text} (goal < {RSS_GOAL_MIB} MiB){why} → {_verdict(ok)}",
            f"evicted runs come back on demand: {completed} of {len(evicted)} completed, "
            f"p50 {p50} → {_verdict(comeback_ok)}",
        ]

    def table(self) -> str:
        m, mode = self.m, self.mode
        rate = "" if not m.park_s else f" ({m.parked / m.park_s:,.1f} runs/s)"
        evicted, cached = m.approved(), m.approved(evicted=False)
        completed = sum(c.completed for c in evicted)
        rows = [
            ("runs waiting for approval", f"{m.parked:,} of {mode.runs:,}"),
            ("from the first start until the last start returned", _s(m.start_s)),
            ("from the first start until every run was waiting", _s(m.park_s) + rate),
            (
                "CPU until then, per parked run",
                ", ".join(
                    f"{who} {seconds / max(m.parked, 1) * 1000:.1f} ms"
                    for who, seconds in m.cpu_s.items()
                )
                or "—",
            ),
            ("worker RSS, idle before the runs", _mib(m.rss_idle_kib)),
            ("worker RSS with every run parked", _mib(m.rss_parked_kib)),
            ("worker RSS after the approvals", _mib(m.rss_after_kib)),
            ("**worker peak RSS (VmHWM)**", f"**{_mib(m.peak_kib)}**"),
            (
                "evicted runs approved (the first started)",
                f"{len(evicted)}, each with at least {mode.runs - len(evicted):,} runs started "
                f"after it",
            ),
            ("evicted: back, pending() + approve() accepted", _seconds(m.back_times())),
            ("evicted: until the run's result", _seconds(m.done_times())),
            ("evicted: completed with the workload's answer", f"{completed} of {len(evicted)}"),
            (
                f"for comparison, the last {len(cached)} started (cached): back",
                _seconds(m.back_times(evicted=False)),
            ),
            ("cached: until the run's result", _seconds(m.done_times(evicted=False))),
        ]
        out = ["| figure | value |", "|---|---|"]
        out += [f"| {k} | {v} |" for k, v in rows]
        return "\n".join(out)

    def body(self) -> str:
        meta, mode = self.meta, self.mode
        cache = (
            f"Temporal's default workflow cache ({TEMPORAL_DEFAULT_CACHE:,} runs)"
            if mode.cache == "default"
            else f"a workflow cache of {mode.cache_size:,} runs"
        )
        lines = [
            f"## {mode.runs:,} parked runs on one worker",
            "",
            "Written by `python -m bench.parked` (see `bench/parked.py`); `python -m bench` "
            "keeps this section.",
            "",
            f"- command: `{meta['command']}` (mode: {mode.name}), {meta['started']} UTC, "
            f"took {meta['seconds'] / 60:.1f} min",
            f"- machine: {meta['machine']['cpu']}, {meta['machine']['cores']} cores, "
            f"{meta['machine']['memory']}",
            f"- load average (1 min) at the start, while parking, approving, at the end: "
            f"{meta['load']}",
            f"- one ratchet worker process with {cache}, {mode.in_flight} starts in flight",
            "",
            self.table(),
            "",
            "### Targets (reported, not asserted)",
            "",
            *[f"- {line}" for line in self.targets()],
        ]
        errors = [*self.m.errors, *(c.error for c in self.m.comebacks if c.error)]
        if errors:
            lines += ["", "### Problems", "", *[f"- {e}" for e in errors[:20]]]
        lines += ["", HOW_TO_READ]
        return "\n".join(lines)


def _s(value: float | None) -> str:
    return "—" if value is None else f"{value:,.1f} s"


HOW_TO_READ = """### How to read this

- The runs are `bench_hitl` runs of `bench/impl_ratchet.py`: the workload's agent with
  a `require_approval` rule on `lookup_order`, so each stops at its first tool call,
  after one model call, and waits (for up to the rule's 24 h) for a person.
- A run counts as parked when the visibility store lists it with
  `RatchetStatus = 'waiting-approval'` (one `CountWorkflowExecutions` query every half
  second); the model server's request count is in the progress lines.
- **RSS** is the worker process's `VmRSS` from `/proc`; the peak is its `VmHWM`, the
  most it was resident at any time since it started, starts and approvals included.
  The worker caches at most the number of runs its cache holds; every run started
  after the cache was full pushed the least recently used one out.
- **back**: for each of the first runs started, `RunHandle.pending()` (a query, which
  the worker can answer only after replaying the run's history into its cache) and
  `RunHandle.approve()` (an update, accepted by the run), one run at a time; **until
  the run's result**: the same start to `RunHandle.result()`, two more model calls
  and a tool call later (the model answers at once). The last few runs started, still
  in the cache, are approved first the same way: the difference is the replay.
- The dev server keeps everything in memory; the runs left waiting are terminated at
  the end. The machine's cores are shared by the dev server, the model server, the
  worker and this driver."""


# -- main ----------------------------------------------------------------------------------


async def measure(mode: Mode, logs: Path) -> Report:
    started = datetime.datetime.now(datetime.UTC)
    t0 = time.monotonic()
    bench = Parked(mode, logs)
    bench.loads.append(os.getloadavg()[0])
    try:
        await bench.setup()
        await bench.warm_up()
        try:
            await bench.park()
            await bench.come_back()
        except Exception as e:
            bench.m.errors.append(f"{type(e).__name__}: {e}")
            log(f"  !! {type(e).__name__}: {e}")
        memory = bench.worker.memory_kib()
        bench.m.peak_kib = memory["VmHWM"]
        bench.loads.append(os.getloadavg()[0])
        await bench.end_the_rest()
    finally:
        await bench.teardown()
    meta = {
        "command": "python -m bench.parked " + " ".join(sys.argv[1:]),
        "started": started.strftime("%Y-%m-%d %H:%M"),
        "seconds": time.monotonic() - t0,
        "machine": _machine(),
        "load": " ".join(f"{x:.1f}" for x in bench.loads),
        "versions": _versions(),
    }
    return Report(bench.m, meta)


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.parked",
        description="10,000 runs parked on approvals, on one worker with the default cache.",
    )
    parser.add_argument(
        "--smoke", action="store_true", help="30 runs on a cache of 10, seconds; writes nothing"
    )
    parser.add_argument("--runs", type=int, help="runs to park (default: 10,000)")
    parser.add_argument(
        "--cache",
        metavar="N|default",
        help="the worker's workflow cache (default: Temporal's own, 1000 runs)",
    )
    parser.add_argument("--sample", type=int, help="evicted runs to approve (default: 50)")
    parser.add_argument("--in-flight", type=int, help="starts in flight at once (default: 50)")
    parser.add_argument(
        "--window",
        type=int,
        help="most runs started and not yet at their model call (default: 200)",
    )
    parser.add_argument("--results", help="write the block into this file (default: RESULTS.md)")
    parser.add_argument("--json", help="write every measurement here as JSON")
    parser.add_argument("--logs", help="directory for the processes' logs")
    args = parser.parse_args()
    mode = MODES["smoke" if args.smoke else "full"]
    changes = {
        "runs": args.runs,
        "cache": args.cache,
        "sample": args.sample,
        "in_flight": args.in_flight,
        "window": args.window,
    }
    mode = dataclasses.replace(mode, **{k: v for k, v in changes.items() if v is not None})
    if mode.sample > mode.runs - mode.cache_size or mode.cached_sample > mode.cache_size:
        parser.error(
            f"approving the first {mode.sample} and the last {mode.cached_sample} of "
            f"{mode.runs} runs with a cache of {mode.cache_size}: the first would not all "
            "have been evicted, or the last not all cached; start more runs or approve fewer"
        )
    logs = Path(args.logs) if args.logs else Path(tempfile.mkdtemp(prefix="ratchet-parked-"))
    logs.mkdir(parents=True, exist_ok=True)
    report = asyncio.run(measure(mode, logs))
    body = report.body()
    log("")
    log(body)
    target = Path(args.results) if args.results else (None if args.smoke else RESULTS)
    if target is not None:
        old = target.read_text() if target.exists() else ""
        target.write_text(results_block.replace(old, BLOCK, body))
        log(f"wrote {target}")
    if args.json:
        Path(args.json).write_text(json.dumps(report.m.as_json(), indent=1))
    failed = bool(report.m.errors) or not all(c.completed for c in report.m.comebacks)
    sys.stdout.flush()
    # Skip interpreter teardown: Temporal's native threads can abort it noisily.
    os._exit(1 if failed else 0)


if __name__ == "__main__":
    main()
