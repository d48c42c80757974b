"""A worker's CPU by kind of code, for ``python -m bench.breakdown``.

py-spy samples the Python threads of a worker (``--threads --full-filenames``). Each
sample is put in one category by the files on its call stack, the first rule that
matches winning (see :data:`RULES`); samples of a thread waiting for work are *idle* and
left out. Temporal's core runs in native threads that py-spy cannot see: their CPU is
read per thread from ``/proc`` (any thread whose name is not the process's: Rust names
its threads, ``tokio-rt-worker``...) and reported as its own category. The rest of the
process's CPU (``/proc/PID/stat``) is the Python threads', shared out over the
categories in proportion to their samples.
"""

from __future__ import annotations

import asyncio
import contextlib
import linecache
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from .profile import Stack

__all__ = [
    "IDLE",
    "NATIVE",
    "ORDER",
    "RULES",
    "CpuProfile",
    "ThreadClock",
    "classify",
]

_TICK = os.sysconf("SC_CLK_TCK")

IDLE = "idle"
NATIVE = "Temporal core (native threads)"
LOOP = "asyncio event loop"
OTHER = "other Python"

RULES: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "streaming & SQLite stores",
        ("/ratchet/streaming/", "/ratchet/transcripts", "/sqlite3/", "/psycopg/"),
    ),
    (
        "payload conversion",
        (
            "/temporalio/converter",
            "/temporalio/contrib/pydantic/",
            "/ratchet/_converter.py",
            "/pydantic/",
            "/pydantic_core/",
        ),
    ),
    ("Temporal bridge", ("/temporalio/bridge/",)),
    (
        "workflow code",
        (
            "/temporalio/worker/_workflow",
            "/temporalio/worker/workflow_sandbox/",
            "/ratchet/workflows/",
        ),
    ),
    (
        "activities & provider HTTP",
        (
            "/temporalio/worker/_activity.py",
            "/openai/",
            "/httpx",
            "/httpcore",
            "/h11/",
            "/anyio/",
            "/ratchet/activities/",
            "/ratchet/models/",
            "/temporalio/contrib/openai_agents/",
        ),
    ),
)
"""(category, path fragments): a sample is in the first category one of whose fragments
is in the file of any frame of its stack. The order settles the overlaps: a store call
made from an activity is the store's, a payload converted for a workflow task is the
conversion's, the bridge call completing a workflow activation is the bridge's, and
pydantic is conversion wherever it runs (ratchet's workflow models, openai's response
parsing). A stack none of these match is the event loop's if its innermost frame is in
``asyncio`` or ``selectors``, else *other Python*."""

ORDER = (*(name for name, _ in RULES), LOOP, OTHER, NATIVE)
"""The categories, in the order the report lists them."""

_WAITS = {
    "Condition.wait",
    "Event.wait",
    "Semaphore.acquire",
    "Thread.join",
    "Thread._wait_for_tstate_lock",
}
"""``threading`` functions that only wait, whichever of their lines is sampled."""


def _parse(frame: str) -> tuple[str, str, int]:
    """``function (file:line)`` -> (function, file, line)."""
    function, _, rest = frame.partition(" (")
    location = rest.removesuffix(")")
    path, _, line = location.rpartition(":")
    try:
        return function, path, int(line)
    except ValueError:
        return function, location, 0


def is_idle(frames: list[str]) -> bool:
    """The innermost frame waits: in the selector's poll (the event loop with nothing to
    run), on a ``threading`` lock or condition, or a thread pool's worker thread at its
    queue's ``get`` (nothing to do). py-spy leaves most waiting threads out by itself;
    these are the samples it keeps anyway."""
    if not frames:
        return True
    function, path, line = _parse(frames[-1])
    if path.endswith("/threading.py") and function in _WAITS:
        return True
    source = linecache.getline(path, line)
    if path.endswith("/selectors.py") and function.endswith("Selector.select"):
        return "poll(" in source or "select(" in source
    if path.endswith("/concurrent/futures/thread.py") and function == "_worker":
        return "work_queue.get(block=True)" in source
    return False


