"""The soak's smoke mode runs in the test suite, so ``scripts/soak.py`` cannot rot.

Two dozen runs over 12 s, with a worker killed every few seconds, the Temporal
server and PostgreSQL restarted once each and 10 % model faults: every check of
the full soak (``make soak``) must pass, and every kind of fault must have landed.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytest.importorskip("pgserver")
pytest.importorskip("psutil")


def test_soak_smoke() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "scripts.soak", "--smoke"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )
    output = proc.stdout[-6000:] + proc.stderr[-3000:]
    summary = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
    assert summary.startswith("soak: "), output
    fields = dict(re.findall(r"(\w+)=(\S+)", summary))
    assert proc.returncode == 0, output
    # The checks.
    assert fields["completed"] == fields["runs"] == "24", summary
    for check in ("lost", "duplicated", "transcript_mismatches", "unexpected_worker_exits"):
        assert fields[check] == "0", (check, summary)
    # The faults landed: kills, restarts, model faults, retries, store outage waits.
    assert int(fields["worker_kills"]) >= 1, summary
    assert fields["server_kills"] == "1" and fields["pg_restarts"] == "1", summary
    served = sum(int(fields[f"served_{kind}"]) for kind in ("429", "5xx", "hang"))
    assert served > 0, summary
    assert int(fields["activity_retries"]) > 0, summary
    assert int(fields["store_outage_waits"]) > 0, summary
    # The figures.
    assert float(fields["p95"].rstrip("s")) >= float(fields["p50"].rstrip("s")) > 0, summary
    assert float(fields["rss_start"].removesuffix("MiB")) > 0, summary
    assert "run latency (start to result): p50" in proc.stdout
