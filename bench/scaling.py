"""The scaling-out figures of ``python -m bench``: runs/s on 1, 2, 3... worker processes
polling one task queue, as a table and as sentences written from the numbers.

The machine the benchmark runs on has few cores (2 when it was written), shared by the
dev server, the model server, the workers and the driver: a second worker process
adds no CPU, only a second event loop. What the figures show is whether one worker
process was the limit; the sentences say so from the measured runs/s and how busy the
cores were, never from an assumption.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Scaling", "reading", "table"]

SCALES = 1.10
"""A ratio to 1 worker at or above this is scaling."""
LOSES = 0.90
"""At or below this, more workers cost throughput."""
SATURATED = 0.85
"""Cores this busy (as a share of all) with one worker leave a second little CPU."""


@dataclass(frozen=True)
class Scaling:
    """One implementation's figures: medians per worker-process count."""

    label: str
    runs_per_s: dict[int, float]
    cores_busy: dict[int, float]
    """How many cores were busy on average during the bursts (any process)."""
    short: frozenset[int] = frozenset()
    """Counts measured with fewer bursts than planned (the others failed)."""

    def ratio(self, count: int) -> float | None:
        """runs/s on ``count`` workers / runs/s on one."""
        one, many = self.runs_per_s.get(1), self.runs_per_s.get(count)
        return None if not one or many is None else many / one


def _cell(row: Scaling, count: int) -> str:
    value = row.runs_per_s.get(count)
    if value is None:
        return "—"
    ratio = row.ratio(count)
    text = f"{value:,.1f}" + ("" if ratio is None else f" ({ratio:.2f}x)")
    return text + (" †" if count in row.short else "")


def table(rows: list[Scaling], counts: tuple[int, ...], cores: int) -> str:
    """The Markdown table: runs/s per worker count (ratio to 1 worker) and busy cores."""
    header = " | ".join(f"runs/s, {c} worker{'s' if c > 1 else ''}" for c in counts)
    busy_header = " / ".join(str(c) for c in counts)
    out = [
        f"| implementation | {header} | cores busy ({busy_header} workers) |",
        "|---|" + "---|" * len(counts) + "---|",
    ]
    for row in rows:
        cells = " | ".join(_cell(row, c) for c in counts)
        busy = " / ".join(
            f"{row.cores_busy[c]:.2f}" if c in row.cores_busy else "—" for c in counts
        )
        out.append(f"| {row.label} | {cells} | {busy} of {cores} |")
    if any(row.short for row in rows):
        out.append("\n† from fewer bursts than planned: the others failed (see *Not measured*).")
    return "\n".join(out)


def _plural(count: int) -> str:
    return f"{count} worker{'s' if count != 1 else ''}"


def _sentence(row: Scaling, cores: int) -> str:
    counts = sorted(c for c in row.runs_per_s if c > 1)
    if 1 not in row.runs_per_s or not counts:
        return f"{row.label} was not measured on enough worker counts to compare"
    ratios = {c: r for c in counts if (r := row.ratio(c)) is not None}
    if not ratios:
        return f"{row.label} was not measured on enough worker counts to compare"
    most = max(ratios)
    best = max(ratios, key=lambda c: ratios[c])
    at_most = ratios[most]
    if ratios[best] >= SCALES:
        text = f"{row.label} scales: {ratios[best]:.2f}x its 1-worker runs/s with {_plural(best)}"
        if best != most:
            text += f" ({at_most:.2f}x with {most})"
    elif at_most <= LOSES:
        text = (
            f"{row.label} loses throughput with more processes: {at_most:.2f}x its "
            f"1-worker runs/s with {_plural(most)}"
        )
    else:
        text = (
            f"{row.label} does not scale: {at_most:.2f}x its 1-worker runs/s with {_plural(most)}"
        )
    one, many = row.cores_busy.get(1), row.cores_busy.get(most)
    if one is None or many is None:
        return text
    text += (
        f"; the cores were {one / cores * 100:.0f} % busy with one worker and "
        f"{many / cores * 100:.0f} % with {most}"
    )
    if ratios[best] >= SCALES:
        if many > one:
            return text + ", so the extra processes used CPU that one worker had left idle"
        return text + ", so one worker process was the limit, not the cores"
    if one / cores >= SATURATED:
        return text + ", so the extra processes only shared out the same CPU"
    return text + ", so the limit was neither CPU nor the number of worker processes"


def reading(rows: list[Scaling], cores: int) -> str:
    """What the scaling figures say, for "How to read this"."""
    measured = [row for row in rows if row.runs_per_s]
    head = (
        f"The machine has {cores} cores, shared by the dev server, the model server, "
        "the worker processes and the driver, so extra worker processes cannot add CPU: "
        "they can only use CPU that one worker leaves idle."
    )
    if not measured:
        return head + " Scaling out was not measured in this invocation."
    return head + " In this invocation: " + "; ".join(_sentence(r, cores) for r in measured) + "."
