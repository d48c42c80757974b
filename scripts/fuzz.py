"""The hostile-input properties with many examples (not part of ``make test``).

    python -m scripts.fuzz [--examples 2000]

Runs tests/test_hostile_input.py with ``RATCHET_FUZZ_EXAMPLES`` set (``make test``
runs the same properties with a few dozen examples each) and hypothesis's statistics
on, then prints per property: the examples it ran and what they were (the ``event``
labels: accepted or sent back, read or which typed error, ...). The README's
"Hostile input" figures come from this.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=2000, help="examples per property")
    parser.add_argument(
        "--output", default="fuzz-output.txt", help="where pytest's whole output goes"
    )
    args = parser.parse_args()
    env = {**os.environ, "RATCHET_FUZZ_EXAMPLES": str(args.examples)}
    command = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "--hypothesis-show-statistics",
        "tests/test_hostile_input.py",
    ]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    Path(args.output).write_text(done.stdout + done.stderr)
    print(_summary(done.stdout))
    print(done.stdout.strip().splitlines()[-1] if done.stdout.strip() else done.stderr)
    return done.returncode


def _summary(output: str) -> str:
    """One block per property: its name, examples run, and the share of each event."""
    lines: list[str] = []
    for block in re.split(r"\n(?=tests/test_hostile_input\.py::)", output):
        head = re.match(r"tests/test_hostile_input\.py::(\w+)", block)
        if head is None:
            continue
        counts = re.findall(r"(\d+) passing, (\d+) failing", block)
        if not counts:
            continue
        passing = sum(int(p) for p, _ in counts)
        failing = sum(int(f) for _, f in counts)
        lines.append(f"{head.group(1)}: {passing} examples, {failing} failing")
        lines.extend(f"    {share}  {label}" for share, label in _events(block))
    return "\n".join(lines)


def _events(block: str) -> list[tuple[str, str]]:
    """The events of the generate phase (the shares hypothesis prints)."""
    generate = block.split("during generate phase", 1)[-1]
    found = re.findall(r"\* ([\d.]+%), (.+)", generate)
    return [
        (share, label)
        for share, label in found
        if not label.startswith(("Retried draw", "Draw for"))
    ]


if __name__ == "__main__":
    sys.exit(main())
