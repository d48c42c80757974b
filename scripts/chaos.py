"""Chaos run: agent runs survive ``kill -9`` of workers and of the Temporal server.

Usage (from the repository root, with the venv)::

    .venv/bin/python -m scripts.chaos --runs 50 --kills 20 [--workers 3] [--seed 1]
                                      [--server-kills 1] [--time-limit 600] [--keep]

What it does, all on 127.0.0.1 and in a fresh temporary directory:

1. Starts a Temporal dev server (SQLite file, headless, free port) and a
   ``ScriptedModelServer`` whose answers depend only on the request: for the
   prompt ``Refund order N`` it calls ``refund_order(order_id=N)`` (call id
   ``call_N``), for that tool's result it answers ``Refunded order N.``. Each
   answer comes after a small seeded delay, so kills also land during model calls.
2. Baseline: runs the same N prompts with no faults on a separate task queue and
   a separate shop database, and records their transcripts.
3. Chaos: keeps ``--workers`` worker processes (``ratchet worker --app
   scripts.chaos_app:agent``) running and starts the N runs a few at a time
   between faults, so faults hit runs at every stage. A fault comes every
   0.3-2 s (seeded): ``kill -9`` of a random connected worker, immediately
   replaced, until ``--kills`` workers were killed; at ``--server-kills``
   random points among those, ``kill -9`` of the Temporal server instead, down
   for 1-3 s, then restarted on the same port and SQLite file (the running
   workers must reconnect by themselves). Then it waits for the runs; the whole
   chaos phase may take at most ``--time-limit`` seconds.
4. Verifies, and this is what the run proves:

   * every run completed, with the expected answer;
   * every side effect was applied exactly once: the ``refunds`` table of the
     chaos shop database has exactly one row per order (``lost`` counts orders
     with none, ``duplicated`` orders with more than one), although the tool
     did run again after kills;
   * every final transcript (role, content, tool calls with ids and arguments,
     tool_call_id, name, is_error) equals the fault-free run's transcript.

Reading the output: progress lines start with ``[chaos]``; each failure is
printed on a line starting with ``FAIL`` (and the temporary directory with
Temporal's SQLite file and log, the worker logs, the tool log and both shop
databases is kept, its path printed); the last line is always the summary, on
one line::

    chaos: runs=50 completed=50 kills=20 server_restarts=1 lost=0 duplicated=0
    transcript_mismatches=0 unexpected_worker_exits=0 runs_hit=17 activity_retries=20
    workflow_task_faults=19 model_requests_repeated=12 tool_executions=58
    dedup_hits=8 elapsed=34.2s total=56.3s

The first eight fields are the checks (``?`` if the run stopped before them).
The rest show that the faults bit: ``runs_hit`` runs have a retried model or
tool call (``activity_retries``) or a timed-out workflow task
(``workflow_task_faults``, e.g. a killed worker's sticky queue) in their
history; ``model_requests_repeated`` calls reached the model again;
``tool_executions`` counts refund attempts (one per run without faults) and
``dedup_hits`` those that found the refund an attempt killed after its write
had already applied, the worst moment to die. ``elapsed`` is the chaos phase,
``total`` the whole script. Exit status 0 if every check passed, else 1. Every
process the script starts is stopped on exit, Ctrl-C and SIGTERM included. It
is not part of ``make test``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import math
import os
import random
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, TypeVar

from temporalio.api.enums.v1 import EventType
from temporalio.client import Client

from examples.support import db
from ratchet import AgentClient, Message, RunFailed, RunHandle, connect
from ratchet.local import TemporalDevServer
from ratchet.local._proc import free_port
from ratchet.testing import RecordedRequest, ScriptedModelServer, Step, call, reply, tool_calls

ROOT = Path(__file__).resolve().parent.parent
APP = "scripts.chaos_app:agent"
AGENT = "chaos"
API_KEY = "sk-chaos-not-a-secret"
PROMPT_RE = re.compile(r"Refund order (\d+)")
READY_MARK = "worker hosting"

T = TypeVar("T")


def log(text: str) -> None:
    print(f"[chaos] {text}", flush=True)


def order_total(order_id: int) -> float:
    """Each order's total, so tool results differ per order but are reproducible."""
    return 10.0 + order_id + (order_id % 7) / 4


