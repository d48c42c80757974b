"""The section ``python -m bench.breakdown`` writes into ``bench/RESULTS.md``."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from .cpu_categories import IDLE, NATIVE, ORDER
from .history_steps import Group, Timing, describe

if TYPE_CHECKING:
    from .breakdown import ImplBreakdown, Mode

__all__ = ["Report"]

FLOOR, RATCHET, CONTRIB = "b", "c", "d"
SHORT = {"b": "(b) bare SDK", "c": "(c) ratchet", "d": "(d) OpenAI Agents"}


def _median(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def _ms(value: float | None, digits: int = 1) -> str:
    return "—" if value is None else f"{value:,.{digits}f}"


def _signed(value: float | None, digits: int = 1) -> str:
    return "—" if value is None else f"{value:+,.{digits}f}"


def _ratio(value: float, base: float | None) -> str:
    return "—" if not base else f"{value / base:.2f}x"


def _minus(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


_COLUMNS: tuple[tuple[str, Callable[[Timing], float | None]], ...] = (
    ("activity sched→start", lambda t: t.activity_wait),
    ("activity run", lambda t: t.activity_run),
    ("WFT sched→start", lambda t: t.wft_wait),
    ("WFT run", lambda t: t.wft_run),
    ("completion → next command", lambda t: t.gap),
    ("step total", lambda t: t.total),
)


class Report:
    def __init__(
        self,
        results: dict[str, ImplBreakdown],
        mode: Mode,
        meta: dict[str, Any],
        skipped: dict[str, str],
        spy_note: str | None,
    ) -> None:
        self.results = results
        self.mode = mode
        self.meta = meta
        self.skipped = skipped
        self.spy_note = spy_note
        """Why the CPU is not split by kind of code (py-spy missing or failing), or None."""

    def keys(self) -> list[str]:
        return [k for k in (FLOOR, RATCHET, CONTRIB) if k in self.results]

    # -- history events ------------------------------------------------------------------

    def _labels(self, of: Callable[[ImplBreakdown], Sequence[str]]) -> list[str]:
        seen: list[str] = []
        for k in self.keys():
            seen += [label for label in of(self.results[k]) if label not in seen]
        return seen

    def _group(self, key: str, label: str) -> Group | None:
        return next((g for g in self.results[key].groups if g.label == label), None)

    def events(self) -> list[str]:
        keys = [k for k in self.keys() if self.results[k].groups]
        if not keys:
            return ["No history was read (see *Problems*)."]
        out = [
            "**History events per step** (the last timed run of each; events and protobuf "
            "bytes, `HistoryEvent.ByteSize()`)",
            "",
        ]
        diff_column = FLOOR in keys and RATCHET in keys
        names = [SHORT[k] for k in keys] + (["ratchet - (b)"] if diff_column else [])
        out += ["| step | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
        labels = self._labels(lambda r: [g.label for g in r.groups])
        for label in [*labels, None]:
            cells, sizes = [], {}
            for k in keys:
                groups = self.results[k].groups
                chosen = groups if label is None else [g for g in groups if g.label == label]
                if not chosen:
                    cells.append("—")
                    continue
                n, size = sum(len(g.events) for g in chosen), sum(g.size for g in chosen)
                sizes[k] = (n, size)
                cells.append(f"{n} ev, {size:,} B")
            if diff_column:
                cells.append("—")
                if FLOOR in sizes and RATCHET in sizes:
                    dn = sizes[RATCHET][0] - sizes[FLOOR][0]
                    db = sizes[RATCHET][1] - sizes[FLOOR][1]
                    cells[-1] = f"{dn:+d} ev, {db:+,} B"
            name = "**run**" if label is None else label
            out.append(f"| {name} | " + " | ".join(cells) + " |")
        out += ["", *self._payload_table(keys)]
        for k in keys:
            out += ["", *self._event_types(k)]
        return out

    def _payload_table(self, keys: list[str]) -> list[str]:
        totals = {
            k: (
                sum(len(g.events) for g in self.results[k].groups),
                sum(g.size for g in self.results[k].groups),
                sum(g.payload_size for g in self.results[k].groups),
            )
            for k in keys
        }
        out = [
            "**Payload bytes and the rest** (payload data: the `data` of every `Payload` in "
            "the events; the rest: ids, identities, task-queue names, timeouts, payload "
            "metadata, protobuf framing)",
            "",
            "| implementation | events | bytes | payload data | the rest |",
            "|---|---|---|---|---|",
        ]
        for k in keys:
            n, size, payload = totals[k]
            values = (n, size, payload, size - payload)
            cells = [f"{v:,}" for v in values]
            if k == RATCHET:
                bases = [totals.get(b) for b in (FLOOR, CONTRIB)]
                for i, v in enumerate(values):
                    ratios = [
                        f"{_ratio(v, self._column(base, i))} ({b})"
                        for b, base in zip((FLOOR, CONTRIB), bases, strict=True)
                        if base is not None
                    ]
                    if ratios:
                        cells[i] += " = " + ", ".join(ratios)
            out.append(f"| {self.results[k].impl.label} | " + " | ".join(cells) + " |")
        return out

    @staticmethod
    def _column(total: tuple[int, int, int], i: int) -> float:
        n, size, payload = total
        return float((n, size, payload, size - payload)[i])

    def _event_types(self, key: str) -> list[str]:
        result = self.results[key]
        out = [
            f"{result.impl.label}: the events of each step",
            "",
            "| step | events | event types | bytes | payload data |",
            "|---|---|---|---|---|",
        ]
        for g in result.groups:
            out.append(
                f"| {g.label} | {len(g.events)} | {describe(g)} | {g.size:,} | {g.payload_size:,} |"
            )
        return out

    # -- milliseconds --------------------------------------------------------------------

    def _cell(self, key: str, label: str, pick: Callable[[Timing], float | None]) -> float | None:
        return _median(
            [pick(t) for run in self.results[key].timings for t in run if t.label == label]
        )

    def _component(self, key: str, pick: Callable[[Timing], float | None]) -> float | None:
        """The median over runs of the run's sum of ``pick`` over its groups."""
        sums = [
            sum(v for t in run if (v := pick(t)) is not None) for run in self.results[key].timings
        ]
        return _median(sums)

    def milliseconds(self) -> list[str]:
        keys = [k for k in self.keys() if self.results[k].timings]
        if not keys:
            return ["No timed run completed (see *Problems*)."]
        m = self.mode
        out = [
            f"**Milliseconds per step** ({m.runs} sequential runs each at 0 ms model latency, "
            "the implementations taking turns; median of each cell over the runs, from the "
            "events' timestamps)",
        ]
        labels = self._labels(lambda r: [t.label for t in r.timings[0]] if r.timings else [])
        for k in keys:
            result = self.results[k]
            out += [
                "",
                f"{result.impl.label} ({len(result.timings)} runs)",
                "",
                "| step | " + " | ".join(name for name, _ in _COLUMNS) + " |",
                "|---|" + "---|" * len(_COLUMNS),
            ]
            for label in labels:
                cells = [_ms(self._cell(k, label, pick)) for _, pick in _COLUMNS]
                out.append(f"| {label} | " + " | ".join(cells) + " |")
            blank = " | " * (len(_COLUMNS) - 1)
            out.append(
                f"| **run on the server** (started → completed) |{blank}"
                f"**{_ms(_median(result.server_ms))}** |"
            )
            out.append(
                f"| **client wall time** (start → result) |{blank}"
                f"**{_ms(_median(result.wall_ms))}** |"
            )
        out += ["", *self._step_totals(keys), "", *self._components(keys)]
        return out

    @staticmethod
    def _diffs(keys: list[str]) -> list[str]:
        """The implementations ratchet is compared with in the difference columns."""
        return [b for b in (FLOOR, CONTRIB) if b in keys] if RATCHET in keys else []

    def _diff_header(self, keys: list[str]) -> tuple[str, str]:
        names = [SHORT[k] for k in keys] + [f"ratchet - ({b})" for b in self._diffs(keys)]
        return "| " + " | ".join(names) + " |", "|---|" + "---|" * len(names)

    def _diff_cells(self, keys: list[str], value: Callable[[str], float | None]) -> str:
        values = {k: value(k) for k in keys}
        cells = [_ms(values[k]) for k in keys]
        cells += [_signed(_minus(values[RATCHET], values[b])) for b in self._diffs(keys)]
        return " | ".join(cells) + " |"

    def _step_total(self, label: str) -> Callable[[str], float | None]:
        return lambda key: self._cell(key, label, _total)

    def _step_totals(self, keys: list[str]) -> list[str]:
        head, rule = self._diff_header(keys)
        out = [
            "**Step totals side by side** (median ms; differences of the medians)",
            "",
            "| step " + head,
            rule,
        ]
        labels = self._labels(lambda r: [t.label for t in r.timings[0]] if r.timings else [])
        for label in labels:
            out.append(f"| {label} | " + self._diff_cells(keys, self._step_total(label)))
        rows: tuple[tuple[str, Callable[[str], float | None]], ...] = (
            ("**run on the server**", lambda k: _median(self.results[k].server_ms)),
            ("**client wall time**", lambda k: _median(self.results[k].wall_ms)),
        )
        for name, value in rows:
            out.append(f"| {name} | " + self._diff_cells(keys, value))
        return out

    def _components(self, keys: list[str]) -> list[str]:
        head, rule = self._diff_header(keys)
        out = [
            "**The run's milliseconds by kind** (per run, summed over its steps; median over "
            "the runs)",
            "",
            "| kind " + head,
            rule,
        ]

        def rest(k: str) -> float | None:
            values = []
            for run, server in zip(self.results[k].timings, self.results[k].server_ms, strict=True):
                parts = [
                    v
                    for t in run
                    for v in (t.activity_wait, t.activity_run, t.wft_wait, t.wft_run)
                    if v is not None
                ]
                values.append(server - sum(parts))
            return _median(values)

        rows: tuple[tuple[str, Callable[[str], float | None]], ...] = (
            ("workflow tasks: scheduled → started", lambda k: self._component(k, _wft_wait)),
            ("workflow tasks: started → completed", lambda k: self._component(k, _wft_run)),
            ("activities: scheduled → started", lambda k: self._component(k, _activity_wait)),
            ("activities: started → completed", lambda k: self._component(k, _activity_run)),
            ("the server between them", rest),
            ("**run on the server**", lambda k: _median(self.results[k].server_ms)),
            (
                "client: start and result calls around it",
                lambda k: _median(self.results[k].client_extra_ms),
            ),
        )
        for name, value in rows:
            out.append(f"| {name} | " + self._diff_cells(keys, value))
        return out

    # -- worker CPU ----------------------------------------------------------------------

    def cpu(self) -> list[str]:
        keys = [k for k in self.keys() if self.results[k].cpu is not None]
        m = self.mode
        out = [
            f"**Worker CPU by kind of code** ({m.profile_runs} runs each, {m.concurrency} at "
            "a time, 0 ms model latency; ms of CPU per run, share of the worker's CPU; "
            "idle samples left out)",
            "",
        ]
        if self.spy_note:
            out += [f"{self.spy_note}: only the worker's total and its native threads' CPU.", ""]
        if not keys:
            return [*out, "No profiled run completed (see *Problems*)."]
        profiles = {k: p for k in keys if (p := self.results[k].cpu) is not None}
        per_run = {k: p.ms_per_run() for k, p in profiles.items()}
        head, rule = self._diff_header(keys)
        out += ["| kind of code " + head, rule]

        def cell(k: str, value: float | None) -> str:
            total = profiles[k].cpu_s / profiles[k].runs * 1000
            if value is None:
                return "—"
            return f"{value:,.1f} ms ({value / total * 100:.0f} %)" if total else _ms(value)

        for category in ORDER:
            if category == NATIVE:
                python = {k: p.python_s / p.runs * 1000 for k, p in profiles.items()}
                out.append(
                    "| *Python threads, all kinds* | "
                    + " | ".join(cell(k, python[k]) for k in keys)
                    + "".join(
                        f" | {_signed(python[RATCHET] - python[b])}" for b in self._diffs(keys)
                    )
                    + " |"
                )
            cells = [cell(k, per_run[k][category]) for k in keys]
            cells += [
                _signed(_minus(per_run[RATCHET][category], per_run[b][category]))
                for b in self._diffs(keys)
            ]
            out.append(f"| {category} | " + " | ".join(cells) + " |")
        out.append(
            "| **worker CPU per run** | "
            + self._diff_cells(keys, lambda k: profiles[k].cpu_s / profiles[k].runs * 1000)
        )
        samples = [f"{p.busy_samples:,} / {p.samples.get(IDLE, 0):,}" for p in profiles.values()]
        samples += [""] * len(self._diffs(keys))
        out.append("| py-spy samples: counted / idle (left out) | " + " | ".join(samples) + " |")
        return out

    # -- the whole section ---------------------------------------------------------------

    def body(self) -> str:
        meta = self.meta
        present = ", ".join(self.results[k].impl.label for k in self.keys())
        lines = [
            "## Where each millisecond and each history event goes, per step",
            "",
            "Written by `python -m bench.breakdown` (see `bench/breakdown.py`); "
            "`python -m bench` keeps this section.",
            "",
            f"- command: `{meta['command']}` (mode: {self.mode.name}), {meta['started']} UTC, "
            f"took {meta['seconds'] / 60:.1f} min",
            f"- machine: {meta['machine']['cpu']}, {meta['machine']['cores']} cores, "
            f"{meta['machine']['memory']}, {meta['machine']['os']}",
            "- load average (1 min) at the start, before the timed runs, before the profiled "
            f"runs, at the end: {meta['load']}",
            "- versions: " + ", ".join(f"{k} {v}" for k, v in meta["versions"].items()),
            f"- implementations: {present}"
            + "".join(f"; {k} skipped: {why}" for k, why in self.skipped.items()),
            "",
            HOW_TO_READ,
            "",
            *self.events(),
            "",
            *self.milliseconds(),
            "",
            *self.cpu(),
        ]
        problems = [(r.impl.label, e) for r in self.results.values() for e in r.errors]
        odd = [(r.impl.label, r.odd_runs) for r in self.results.values() if r.odd_runs]
        if problems or odd:
            lines += ["", "### Problems", ""]
            lines += [f"- {label}: {e}" for label, e in problems]
            lines += [
                f"- {label}: {n} run(s) without the workload's 3 model and 2 tool calls "
                "in their history, left out of the milliseconds"
                for label, n in odd
            ]
        return "\n".join(lines)


