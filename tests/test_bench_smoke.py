"""The benchmark suite's smoke mode runs in the test suite, so bench/ cannot rot.

It measures nothing meaningful (tiny counts); it proves that every installed
implementation still runs the workload end to end and yields every figure.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(
    not Path("/proc/self/stat").exists(), reason="the benchmark reads /proc (Linux)"
)


def test_bench_smoke(tmp_path: Path) -> None:
    out = tmp_path / "smoke.json"
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", "--json", str(out), "--logs", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    data = json.loads(out.read_text())
    results = data["results"]
    # (a), (b) and (c) always run; (d) and (e) whenever their packages are installed.
    for key in ("a", "b", "c", *[k for k in "de" if k not in data["skipped"]]):
        r = results[key]
        assert not r["errors"], (key, r["errors"])
        assert r["overhead_latency_s"] and all(x > 0 for x in r["overhead_latency_s"]), key
        assert r["realistic_latency_s"], key
        assert r["bursts"] and all(b["runs_per_s"] > 0 for bs in r["bursts"].values() for b in bs)
        assert r["peak_rss_kib"], key
        assert r["parked"] and r["parked"]["n"] > 0, key
        if key != "a":
            assert r["history_events"] and r["history_bytes"], key
    # The report renders (the smoke run writes no RESULTS.md unless asked to).
    assert "durability tax" in proc.stdout
    assert "Targets" in proc.stdout