def expected_tool_result(order_id: int) -> str:
    return f"Refunded ${order_total(order_id):.2f} for order {order_id}."


def expected_answer(order_id: int) -> str:
    return f"Refunded order {order_id}."


# --------------------------------------------------------------------------- #
# The scripted model
# --------------------------------------------------------------------------- #


class ChaosModel:
    """Handler for ``ScriptedModelServer``: the answer depends only on the messages.

    Delays are seeded by (seed, order, turn, how often this call was seen), so
    they vary between calls but not between runs of the script with one seed.
    Calls are counted per phase to report how many the faults made Temporal repeat.
    """

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.phase = "baseline"
        self.calls: dict[str, Counter[tuple[int, str]]] = {}
        self._lock = threading.Lock()

    def _delay(self, order_id: int, kind: str) -> float:
        with self._lock:
            counts = self.calls.setdefault(self.phase, Counter())
            counts[(order_id, kind)] += 1
            seen = counts[(order_id, kind)]
        return random.Random(f"{self.seed}/{order_id}/{kind}/{seen}").uniform(0.05, 0.5)

    def __call__(self, request: RecordedRequest) -> Step:
        last = request.last_message or {}
        role = last.get("role")
        if role == "user":
            match = PROMPT_RE.fullmatch(str(last.get("content") or ""))
            if match is None:
                raise ValueError(f"unexpected prompt {last.get('content')!r}")
            n = int(match[1])
            return tool_calls(
                call("refund_order", {"order_id": n}, id=f"call_{n}"), delay=self._delay(n, "call")
            )
        if role == "tool":
            call_id = str(last.get("tool_call_id") or "")
            if not call_id.startswith("call_") or not call_id[5:].isdigit():
                raise ValueError(f"unexpected tool_call_id {call_id!r}")
            n = int(call_id[5:])
            content = last.get("content")
            text = (
                expected_answer(n)
                if content == expected_tool_result(n)
                else f"Could not refund order {n}: {content}"
            )
            return reply(text, delay=self._delay(n, "answer"))
        raise ValueError(f"unexpected last message {last!r}")

    def retried(self, phase: str) -> int:
        with self._lock:
            return sum(c - 1 for c in self.calls.get(phase, Counter()).values())


# --------------------------------------------------------------------------- #
# Processes
# --------------------------------------------------------------------------- #


@dataclass
class WorkerProc:
    """One ``ratchet worker`` subprocess, logging to its own file."""

    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def ready(self) -> bool:
        """Connected and polling: the CLI prints its banner after the worker started."""
        try:
            return READY_MARK in self.log_path.read_text(errors="replace")
        except OSError:
            return False

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join("      " + line for line in text.splitlines()[-lines:])


@dataclass
class WorkerPool:
    """Workers on one task queue. Only ever signals processes it started, by PID."""

    address: str
    queue: str
    env: dict[str, str]
    log_dir: Path
    app: str = APP
    """The ``--app`` the workers host (``scripts.soak`` runs its own)."""
    live: list[WorkerProc] = field(default_factory=list)
    exited: list[tuple[WorkerProc, int]] = field(default_factory=list)
    spawned: int = 0

    def spawn(self) -> WorkerProc:
        self.spawned += 1
        name = f"{self.queue}-w{self.spawned}"
        log_path = self.log_dir / f"{name}.log"
        with log_path.open("wb") as out:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "ratchet.cli",
                    "worker",
                    "--app",
                    self.app,
                    "--task-queue",
                    self.queue,
                    "--address",
                    self.address,
                ],
                cwd=ROOT,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                # Own session: the terminal's Ctrl-C reaches only this script,
                # which then stops the workers itself.
                start_new_session=True,
            )
        worker = WorkerProc(name=name, proc=proc, log_path=log_path)
        self.live.append(worker)
        return worker

    def kill9(self, worker: WorkerProc) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(worker.pid, signal.SIGKILL)
        worker.proc.wait()
        self.live.remove(worker)

    def reap(self) -> list[tuple[WorkerProc, int]]:
        """Workers that exited although nobody killed them (removed from ``live``)."""
        gone = [(w, code) for w in self.live if (code := w.proc.poll()) is not None]
        for worker, code in gone:
            self.live.remove(worker)
            self.exited.append((worker, code))
        return gone

    def stop_all(self) -> None:
        for worker in self.live:
            if worker.alive():
                with contextlib.suppress(ProcessLookupError):
                    worker.proc.terminate()
        deadline = time.monotonic() + 5
        for worker in self.live:
            try:
                worker.proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    worker.proc.kill()
                worker.proc.wait()
        self.live.clear()