def _total(t: Timing) -> float | None:
    return t.total


def _wft_wait(t: Timing) -> float | None:
    return t.wft_wait


def _wft_run(t: Timing) -> float | None:
    return t.wft_run


def _activity_wait(t: Timing) -> float | None:
    return t.activity_wait


def _activity_run(t: Timing) -> float | None:
    return t.activity_run


HOW_TO_READ = f"""### How to read this

- **Steps.** The workload's run is 3 model calls and 2 tool calls. Its history is cut
  where each step's activity is scheduled: **start** is `WorkflowExecutionStarted`, the
  first workflow task (WFT) and what the run records before its first model call (e.g. a
  local activity's marker); each **model call** / **tool call** is its activity's events
  (sched/started/completed) and the workflow task its completion triggers, with any
  command that task records besides the next step (markers, upserts); **end** is what
  follows the last model call (the final workflow task, upserts, the completion). Every
  event is in exactly one step (`bench/history_steps.py`).
- **Bytes** are protobuf bytes of the events (`ByteSize()`; the `History` message adds 2-3
  bytes per event, which the main table's history size includes). **Payload data** is the
  `data` of every `Payload` in the events (inputs, results, marker details, headers,
  search-attribute values); the rest is ids, identities, task-queue names, timeouts,
  payload metadata and framing.
- **Milliseconds** come from the events' `event_time`, the server's clock (one machine
  here). Per step: *activity sched→start* (the task waiting for a worker's poll),
  *activity run* (started → completed: the task's delivery, the activity, its completion
  call), then the gap until the next command is scheduled, *completion → next command*,
  made of the workflow task it triggers (*WFT sched→start*: waiting for the worker's poll;
  *WFT run*: the worker's activation and its completion call) and the server's bookkeeping
  around it. The last model call's gap is the **end** row. Step totals add up to the run
  on the server; each cell is a median over the runs, so the medians need not add up.
  The **client wall time** adds the start call and the wait for the result.
- **Worker CPU**: py-spy samples the worker's Python threads (`--nonblocking`, Python
  frames only). A sample's kind is the first that matches a file on its stack:
  streaming & SQLite stores (`ratchet/streaming`, `ratchet/transcripts`, `sqlite3`),
  payload conversion (`temporalio/converter`, pydantic anywhere, ratchet's converter),
  the Temporal bridge (`temporalio/bridge`: the Python side of calls into the core),
  workflow code (`temporalio/worker/_workflow*`, the sandbox, `ratchet/workflows`),
  activities & provider HTTP (`temporalio/worker/_activity.py`, openai, httpx, httpcore,
  ratchet's activities and model adapters, the contrib's model activity); else the
  asyncio event loop (innermost frame in `asyncio` or `selectors`) or other Python.
  **Idle** samples (the selector's poll, `threading` waits, a thread pool's worker at its
  queue) are left out of the shares. The worker's CPU (`/proc/PID/stat`) is shared out in
  proportion to the samples, except **{NATIVE}**: the CPU of the
  threads Temporal's Rust core names itself (`tokio-rt-worker`...), read per thread from
  `/proc`, which py-spy cannot sample. py-spy runs beside the worker on the same cores."""
