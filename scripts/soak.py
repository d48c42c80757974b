"""Soak: thousands of agent runs under model faults, kills and store restarts.

Usage (from the repository root, with the venv; ``make soak`` runs the full one)::

    .venv/bin/python -m scripts.soak --runs 2000 --minutes 10 [--workers 3] [--seed 1]
        [--fault-rate 0.02] [--kill-every 10 30] [--server-kills 2] [--pg-restarts 2]

It builds on ``scripts/chaos.py`` (its model, worker pool, agent, checks) and
runs, all on 127.0.0.1 in a fresh temporary directory:

* a Temporal dev server (SQLite file), a PostgreSQL transcript store (pgserver)
  and a ``ScriptedModelServer`` answering like ``ChaosModel`` after 50-400 ms
  (seeded), except that ``--fault-rate`` of its answers are a fault, in equal
  parts: HTTP 429 with ``Retry-After: 1``, a 5xx (500, 502 or 503), or a hang
  (the agent's 5 s model timeout cuts it);
* ``--workers`` worker processes (``scripts.soak_app``) on one task queue.

First a few fault-free baseline runs check the expected transcript of a run
(the chaos agent's transcript depends only on its order number). Then the
``--runs`` runs are started evenly over ``--minutes``, while, on a seeded
schedule, a random worker is killed with ``kill -9`` every ``--kill-every``
seconds (and replaced at once), the Temporal server is killed ``--server-kills``
times (down 1-3 s, restarted on the same SQLite file) and PostgreSQL is stopped
and restarted ``--pg-restarts`` times (down 3-5 s). One worker, the
*long-lived* one, is never killed, so that its memory shows a leak over the
whole soak (the others live a minute or two each).

Checks (exit status 1 if any fails, each printed on a ``FAIL`` line): every
run completed with the expected answer (none was lost to a store outage or a
fault); each order was refunded exactly once (``lost``, ``duplicated``); every
transcript equals the fault-free one (``transcript_mismatches``); no worker
exited by itself; every scheduled fault happened.

Report: runs started and finished per minute, p50 / p95 run latency (start to
result, from Temporal's start and close times), worker RSS (the long-lived
worker's at start and end and its slope after a warm-up minute, in MiB per
minute and per 1,000 runs; the killed workers' RSS at their first and last
sample), and the faults that landed. The last line is the summary::

    soak: runs=2000 completed=2000 lost=0 duplicated=0 transcript_mismatches=0
    unexpected_worker_exits=0 worker_kills=27 server_kills=2 pg_restarts=2
    served_429=30 served_5xx=28 served_hang=27 activity_retries=140 runs_hit=120 ...

It is not part of ``make test`` (its smoke mode is: tests/test_soak_smoke.py).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import random
import shutil
import signal
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
from temporalio.client import Client, WorkflowExecutionStatus

from ratchet import AgentClient, RunHandle, connect
from ratchet.local import TemporalDevServer
from ratchet.local._proc import free_port
from ratchet.testing import RecordedRequest, ScriptedModelServer, Step, error, hang
from scripts.chaos import (
    API_KEY,
    Chaos,
    ChaosModel,
    Outcome,
    WorkerPool,
    check_run,
    collect,
    expected_answer,
    expected_tool_result,
    refund_rows,
    retrying,
    seed_orders,
    tool_log_lines,
)

APP = "scripts.soak_app:agent"
AGENT = "chaos"
FAULTS = ("429", "5xx", "hang")
MIB = 1024 * 1024
OUTAGE_MARK = "; waiting up to"
"""Logged (see ratchet._store_outages) each time a worker starts waiting out a store outage."""


_T0 = time.monotonic()


def log(text: str) -> None:
    print(f"[soak {time.monotonic() - _T0:6.1f}s] {text}", flush=True)


# --------------------------------------------------------------------------- #
# The model: chaos's answers, realistic latency, a few faults
# --------------------------------------------------------------------------- #


class SoakModel(ChaosModel):
    """``ChaosModel`` answering after 50-400 ms, with ``fault_rate`` of its answers faults.

    Whether a request is answered with a fault is seeded by (seed, order, turn,
    how often this call was seen), like the delay: the retry of a faulted call
    rolls again. Faults are served only in the ``soak`` phase, and counted.
    """

    def __init__(self, seed: int, fault_rate: float, hang_seconds: float) -> None:
        super().__init__(seed)
        self.fault_rate = fault_rate
        self.hang_seconds = hang_seconds
        self.served: Counter[str] = Counter()
        self._rolls = threading.local()

    def _delay(self, order_id: int, kind: str) -> float:
        with self._lock:
            counts = self.calls.setdefault(self.phase, Counter())
            counts[(order_id, kind)] += 1
            seen = counts[(order_id, kind)]
        rng = random.Random(f"soak/{self.seed}/{order_id}/{kind}/{seen}")
        # The server answers each request on its own thread: keep the roll there.
        self._rolls.fault = rng.choice(FAULTS) if rng.random() < self.fault_rate else None
        self._rolls.status = rng.choice((500, 502, 503))
        return rng.uniform(0.05, 0.4)

    def __call__(self, request: RecordedRequest) -> Step:
        step = super().__call__(request)
        fault = self._rolls.fault if self.phase == "soak" else None
        if fault is None:
            return step
        with self._lock:
            self.served[fault] += 1
        if fault == "429":
            return error(429, headers={"Retry-After": "1"}, delay=step.delay)
        if fault == "5xx":
            return error(self._rolls.status, delay=step.delay)
        return hang(self.hang_seconds)


def expected_transcript(system: tuple[Any, ...], n: int) -> list[tuple[Any, ...]]:
    """The fault-free transcript of ``Refund order n`` (as ``normalise`` gives it)."""
    arguments = json.dumps({"order_id": n})
    return [
        system,
        ("user", f"Refund order {n}", (), None, None, False),
        ("assistant", None, (("refund_order", arguments, f"call_{n}"),), None, None, False),
        ("tool", expected_tool_result(n), (), f"call_{n}", "refund_order", False),
        ("assistant", expected_answer(n), (), None, None, False),
    ]


# --------------------------------------------------------------------------- #
# Figures
# --------------------------------------------------------------------------- #


@dataclass
class RunTimes:
    started: float
    closed: float | None
    """Epoch seconds, from Temporal's record of the run."""


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of y over x (0 with fewer than two distinct x)."""
    if len({x for x, _ in points}) < 2:
        return 0.0
    mx = statistics.fmean(x for x, _ in points)
    my = statistics.fmean(y for _, y in points)
    num = sum((x - mx) * (y - my) for x, y in points)
    den = sum((x - mx) ** 2 for x, _ in points)
    return num / den


@dataclass
class Figures:
    per_minute: list[tuple[int, int, int]] = field(default_factory=list)
    """(minute, runs started, runs finished) since the soak started."""
    p50: float = float("nan")
    p95: float = float("nan")
    runs_per_s: float = float("nan")
    span: float = 0.0
    """Seconds from the soak's start to the last run's end."""
    rss_start: float = float("nan")
    rss_end: float = float("nan")
    rss_slope_per_min: float = float("nan")
    rss_slope_per_1000_runs: float = float("nan")
    killed_rss_first: float = float("nan")
    killed_rss_last: float = float("nan")
    killed_rss_max: float = float("nan")
    lifetimes: int = 0


# --------------------------------------------------------------------------- #
# The soak
# --------------------------------------------------------------------------- #


@dataclass
class Soak(Chaos):
    pg_dir: Path = Path()
    pg: Any = None
    pg_uri: str = ""
    pg_restarts: int = 0
    planned: Counter[str] = field(default_factory=Counter)
    long_lived: str = ""
    rss: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    """Worker name -> (seconds since the soak started, RSS in MiB) samples."""
    soak_started_wall: float = 0.0
    times: dict[int, RunTimes] = field(default_factory=dict)
    figures: Figures = field(default_factory=Figures)
    system: tuple[Any, ...] | None = None

    def pool(self, queue: str, shop_db: Path) -> WorkerPool:
        pool = super().pool(queue, shop_db)
        pool.env["RATCHET_TRANSCRIPT_STORE"] = self.pg_uri
        pool.app = APP
        return pool

    def teardown(self) -> None:
        super().teardown()
        if self.pg is not None:
            try:
                self.pg.cleanup()
            except Exception as e:
                log(f"could not stop PostgreSQL: {e!r}")

    # -- faults ---------------------------------------------------------------- #

    async def kill_worker(self, pool: WorkerPool, rng: random.Random) -> None:
        """``kill -9`` a random connected worker other than the long-lived one."""
        deadline = time.monotonic() + 60
        while not (
            candidates := [
                w for w in pool.live if w.alive() and w.ready() and w.name != self.long_lived
            ]
        ):
            self.top_up(pool)
            if time.monotonic() > deadline:
                raise RuntimeError("no worker became ready within 60s")
            await asyncio.sleep(0.1)
        victim = rng.choice(candidates)
        self.sample(victim.name, victim.pid)
        pool.kill9(victim)
        self.kills += 1
        replacement = pool.spawn()
        log(
            f"kill -9 worker {victim.name} (pid {victim.pid}) [{self.kills}], "
            f"started {replacement.name} (pid {replacement.pid})"
        )

    async def restart_server(self, pool: WorkerPool, rng: random.Random) -> None:
        """Chaos's server kill, logged here: ``kill -9``, down 1-3 s, same port and file."""
        await self.wait_ready(pool)
        down = rng.uniform(1, 3)
        log(f"kill -9 Temporal server (pid {self.temporal.pid}), down for {down:.1f}s")
        self.temporal.kill()
        await asyncio.sleep(down)
        await asyncio.to_thread(self.temporal.start, 60)
        self.server_restarts += 1
        log(f"Temporal server restarted (pid {self.temporal.pid}) [{self.server_restarts}]")

    async def restart_pg(self, rng: random.Random) -> None:
        down = rng.uniform(3, 5)
        log(f"stop PostgreSQL, down for {down:.1f}s")
        await asyncio.to_thread(self.pg.cleanup)
        await asyncio.sleep(down)
        self.pg = await asyncio.to_thread(self._start_pg)
        if self.pg.get_uri() != self.pg_uri:
            self.failures.append(f"PostgreSQL came back on {self.pg.get_uri()}, not {self.pg_uri}")
        self.pg_restarts += 1
        log(f"PostgreSQL restarted [{self.pg_restarts}]")

    def _start_pg(self) -> Any:
        import pgserver

        return pgserver.get_server(self.pg_dir, cleanup_mode="stop")

    def schedule(self, rng: random.Random, duration: float) -> list[tuple[float, str]]:
        """Seeded (seconds into the soak, fault) pairs, in order."""
        lo, hi = self.args.kill_every
        events: list[tuple[float, str]] = []
        t = rng.uniform(lo, hi)
        while t < duration * 0.95:
            events.append((t, "worker"))
            t += rng.uniform(lo, hi)
        n = self.args.pg_restarts
        for i in range(n):
            events.append((duration * ((i + 1) / (n + 1) + rng.uniform(-0.05, 0.05)), "pg"))
        for _ in range(self.args.server_kills):
            events.append((duration * rng.uniform(0.15, 0.85), "server"))
        events.sort()
        self.planned = Counter(kind for _, kind in events)
        return events

    # -- memory ---------------------------------------------------------------- #

    def sample(self, name: str, pid: int) -> None:
        try:
            rss = psutil.Process(pid).memory_info().rss / MIB
        except psutil.Error:
            return
        self.rss.setdefault(name, []).append((time.time() - self.soak_started_wall, rss))

    async def watch(self, pool: WorkerPool) -> None:
        """Sample the live workers' RSS; replace workers that exited by themselves."""
        while True:
            for worker in list(pool.live):
                if worker.alive() and worker.ready():
                    self.sample(worker.name, worker.pid)
            self.top_up(pool)
            await asyncio.sleep(self.args.sample_seconds)

    # -- phases ---------------------------------------------------------------- #

    @staticmethod
    def starter(agents: AgentClient, run_id: str, n: int) -> Callable[[], Awaitable[RunHandle]]:
        # Starting again with the same id attaches: safe to retry through outages.
        return functools.partial(agents.start, AGENT, f"Refund order {n}", id=run_id, attach=True)

    async def start_paced(
        self, agents: AgentClient, handles: dict[str, RunHandle], started: float, duration: float
    ) -> None:
        """Start run n at ``started + n * duration / runs``: an even load (catching up
        after outages)."""
        runs = self.args.runs
        for n in range(1, runs + 1):
            await asyncio.sleep(max(0.0, started + (n - 1) * duration / runs - time.monotonic()))
            run_id = f"soak-{self.args.seed}-{n}"
            handles[run_id] = await retrying(
                f"start {run_id}", self.starter(agents, run_id, n), 120
            )
            if n % max(1, runs // 10) == 0:
                log(f"{n}/{runs} runs started")

    async def baseline(self, client: Client) -> dict[int, Outcome]:
        """A few fault-free runs (orders after the soak's): they fix the expected transcript."""
        args = self.args
        self.model.phase = "baseline"
        agents = AgentClient(client, task_queue=self.soak_pool.queue)
        orders = range(args.runs + 1, args.runs + 1 + self.args.baseline_runs)
        ids = {f"soak-{args.seed}-baseline-{n}": n for n in orders}
        handles = {
            run_id: await retrying(f"start {run_id}", self.starter(agents, run_id, n))
            for run_id, n in ids.items()
        }
        await self.wait_closed(client, list(handles), time.monotonic() + 120)
        outcomes = {n: await collect(agents, run_id) for run_id, n in ids.items()}
        for n, outcome in outcomes.items():
            if outcome.status != "completed" or outcome.transcript is None:
                raise RuntimeError(f"baseline run for order {n} did not complete: {outcome}")
            self.system = outcome.transcript[0]
            if outcome.transcript != expected_transcript(self.system, n):
                raise RuntimeError(
                    f"baseline transcript of order {n} is not the expected one:\n"
                    f"      got      {outcome.transcript}\n"
                    f"      expected {expected_transcript(self.system, n)}"
                )
        log(f"baseline: {len(outcomes)} fault-free runs, transcripts as expected")
        return outcomes

    async def wait_closed(self, client: Client, run_ids: list[str], deadline: float) -> list[str]:
        """Wait until the runs are closed or ``deadline``; the ones still open."""
        pending = list(run_ids)
        last_report = time.monotonic()
        gate = asyncio.Semaphore(16)

        async def is_open(run_id: str) -> bool:
            async with gate:
                try:
                    desc = await client.get_workflow_handle(run_id).describe()
                except Exception:
                    return True
                return desc.status == WorkflowExecutionStatus.RUNNING

        while pending:
            flags = await asyncio.gather(*(is_open(r) for r in pending))
            pending = [r for r, flag in zip(pending, flags, strict=True) if flag]
            if not pending or time.monotonic() > deadline:
                break
            if time.monotonic() - last_report > 10:
                log(f"{len(pending)} runs still open, e.g. {', '.join(pending[:3])}")
                last_report = time.monotonic()
            await asyncio.sleep(1)
        return pending

    async def soak(self, client: Client) -> dict[int, Outcome]:
        args = self.args
        rng = random.Random(args.seed)
        pool = self.soak_pool
        agents = AgentClient(client, task_queue=pool.queue)
        duration = args.minutes * 60
        events = self.schedule(rng, duration)
        log(
            f"soak: {args.runs} runs over {duration:.0f}s with {self.planned['worker']} worker "
            f"kills, {self.planned['server']} server kills, {self.planned['pg']} PostgreSQL "
            f"restarts, {args.fault_rate:.1%} model faults"
        )
        self.model.phase = "soak"
        self.long_lived = pool.live[0].name
        handles: dict[str, RunHandle] = {}
        started = self.stats.chaos_started = time.monotonic()
        self.soak_started_wall = time.time()
        starter = asyncio.create_task(self.start_paced(agents, handles, started, duration))
        watcher = asyncio.create_task(self.watch(pool))
        try:
            for at, kind in events:
                await asyncio.sleep(max(0.0, started + at - time.monotonic()))
                if starter.done() and starter.exception() is not None:
                    break
                if kind == "worker":
                    await self.kill_worker(pool, rng)
                elif kind == "server":
                    await self.restart_server(pool, rng)
                else:
                    await self.restart_pg(rng)
                self.top_up(pool)
            await starter
            log(f"all runs started after {time.monotonic() - started:.1f}s; waiting for them")
            open_ids = await self.wait_closed(
                client, list(handles), time.monotonic() + args.drain_limit
            )
            if open_ids:
                log(f"{len(open_ids)} runs still open after the drain limit")
        finally:
            watcher.cancel()
            if not starter.done():
                starter.cancel()
        self.stats.chaos_ended = time.monotonic()
        for worker in pool.live:
            self.sample(worker.name, worker.pid)
        await self.wait_ready(pool)
        log("collecting the runs' results, transcripts and histories")
        outcomes = await self.collect_all(agents, client)
        log("collected")
        return outcomes

    async def collect_all(self, agents: AgentClient, client: Client) -> dict[int, Outcome]:
        gate = asyncio.Semaphore(12)
        outcomes: dict[int, Outcome] = {}

        async def one(n: int) -> None:
            run_id = f"soak-{self.args.seed}-{n}"
            async with gate:
                outcomes[n] = await collect(agents, run_id)
                try:
                    desc = await retrying(
                        f"describe {run_id}", client.get_workflow_handle(run_id).describe, 30
                    )
                    self.times[n] = RunTimes(
                        desc.start_time.timestamp(),
                        desc.close_time.timestamp() if desc.close_time else None,
                    )
                except RuntimeError:
                    pass

        await asyncio.gather(*(one(n) for n in range(1, self.args.runs + 1)))
        return outcomes

    # -- verification and report ------------------------------------------------ #

    def check(self, outcomes: dict[int, Outcome]) -> None:
        args, stats = self.args, self.stats
        assert self.system is not None
        for n, outcome in sorted(outcomes.items()):
            check_run(
                stats,
                self.failures,
                f"soak-{args.seed}-{n}",
                outcome,
                expected_transcript(self.system, n),
            )
        orders = range(1, args.runs + 1 + self.args.baseline_runs)
        rows = refund_rows(self.tmp / "shop-soak.sqlite")
        lost = [n for n in orders if not rows.get(n)]
        duplicated = {n: keys for n, keys in rows.items() if len(keys) > 1}
        stats.lost, stats.duplicated = len(lost), len(duplicated)
        stats.verified = True
        for n in lost:
            self.failures.append(f"order {n}: no refund row (lost)")
        for n, keys in duplicated.items():
            self.failures.append(f"order {n}: {len(keys)} refund rows (duplicated): {keys}")
        try:
            self.model_server.verify()
        except AssertionError as e:
            self.failures.append(str(e))
        done = {"worker": self.kills, "server": self.server_restarts, "pg": self.pg_restarts}
        for kind, planned in self.planned.items():
            if done[kind] < planned:
                self.failures.append(f"only {done[kind]} of {planned} {kind} faults happened")

    def compute_figures(self) -> None:
        fig, origin = self.figures, self.soak_started_wall
        closed = [t for t in self.times.values() if t.closed is not None]
        latencies = [t.closed - t.started for t in closed if t.closed is not None]
        fig.p50, fig.p95 = percentile(latencies, 0.5), percentile(latencies, 0.95)
        if closed:
            last = max(t.closed for t in closed if t.closed is not None)
            fig.span = last - origin
            fig.runs_per_s = len(closed) / max(1e-9, fig.span)
            minutes = int((last - origin) // 60) + 1
            fig.per_minute = [
                (
                    m,
                    sum(1 for t in self.times.values() if m <= (t.started - origin) / 60 < m + 1),
                    sum(1 for t in closed if t.closed and m <= (t.closed - origin) / 60 < m + 1),
                )
                for m in range(minutes)
            ]
        samples = self.rss.get(self.long_lived, [])
        if samples:
            fig.rss_start, fig.rss_end = samples[0][1], samples[-1][1]
            # After a warm-up (imports, caches, connection pools fill on first use).
            warm = samples[0][0] + min(60.0, 0.2 * (samples[-1][0] - samples[0][0]))
            steady = [(t / 60, mib) for t, mib in samples if t >= warm]
            fig.rss_slope_per_min = slope(steady)
            if steady and closed:
                window = [
                    t for t in closed if t.closed and warm <= t.closed - origin <= samples[-1][0]
                ]
                span_min = max(1e-9, steady[-1][0] - steady[0][0])
                if window:
                    fig.rss_slope_per_1000_runs = fig.rss_slope_per_min * span_min / len(window)
                    fig.rss_slope_per_1000_runs *= 1000
        others = [s for name, s in self.rss.items() if name != self.long_lived and s]
        if others:
            fig.lifetimes = len(others)
            fig.killed_rss_first = statistics.median(s[0][1] for s in others)
            fig.killed_rss_last = statistics.median(s[-1][1] for s in others)
            fig.killed_rss_max = max(mib for s in others for _, mib in s)

    def report(self) -> bool:
        args, stats, fig = self.args, self.stats, self.figures
        pool = self.soak_pool_or_none()
        exited = pool.exited if pool is not None else []
        for worker, code in exited:
            self.failures.append(
                f"worker {worker.name} (pid {worker.pid}) exited by itself with code {code}; "
                f"log {worker.log_path}:\n{worker.log_tail()}"
            )
        if stats.verified:
            self.compute_figures()
            print("[soak] minute  started  finished  finished/s", flush=True)
            for m, began, ended in fig.per_minute:
                # The last minute is partial: its rate is over the seconds it had.
                seconds = min(60.0, fig.span - 60 * m)
                rate = ended / seconds if seconds > 0 else 0.0
                print(f"[soak] {m:6d}  {began:7d}  {ended:8d}  {rate:10.2f}", flush=True)
            print(
                f"[soak] run latency (start to result): p50 {fig.p50:.2f}s, p95 {fig.p95:.2f}s",
                flush=True,
            )
            print(
                f"[soak] long-lived worker {self.long_lived}: RSS {fig.rss_start:.1f} MiB at "
                f"start, {fig.rss_end:.1f} MiB at end, slope after warm-up "
                f"{fig.rss_slope_per_min:+.3f} MiB/min ({fig.rss_slope_per_1000_runs:+.2f} MiB "
                f"per 1,000 runs of the pool)",
                flush=True,
            )
            print(
                f"[soak] {fig.lifetimes} other workers ({self.kills} killed, the rest alive at "
                f"the end): RSS median {fig.killed_rss_first:.1f} MiB at first sample, "
                f"{fig.killed_rss_last:.1f} MiB at last, max {fig.killed_rss_max:.1f} MiB",
                flush=True,
            )
        tool_log = tool_log_lines(self.tmp / f"tools-soak-{args.seed}.log")
        # Each time a worker met the PostgreSQL outage it logged that it waits it out.
        outage_waits = sum(
            path.read_text(errors="replace").count(OUTAGE_MARK)
            for path in self.tmp.glob(f"soak-{args.seed}-w*.log")
        )
        dedup_hits = sum(1 for parts in tool_log if parts[2:3] == ["dup"])
        for failure in self.failures:
            print(f"FAIL {failure}", flush=True)
        if self.failures or args.keep:
            print(f"[soak] files kept in {self.tmp}", flush=True)
        now = time.monotonic()
        elapsed = (
            (stats.chaos_ended or now) - stats.chaos_started
            if stats.chaos_started is not None
            else 0.0
        )

        def checked(value: int) -> str:
            return str(value) if stats.verified else "?"

        served = self.served()
        print(
            f"soak: runs={args.runs} completed={checked(stats.completed)} "
            f"lost={checked(stats.lost)} duplicated={checked(stats.duplicated)} "
            f"transcript_mismatches={checked(stats.mismatches)} "
            f"unexpected_worker_exits={len(exited)} worker_kills={self.kills} "
            f"server_kills={self.server_restarts} pg_restarts={self.pg_restarts} "
            f"served_429={served['429']} served_5xx={served['5xx']} "
            f"served_hang={served['hang']} activity_retries={checked(stats.activity_retries)} "
            f"workflow_task_faults={checked(stats.workflow_task_faults)} "
            f"runs_hit={checked(stats.runs_hit)} "
            f"store_outage_waits={outage_waits} "
            f"model_requests_repeated={self.model.retried('soak')} dedup_hits={dedup_hits} "
            f"runs_per_s={fig.runs_per_s:.2f} p50={fig.p50:.2f}s p95={fig.p95:.2f}s "
            f"rss_start={fig.rss_start:.1f}MiB rss_end={fig.rss_end:.1f}MiB "
            f"rss_slope={fig.rss_slope_per_min:+.3f}MiB/min "
            f"elapsed={elapsed:.1f}s total={now - stats.script_started:.1f}s",
            flush=True,
        )
        return not self.failures

    def served(self) -> Counter[str]:
        model = self.model
        return model.served if isinstance(model, SoakModel) else Counter()

    def soak_pool_or_none(self) -> WorkerPool | None:
        return next((p for p in self.pools if p.queue.startswith("soak-")), None)

    @property
    def soak_pool(self) -> WorkerPool:
        pool = self.soak_pool_or_none()
        assert pool is not None
        return pool


async def run(args: argparse.Namespace, soak: Soak) -> None:
    await asyncio.to_thread(soak.temporal.start, 60)
    log(f"Temporal dev server on {soak.temporal.address} (pid {soak.temporal.pid})")
    soak.pg = await asyncio.to_thread(soak._start_pg)
    soak.pg_uri = soak.pg.get_uri()
    # This process reads the transcripts back from the same store.
    os.environ["RATCHET_TRANSCRIPT_STORE"] = soak.pg_uri
    log(f"PostgreSQL transcript store in {soak.pg_dir}")
    client = await connect(soak.temporal.address)
    shop = soak.tmp / "shop-soak.sqlite"
    seed_orders(shop, args.runs + args.baseline_runs)
    pool = soak.pool(f"soak-{args.seed}", shop)
    soak.top_up(pool)
    await soak.wait_ready(pool)
    await soak.baseline(client)
    outcomes = await soak.soak(client)
    soak.check(outcomes)


SMOKE: dict[str, Any] = {
    "runs": 24,
    "minutes": 0.2,
    "kill_every": (4.0, 6.0),
    "baseline_runs": 2,
    "fault_rate": 0.1,
    "server_kills": 1,
    "pg_restarts": 1,
    "sample_seconds": 1.0,
    "drain_limit": 120.0,
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m scripts.soak",
        description="Many agent runs under model faults, worker and server kills and "
        "transcript store restarts; checks and throughput, latency and memory figures.",
    )
    parser.add_argument("--runs", type=int, default=2000, help="agent runs (default 2000)")
    parser.add_argument(
        "--minutes", type=float, default=10, help="minutes to start them over (default 10)"
    )
    parser.add_argument("--workers", type=int, default=3, help="live workers (default 3)")
    parser.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    parser.add_argument(
        "--fault-rate", type=float, default=0.02, help="model answers that fault (default 0.02)"
    )
    parser.add_argument(
        "--kill-every",
        type=float,
        nargs=2,
        default=(10.0, 30.0),
        metavar=("MIN", "MAX"),
        help="seconds between worker kill -9s, drawn uniformly (default 10 30)",
    )
    parser.add_argument(
        "--server-kills", type=int, default=2, help="Temporal server kill -9s (default 2)"
    )
    parser.add_argument(
        "--pg-restarts", type=int, default=2, help="PostgreSQL restarts (default 2)"
    )
    parser.add_argument(
        "--hang-seconds",
        type=float,
        default=8,
        help="how long a hung model call holds its connection (default 8)",
    )
    parser.add_argument(
        "--sample-seconds", type=float, default=5, help="RSS sampling period (default 5)"
    )
    parser.add_argument(
        "--drain-limit",
        type=float,
        default=300,
        help="seconds runs may take to finish after the last start (default 300)",
    )
    parser.add_argument(
        "--baseline-runs",
        type=int,
        default=5,
        help="fault-free runs that check the expected transcript first (default 5)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="a quick check that the soak works (24 runs over 12 s, a fault every few "
        "seconds, 10%% model faults, one of each restart); options given override it",
    )
    args = parser.parse_args(argv)
    if args.smoke:
        parser.set_defaults(**SMOKE)
        args = parser.parse_args(argv)
    if args.baseline_runs < 1:
        parser.error("--baseline-runs must be >= 1")
    if args.runs < 1 or args.workers < 2 or args.minutes <= 0:
        parser.error("--runs must be >= 1, --workers >= 2, --minutes > 0")
    if not 0 <= args.fault_rate <= 1 or not 0 < args.kill_every[0] <= args.kill_every[1]:
        parser.error("--fault-rate must be in [0, 1] and 0 < --kill-every MIN <= MAX")
    return args


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    tmp = Path(tempfile.mkdtemp(prefix=f"ratchet-soak-{args.seed}-{uuid.uuid4().hex[:4]}-"))
    model = SoakModel(args.seed, args.fault_rate, args.hang_seconds)
    model_server = ScriptedModelServer(handler=model, expected_api_key=API_KEY, model="chaos")
    temporal = TemporalDevServer(
        db_path=tmp / "temporal.sqlite",
        log_path=tmp / "temporal.log",
        port=free_port(),
        ui_port=None,
    )
    soak = Soak(args, tmp, model, model_server, temporal, pg_dir=tmp / "pg")
    try:
        model_server.start()
        asyncio.run(run(args, soak))
    except KeyboardInterrupt:
        soak.failures.append("interrupted")
    except Exception as e:
        soak.failures.append(f"{type(e).__name__}: {e}")
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        soak.teardown()
    ok = soak.report()
    if ok and not args.keep:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # The Temporal SDK's native runtime can crash at interpreter exit; skip it.
    os._exit(code)