# --------------------------------------------------------------------------- #
# Helpers
# --------------------------------------------------------------------------- #


async def retrying(what: str, fn: Callable[[], Awaitable[T]], limit: float = 60) -> T:
    """Await ``fn()`` again on errors (server restarting, workers churning) for ``limit`` s."""
    deadline = time.monotonic() + limit
    while True:
        try:
            return await fn()
        except Exception as e:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{what}: still failing after {limit:.0f}s: {e!r}") from e
            await asyncio.sleep(0.5)


def normalise(transcript: list[Message]) -> list[tuple[Any, ...]]:
    return [
        (
            m.role,
            m.content,
            tuple((c.name, c.arguments, c.id) for c in m.tool_calls or ()),
            m.tool_call_id,
            m.name,
            m.is_error,
        )
        for m in transcript
    ]


def seed_orders(path: Path, runs: int) -> None:
    with contextlib.closing(db.connect(path)) as conn:
        conn.executemany(
            "INSERT OR REPLACE INTO orders VALUES (?, ?, ?, ?, ?, ?)",
            [
                (n, f"customer {n}", "chaos monkey", order_total(n), "delivered", "none")
                for n in range(1, runs + 1)
            ],
        )
        conn.commit()


def refund_rows(path: Path) -> dict[int, list[str]]:
    """Idempotency keys of the refund rows, by order id (read-only)."""
    rows: dict[int, list[str]] = {}
    with contextlib.closing(sqlite3.connect(path, timeout=10)) as conn:
        for order_id, key in conn.execute(
            "SELECT order_id, idempotency_key FROM refunds ORDER BY id"
        ):
            rows.setdefault(int(order_id), []).append(str(key))
    return rows


def tool_log_lines(path: Path) -> list[list[str]]:
    if not path.exists():
        return []
    return [line.split() for line in path.read_text().splitlines() if line.strip()]


@dataclass
class Outcome:
    """What one run ended with, and the faults its history records."""

    status: str = "unknown"
    output: str | None = None
    error: str | None = None
    transcript: list[tuple[Any, ...]] | None = None
    activity_retries: int = 0
    """Extra attempts of model and tool calls (a killed attempt is retried elsewhere)."""
    workflow_task_faults: int = 0
    """Workflow tasks that timed out or failed (e.g. on a killed worker's sticky queue)."""


async def history_faults(client: Client, run_id: str, outcome: Outcome) -> None:
    """Count the retries and timed-out workflow tasks recorded in the run's history."""

    async def fetch() -> tuple[int, int]:
        retries = faults = 0
        async for event in client.get_workflow_handle(run_id).fetch_history_events():
            if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
                # Written once per activity, with the attempt that finished it.
                retries += max(0, event.activity_task_started_event_attributes.attempt - 1)
            elif event.event_type in (
                EventType.EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT,
                EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED,
            ):
                faults += 1
        return retries, faults

    outcome.activity_retries, outcome.workflow_task_faults = await retrying(
        f"history of {run_id}", fetch, 30
    )


async def collect(agents: AgentClient, run_id: str) -> Outcome:
    handle = agents.get(run_id)
    outcome = Outcome()
    try:
        outcome.status = await retrying(f"status of {run_id}", handle.temporal_status, 30)
    except RuntimeError as e:
        outcome.error = str(e)
        return outcome
    if outcome.status == "completed":
        result = await retrying(f"result of {run_id}", handle.result, 30)
        outcome.output = result.output
    elif outcome.status == "failed":
        try:
            await handle.result()
        except RunFailed as e:
            outcome.error = f"{e.error_type}: {e.message}"
        except Exception as e:
            outcome.error = repr(e)
    try:
        transcript = await retrying(f"transcript of {run_id}", handle.transcript, 60)
        outcome.transcript = normalise(transcript)
        await history_faults(agents.temporal, run_id, outcome)
    except RuntimeError as e:
        outcome.error = (outcome.error + "; " if outcome.error else "") + str(e)
    return outcome