def classify(frames: list[str]) -> str:
    """The category of one sampled stack (outermost frame first)."""
    if is_idle(frames):
        return IDLE
    paths = [_parse(f)[1] for f in frames]
    for category, fragments in RULES:
        if any(fragment in path for path in paths for fragment in fragments):
            return category
    innermost = paths[-1]
    if "/asyncio/" in innermost or innermost.endswith("/selectors.py"):
        return LOOP
    return OTHER


# -- CPU per thread ----------------------------------------------------------------------


def _threads(pid: int) -> dict[int, tuple[str, float]]:
    """Thread id -> (name, CPU seconds so far) for every live thread of ``pid``."""
    out = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError, ValueError):
            comm = (task / "comm").read_text().strip()
            text = (task / "stat").read_text()
            fields = text[text.rindex(")") + 2 :].split()
            out[int(task.name)] = (comm, (int(fields[11]) + int(fields[12])) / _TICK)
    return out


class ThreadClock:
    """CPU of a process's native threads over a window, read from ``/proc`` per thread.

    A thread that ends in the window takes its time out of its own ``/proc`` entry; it
    is read every ``every`` seconds so that what it used until the last reading counts.
    """

    def __init__(self, pid: int, every: float = 0.25) -> None:
        self.pid = pid
        self.every = every
        self.name = Path(f"/proc/{pid}/comm").read_text().strip()
        self.first: dict[int, float] = {}
        self.last: dict[int, tuple[str, float]] = {}
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        now = _threads(self.pid)
        self.first = {tid: cpu for tid, (_, cpu) in now.items()}
        self.last = dict(now)
        self._task = asyncio.ensure_future(self._poll())

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.every)
            self._read()

    def _read(self) -> None:
        with contextlib.suppress(OSError):
            self.last.update(_threads(self.pid))

    async def stop(self) -> None:
        self._read()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def native_ids(self) -> set[int]:
        """Threads Python did not start: they carry a name of their own."""
        return {tid for tid, (comm, _) in self.last.items() if comm != self.name}

    def native_seconds(self) -> float:
        return sum(
            cpu - self.first.get(tid, 0.0)
            for tid, (_, cpu) in self.last.items()
            if tid in self.native_ids()
        )


@dataclass
class CpuProfile:
    """One worker's CPU over ``runs`` runs, by category."""

    runs: int
    cpu_s: float
    """The process's user + system CPU over the window (all threads)."""
    native_s: float
    """Of which its native threads'."""
    samples: dict[str, int] = field(default_factory=dict)
    """Category -> py-spy samples of the Python threads (idle included, under ``idle``)."""

    @classmethod
    def build(
        cls, runs: int, cpu_s: float, native_s: float, stacks: Iterable[Stack], native: set[int]
    ) -> CpuProfile:
        samples: dict[str, int] = {}
        for stack in stacks:
            if stack.thread_id is not None and stack.thread_id in native:
                continue  # its CPU is in native_s, read from /proc
            category = classify(stack.frames)
            samples[category] = samples.get(category, 0) + stack.count
        return cls(runs, cpu_s, native_s, samples)

    @property
    def busy_samples(self) -> int:
        return sum(n for c, n in self.samples.items() if c != IDLE)

    @property
    def python_s(self) -> float:
        return max(self.cpu_s - self.native_s, 0.0)

    def ms_per_run(self) -> dict[str, float | None]:
        """Category -> ms of CPU per run; None for the Python categories without samples
        (py-spy was not run)."""
        out: dict[str, float | None] = {}
        busy = self.busy_samples
        for category in ORDER:
            if category == NATIVE:
                out[category] = self.native_s / self.runs * 1000
            elif busy:
                share = self.samples.get(category, 0) / busy
                out[category] = self.python_s * share / self.runs * 1000
            else:
                out[category] = None
        return out

    def as_json(self) -> dict[str, object]:
        return {
            "runs": self.runs,
            "cpu_s": self.cpu_s,
            "native_s": self.native_s,
            "samples": self.samples,
            "ms_per_run": self.ms_per_run(),
        }