async def open_runs(handles: dict[str, RunHandle]) -> list[str]:
    """Ids of the runs that are not closed yet (unknown counts as open)."""

    async def is_open(run_id: str) -> bool:
        try:
            return await handles[run_id].temporal_status() == "running"
        except Exception:
            return True

    flags = await asyncio.gather(*(is_open(run_id) for run_id in handles))
    return [run_id for run_id, flag in zip(handles, flags, strict=True) if flag]


# --------------------------------------------------------------------------- #
# The run
# --------------------------------------------------------------------------- #


@dataclass
class Stats:
    """Counts for the summary line; printed as ``?`` unless the checks ran (``verified``)."""

    verified: bool = False
    completed: int = 0
    lost: int = 0
    duplicated: int = 0
    mismatches: int = 0
    runs_hit: int = 0
    activity_retries: int = 0
    workflow_task_faults: int = 0
    chaos_started: float | None = None
    chaos_ended: float | None = None
    script_started: float = field(default_factory=time.monotonic)


def check_run(
    stats: Stats,
    failures: list[str],
    run_id: str,
    outcome: Outcome,
    expected_transcript: list[tuple[Any, ...]] | None,
) -> None:
    """Check one run of order N (``run_id`` ends with ``-N``) against its expected answer
    and the fault-free transcript; count what faults hit it (shared with the soak)."""
    n = int(run_id.rsplit("-", 1)[1])
    stats.activity_retries += outcome.activity_retries
    stats.workflow_task_faults += outcome.workflow_task_faults
    if outcome.activity_retries or outcome.workflow_task_faults:
        stats.runs_hit += 1
    if outcome.status == "completed" and outcome.output == expected_answer(n):
        stats.completed += 1
    else:
        failures.append(
            f"run {run_id}: status={outcome.status} output={outcome.output!r} "
            f"error={outcome.error!r}"
        )
    if outcome.transcript != expected_transcript:
        stats.mismatches += 1
        failures.append(
            f"run {run_id}: transcript differs from the fault-free run's:\n"
            f"      got      {outcome.transcript}\n"
            f"      expected {expected_transcript}"
        )


@dataclass
class Chaos:
    args: argparse.Namespace
    tmp: Path
    model: ChaosModel
    model_server: ScriptedModelServer
    temporal: TemporalDevServer
    pools: list[WorkerPool] = field(default_factory=list)
    kills: int = 0
    server_restarts: int = 0
    stats: Stats = field(default_factory=lambda: Stats())
    failures: list[str] = field(default_factory=list)

    def pool(self, queue: str, shop_db: Path) -> WorkerPool:
        env = {
            **os.environ,
            "OPENAI_BASE_URL": self.model_server.base_url,
            "OPENAI_API_KEY": API_KEY,
            "SUPPORT_DB": str(shop_db),
            "CHAOS_TOOL_LOG": str(self.tmp / f"tools-{queue}.log"),
            # All workers of the chaos run share one transcript store (and payload store).
            "RATCHET_TRANSCRIPT_STORE": f"sqlite:///{self.tmp / 'transcripts.sqlite'}",
            "RATCHET_PAYLOAD_STORE": str(self.tmp / "payloads"),
            "PYTHONPATH": os.pathsep.join(
                p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p
            ),
        }
        pool = WorkerPool(self.temporal.address, queue, env, self.tmp)
        self.pools.append(pool)
        return pool

    def teardown(self) -> None:
        for pool in self.pools:
            pool.stop_all()
        self.temporal.stop()
        self.model_server.stop()

    def note_unexpected_exits(self, pool: WorkerPool) -> int:
        gone = pool.reap()
        for worker, code in gone:
            log(f"worker {worker.name} (pid {worker.pid}) exited by itself with code {code}")
        return len(gone)

    async def wait_ready(self, pool: WorkerPool, limit: float = 60) -> None:
        deadline = time.monotonic() + limit
        while not all(w.ready() for w in pool.live):
            self.note_unexpected_exits(pool)
            if time.monotonic() > deadline:
                raise RuntimeError(f"workers of {pool.queue} not ready within {limit:.0f}s")
            await asyncio.sleep(0.1)

    async def start_runs(
        self, agents: AgentClient, ids: list[tuple[str, int]], handles: dict[str, RunHandle]
    ) -> None:
        for run_id, order_id in ids:
            start = functools.partial(agents.start, AGENT, f"Refund order {order_id}", id=run_id)
            handles[run_id] = await retrying(f"start {run_id}", start)

    # -- phase 1 ------------------------------------------------------------- #

    async def baseline(self, client: Client) -> dict[int, Outcome]:
        args = self.args
        shop = self.tmp / "shop-baseline.sqlite"
        seed_orders(shop, args.runs)
        self.model.phase = "baseline"
        pool = self.pool(f"baseline-{args.seed}", shop)
        for _ in range(min(2, args.workers)):
            pool.spawn()
        await self.wait_ready(pool)
        agents = AgentClient(client, task_queue=pool.queue)
        handles: dict[str, RunHandle] = {}
        ids = {f"chaos-{args.seed}-baseline-{n}": n for n in range(1, args.runs + 1)}
        await self.start_runs(agents, list(ids.items()), handles)
        deadline = time.monotonic() + 120 + 2 * args.runs
        while pending := await open_runs(handles):
            if time.monotonic() > deadline:
                raise RuntimeError(f"baseline: {len(pending)} runs still open, e.g. {pending[0]}")
            await asyncio.sleep(0.5)
        outcomes = {n: await collect(agents, run_id) for run_id, n in ids.items()}
        pool.stop_all()
        if self.note_unexpected_exits(pool) or pool.exited:
            raise RuntimeError("baseline: a worker exited by itself; see its log")
        bad = [
            (n, o)
            for n, o in outcomes.items()
            if o.status != "completed" or o.output != expected_answer(n) or o.transcript is None
        ]
        if bad:
            n, o = bad[0]
            raise RuntimeError(f"baseline: {len(bad)} runs did not complete as expected: {n}: {o}")
        rows = refund_rows(shop)
        if sorted(rows) != list(range(1, args.runs + 1)) or any(len(k) != 1 for k in rows.values()):
            raise RuntimeError(f"baseline: refunds are not exactly one per order: {rows}")
        return outcomes

    # -- phase 2 ------------------------------------------------------------- #

    async def restart_server(self, pool: WorkerPool, rng: random.Random) -> None:
        # Only connected workers: `ratchet worker` exits at once if the server is
        # unreachable when it starts, by design; what is tested here is that
        # running workers ride out the outage and reconnect by themselves.
        await self.wait_ready(pool)
        down = rng.uniform(1, 3)
        log(f"kill -9 Temporal server (pid {self.temporal.pid}), down for {down:.1f}s")
        self.temporal.kill()
        await asyncio.sleep(down)
        await asyncio.to_thread(self.temporal.start, 60)
        self.server_restarts += 1
        log(f"Temporal server restarted (pid {self.temporal.pid})")

    async def kill_worker(self, pool: WorkerPool, rng: random.Random) -> None:
        # Kill a worker that is connected (a worker still importing holds no work).
        deadline = time.monotonic() + 60
        while not (candidates := [w for w in pool.live if w.alive() and w.ready()]):
            self.top_up(pool)
            if time.monotonic() > deadline:
                raise RuntimeError("no worker became ready within 60s")
            await asyncio.sleep(0.1)
        victim = rng.choice(candidates)
        pool.kill9(victim)
        self.kills += 1
        replacement = pool.spawn()
        log(
            f"kill -9 worker {victim.name} (pid {victim.pid}) [{self.kills}/{self.args.kills}], "
            f"started {replacement.name} (pid {replacement.pid})"
        )

    def top_up(self, pool: WorkerPool) -> None:
        self.note_unexpected_exits(pool)
        while len(pool.live) < self.args.workers:
            pool.spawn()

    async def chaos(self, client: Client) -> dict[int, Outcome]:
        args = self.args
        rng = random.Random(args.seed)
        shop = self.tmp / "shop-chaos.sqlite"
        seed_orders(shop, args.runs)
        self.model.phase = "chaos"
        pool = self.pool(f"chaos-{args.seed}", shop)
        self.top_up(pool)
        await self.wait_ready(pool)
        agents = AgentClient(client, task_queue=pool.queue)
        ids = [(f"chaos-{args.seed}-{n}", n) for n in range(1, args.runs + 1)]
        handles: dict[str, RunHandle] = {}

        events = ["worker"] * args.kills
        for _ in range(args.server_kills):
            # Never first: the server dies while runs are in flight.
            events.insert(rng.randint(1, len(events)), "server")
        started = self.stats.chaos_started = time.monotonic()
        deadline = started + args.time_limit
        log(
            f"chaos: {args.runs} runs started over {len(events)} fault events "
            f"({args.kills} worker kills, {args.server_kills} server kills)"
        )
        for i, event in enumerate(events):
            if time.monotonic() > deadline:
                log("time limit reached while injecting faults")
                break
            # Runs are started a few at a time between faults, so that every fault
            # lands while runs are at every stage: model call, tool call, in between.
            target = math.ceil(args.runs * (i + 1) / len(events))
            await self.start_runs(agents, ids[len(handles) : target], handles)
            await asyncio.sleep(rng.uniform(0.3, 2.0))
            if event == "server":
                await self.restart_server(pool, rng)
            else:
                await self.kill_worker(pool, rng)
            self.top_up(pool)
        await self.start_runs(agents, ids[len(handles) :], handles)

        log(f"faults done after {time.monotonic() - started:.1f}s; waiting for the runs")
        last_report = 0.0
        while pending := await open_runs(handles):
            self.top_up(pool)
            now = time.monotonic()
            if now > deadline:
                log(f"time limit reached with {len(pending)} runs open")
                break
            if now - last_report > 10:
                log(f"{len(pending)} runs still open, e.g. {', '.join(pending[:3])}")
                last_report = now
            await asyncio.sleep(0.5)
        self.stats.chaos_ended = time.monotonic()
        await self.wait_ready(pool)
        return {n: await collect(agents, run_id) for run_id, n in ids}

    # -- verification ---------------------------------------------------------- #

    def verify(self, baseline: dict[int, Outcome], outcomes: dict[int, Outcome]) -> None:
        """Check the chaos runs against the baseline; fill ``stats`` and ``failures``."""
        args, stats = self.args, self.stats
        for n, outcome in sorted(outcomes.items()):
            check_run(
                stats, self.failures, f"chaos-{args.seed}-{n}", outcome, baseline[n].transcript
            )

        rows = refund_rows(self.tmp / "shop-chaos.sqlite")
        lost = [n for n in range(1, args.runs + 1) if not rows.get(n)]
        duplicated = {n: keys for n, keys in rows.items() if len(keys) > 1}
        stats.lost, stats.duplicated = len(lost), len(duplicated)
        stats.verified = True
        for n in lost:
            self.failures.append(f"order {n} (run chaos-{args.seed}-{n}): no refund row (lost)")
        for n, keys in duplicated.items():
            self.failures.append(
                f"order {n} (run chaos-{args.seed}-{n}): {len(keys)} refund rows "
                f"(duplicated), idempotency keys {keys}"
            )
        for n in sorted(set(rows) - set(range(1, args.runs + 1))):
            self.failures.append(f"refund rows for order {n}, which no run was asked to refund")
        try:
            self.model_server.verify()
        except AssertionError as e:
            self.failures.append(str(e))
        if self.kills < args.kills:
            self.failures.append(f"only {self.kills} of {args.kills} worker kills happened")
        if self.server_restarts < args.server_kills:
            self.failures.append(
                f"only {self.server_restarts} of {args.server_kills} server restarts happened"
            )

    def report(self) -> bool:
        """Print the failures, then the one-line summary; True if all checks passed."""
        args, stats = self.args, self.stats
        chaos_pool = next((p for p in self.pools if p.queue.startswith("chaos-")), None)
        exited = chaos_pool.exited if chaos_pool is not None else []
        for worker, code in exited:
            self.failures.append(
                f"worker {worker.name} (pid {worker.pid}) exited by itself with code {code}; "
                f"log {worker.log_path}:\n{worker.log_tail()}"
            )
        tool_log = tool_log_lines(self.tmp / f"tools-chaos-{args.seed}.log")
        dedup_hits = sum(1 for parts in tool_log if parts[2:3] == ["dup"])
        for failure in self.failures:
            print(f"FAIL {failure}", flush=True)
        if self.failures or args.keep:
            print(f"[chaos] files kept in {self.tmp}", flush=True)
        now = time.monotonic()
        elapsed = (
            (stats.chaos_ended or now) - stats.chaos_started
            if stats.chaos_started is not None
            else 0.0
        )

        def checked(value: int) -> str:
            return str(value) if stats.verified else "?"

        print(
            f"chaos: runs={args.runs} completed={checked(stats.completed)} kills={self.kills} "
            f"server_restarts={self.server_restarts} lost={checked(stats.lost)} "
            f"duplicated={checked(stats.duplicated)} "
            f"transcript_mismatches={checked(stats.mismatches)} "
            f"unexpected_worker_exits={len(exited)} runs_hit={checked(stats.runs_hit)} "
            f"activity_retries={checked(stats.activity_retries)} "
            f"workflow_task_faults={checked(stats.workflow_task_faults)} "
            f"model_requests_repeated={self.model.retried('chaos')} "
            f"tool_executions={len(tool_log)} dedup_hits={dedup_hits} "
            f"elapsed={elapsed:.1f}s total={now - stats.script_started:.1f}s",
            flush=True,
        )
        return not self.failures


async def run(args: argparse.Namespace, chaos: Chaos) -> None:
    await asyncio.to_thread(chaos.temporal.start, 60)
    log(f"Temporal dev server on {chaos.temporal.address} (pid {chaos.temporal.pid})")
    client = await connect(chaos.temporal.address)
    log(f"baseline: {args.runs} fault-free runs")
    t0 = time.monotonic()
    baseline = await chaos.baseline(client)
    log(f"baseline done in {time.monotonic() - t0:.1f}s")
    outcomes = await chaos.chaos(client)
    chaos.verify(baseline, outcomes)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m scripts.chaos",
        description="Kill -9 workers and the Temporal server under running agents; "
        "verify completion, exactly-once side effects and identical transcripts.",
    )
    parser.add_argument("--runs", type=int, default=50, help="agent runs (default 50)")
    parser.add_argument("--kills", type=int, default=20, help="worker kill -9s (default 20)")
    parser.add_argument("--workers", type=int, default=3, help="live workers (default 3)")
    parser.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    parser.add_argument(
        "--server-kills", type=int, default=1, help="Temporal server kill -9s (default 1)"
    )
    parser.add_argument(
        "--time-limit",
        type=float,
        default=600,
        help="seconds the chaos phase may take before open runs count as failed (default 600)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args(argv)
    if args.runs < 1 or args.kills < 0 or args.workers < 1 or args.server_kills < 0:
        parser.error("--runs and --workers must be >= 1, --kills and --server-kills >= 0")
    if args.kills + args.server_kills < 1:
        parser.error("nothing to do: give at least one kill")
    return args


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    tmp = Path(tempfile.mkdtemp(prefix=f"ratchet-chaos-{args.seed}-{uuid.uuid4().hex[:4]}-"))
    model = ChaosModel(args.seed)
    model_server = ScriptedModelServer(handler=model, expected_api_key=API_KEY, model="chaos")
    temporal = TemporalDevServer(
        db_path=tmp / "temporal.sqlite",
        log_path=tmp / "temporal.log",
        port=free_port(),
        ui_port=None,
    )
    chaos = Chaos(args, tmp, model, model_server, temporal)
    try:
        model_server.start()
        asyncio.run(run(args, chaos))
    except KeyboardInterrupt:
        chaos.failures.append("interrupted")
    except Exception as e:
        chaos.failures.append(f"{type(e).__name__}: {e}")
    finally:
        # No second Ctrl-C or SIGTERM may stop the cleanup halfway.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        chaos.teardown()
    ok = chaos.report()
    if ok and not args.keep:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # The Temporal SDK's native runtime can crash at interpreter exit; skip it.
    os._exit(code)
