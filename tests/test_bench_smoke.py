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


def _smoke(module: str, out: Path, results: Path, logs: Path) -> subprocess.CompletedProcess[str]:
    """``python -m MODULE --smoke``, writing its JSON and its block of ``results``."""
    paths = ["--json", str(out), "--results", str(results), "--logs", str(logs)]
    proc = subprocess.run(
        [sys.executable, "-m", module, "--smoke", *paths],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return proc


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
    # (a), (b) and (c) always run; (d), (e) and (f) whenever their packages are installed.
    for key in ("a", "b", "c", *[k for k in "def" if k not in data["skipped"]]):
        r = results[key]
        assert not r["errors"], (key, r["errors"])
        assert r["overhead_latency_s"] and all(x > 0 for x in r["overhead_latency_s"]), key
        assert r["realistic_latency_s"], key
        assert r["bursts"] and all(b["runs_per_s"] > 0 for bs in r["bursts"].values() for b in bs)
        assert r["peak_rss_kib"], key
        assert r["parked"] and r["parked"]["n"] > 0, key
        if key != "a":
            assert r["history_events"] and r["history_bytes"], key
    # Scaling out: ratchet and (b) on 1 and 2 worker processes sharing a task queue.
    for key in ("b", "c"):
        scaling = results[key]["scaling"]
        assert sorted(scaling) == ["1", "2"], (key, scaling)
        assert all(b["runs_per_s"] > 0 and b["cores_busy"] for bs in scaling.values() for b in bs)
    # The report renders (the smoke run writes no RESULTS.md unless asked to).
    assert "durability tax" in proc.stdout
    assert "Targets" in proc.stdout
    assert "**Scaling out**" in proc.stdout
    assert "| (c) ratchet | " in proc.stdout.split("**Scaling out**")[1]
    if "f" not in data["skipped"]:
        # ratchet with the PostgreSQL transcript store: a row in every table, its server's
        # CPU, and its figure beside ratchet's in the targets.
        assert proc.stdout.count("| (f) ratchet, PostgreSQL transcripts | ") == 3
        assert results["f"]["bursts"] and all(
            b["db_cpu_s"] is not None for bs in results["f"]["bursts"].values() for b in bs
        )
        assert "(f)'s PostgreSQL server" in proc.stdout
        assert "overhead per step ≤ 1.10x (b): ratchet " in proc.stdout
        assert "; (f) " in proc.stdout.split("Targets")[1]


def test_streaming_bench_smoke(tmp_path: Path) -> None:
    """``python -m bench.streaming --smoke`` yields every figure of issue 14's benchmark."""
    out = tmp_path / "streaming.json"
    proc = subprocess.run(
        [sys.executable, "-m", "bench.streaming", "--smoke", "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    data = json.loads(out.read_text())
    runs, pieces = data["mode"]["runs"], data["mode"]["ttft_pieces"]
    clients = data["contenders"]
    # The contrib is measured whenever it is installed (the bench extra); it may fail
    # to stream, which the report then says, but the others may not fail.
    for key in ("plain", "ratchet", "ratchet-process"):
        c = clients[key]
        assert not c["errors"], (key, c["errors"])
        assert len(c["ttft_ms"]) == runs and all(t > 0 for t in c["ttft_ms"]), key
        assert c["pieces"] == [pieces] * runs, key
        assert len(c["gaps_ms"]) == runs * (pieces - 1), key
        # Every piece is matched with the moment the scripted server wrote it.
        assert len(c["piece_latency_ms"]) == runs * pieces, key
    assert all(clients[k]["call_seen_ms"] for k in ("ratchet", "ratchet-process"))
    contrib = clients["contrib"]
    assert contrib["skipped"] or contrib["ttft_ms"] or contrib["errors"]
    history = data["history"]
    assert history["on"] and history["off"]
    assert all(r["bytes"] > 0 and r["events"] > 0 for r in history["on"] + history["off"])
    assert history["extra_pieces"] == 0, "a streamed delta entered the history"
    cpu = data["cpu"]
    settings = ("off", "discarded", "on", "plain")
    assert all(cpu["runs"][s] > 0 and cpu["cpu_s"][s] >= 0 for s in settings)
    # The report renders every table and states every target.
    for row in (
        "**Time to first token**",
        "**Inter-token delay**",
        "**History bytes per turn**",
        "**Worker CPU per 1,000 pieces**",
        "| plain openai streaming loop (baseline) |",
        "| ratchet RunHandle.events(), worker in this process |",
        "| ratchet RunHandle.events(), worker in its own process |",
        "| OpenAI Agents SDK on Temporal (Workflow Streams), worker in this process |",
        "| off | ",
        "| on | ",
        "| ratchet, streaming off |",
        "| ratchet, streaming on, deltas discarded (no store) |",
        "| ratchet, streaming on, embedded SQLite delta store |",
        "| plain openai streaming loop (its thread in this process, no Temporal) |",
        "time to first token (worker in this process",
        "history bytes per turn, streaming on vs off",
        "no delta in the streamed run's raw history",
    ):
        assert row in proc.stdout, row
    assert len(data["targets"]) >= 4


def test_parked_bench_smoke(tmp_path: Path) -> None:
    """``python -m bench.parked --smoke`` parks runs on a worker with a small cache, brings
    evicted ones back by approving them, and writes its block of RESULTS.md."""
    from bench import workload

    out, results = tmp_path / "parked.json", tmp_path / "RESULTS.md"
    results.write_text("# results\n\nthe tables of python -m bench\n")
    proc = _smoke("bench.parked", out, results, tmp_path)
    data = json.loads(out.read_text())
    mode = data["mode"]
    runs, cache = mode["runs"], int(mode["cache"])
    assert data["errors"] == []
    assert data["parked"] == data["started"] == runs > cache
    assert data["rss_idle_kib"] and data["rss_parked_kib"] and data["peak_kib"] and data["samples"]
    assert data["cpu_s"]["worker"] > 0 and data["cpu_s"]["dev server"] > 0
    evicted = [c for c in data["comebacks"] if c["evicted"]]
    cached = [c for c in data["comebacks"] if not c["evicted"]]
    assert len(evicted) == mode["sample"] > 0 and len(cached) == mode["cached_sample"] > 0
    # More runs were started after each of these than the worker's cache holds.
    assert all(runs - c["started_index"] - 1 >= cache for c in evicted)
    for c in data["comebacks"]:
        assert c["error"] is None and c["output"] == workload.FINAL_ANSWER, c
        assert c["back_s"] is not None and c["done_s"] is not None, c
    assert data["terminated"] == runs - len(data["comebacks"])
    for row in (
        "| runs waiting for approval | 30 of 30 |",
        "| **worker peak RSS (VmHWM)** |",
        "| evicted: back, pending() + approve() accepted | p50 ",
        "| evicted: completed with the workload's answer | 5 of 5 |",
        "10,000 parked runs on one worker with default cache settings: peak RSS ",
        "evicted runs come back on demand: 5 of 5 completed, p50 ",
    ):
        assert row in proc.stdout, row
    written = results.read_text()
    assert written.startswith("# results\n\nthe tables of python -m bench\n")
    assert "<!-- parked:begin -->\n## 30 parked runs on one worker" in written
    assert written.rstrip().endswith("<!-- parked:end -->")


def test_results_blocks_survive_a_rewrite() -> None:
    """``python -m bench`` rewrites RESULTS.md and keeps the block bench.streaming owns."""
    from bench import results_block

    first = results_block.replace("# results\n\nold tables\n", "streaming", "## Streaming\n1 ms")
    assert first.startswith("# results\n\nold tables\n")
    again = results_block.replace(first, "streaming", "## Streaming\n2 ms")
    assert "2 ms" in again and "1 ms" not in again
    assert again.count("<!-- streaming:begin -->") == 1
    rewritten = results_block.carry_over(again, "# results\n\nnew tables\n")
    assert rewritten.startswith("# results\n\nnew tables\n")
    assert "<!-- streaming:begin -->\n## Streaming\n2 ms\n<!-- streaming:end -->" in rewritten
    assert results_block.carry_over(rewritten, rewritten) == rewritten
    # bench.parked's block too, beside the streaming one.
    both = results_block.replace(rewritten, "parked", "## 10,000 parked runs\n300 MiB")
    again = results_block.carry_over(both, "# results\n\nnewer tables\n")
    assert again.startswith("# results\n\nnewer tables\n")
    assert "<!-- streaming:begin -->\n## Streaming\n2 ms\n<!-- streaming:end -->" in again
    assert "<!-- parked:begin -->\n## 10,000 parked runs\n300 MiB\n<!-- parked:end -->" in again
    # And bench.breakdown's; a name no script owns is refused.
    third = results_block.replace(again, "breakdown", "## Per step\n5 events")
    kept = results_block.carry_over(third, "# results\n\nnewest tables\n")
    assert "<!-- breakdown:begin -->\n## Per step\n5 events\n<!-- breakdown:end -->" in kept
    assert kept.count(":begin -->") == 3
    with pytest.raises(ValueError, match="not a block"):
        results_block.replace(kept, "breakdwon", "typo")


STEPS = [
    "start",
    "model call 1",
    "tool call 1 (lookup_order)",
    "model call 2",
    "tool call 2 (shipping_eta)",
    "model call 3",
    "end",
]


def test_breakdown_bench_smoke(tmp_path: Path) -> None:
    """``python -m bench.breakdown --smoke`` cuts each implementation's history into the
    workload's steps, times them, splits the worker CPU by kind of code, and writes its
    block of RESULTS.md."""
    out, results = tmp_path / "breakdown.json", tmp_path / "RESULTS.md"
    results.write_text("# results\n\nthe tables of python -m bench\n")
    proc = _smoke("bench.breakdown", out, results, tmp_path)
    data = json.loads(out.read_text())
    runs, profiled = data["mode"]["runs"], data["mode"]["profile_runs"]
    keys = ["b", "c", *(["d"] if "d" not in data["skipped"] else [])]
    assert sorted(data["results"]) == sorted(keys)
    for key in keys:
        r = data["results"][key]
        assert not r["errors"] and r["odd_runs"] == 0, (key, r["errors"])
        # Every event of the run is in exactly one step.
        assert [g["label"] for g in r["groups"]] == STEPS, key
        assert all(g["events"] > 0 and g["bytes"] > g["payload_bytes"] for g in r["groups"])
        assert sum(g["events"] for g in r["groups"]) >= 5 * 3 + 3, key
        # Each run's steps add up to its time on the server.
        assert len(r["wall_ms"]) == len(r["timings"]) == len(r["server_ms"]) == runs, key
        for steps, server in zip(r["timings"], r["server_ms"], strict=True):
            assert [t["label"] for t in steps] == STEPS
            assert abs(sum(t["total"] for t in steps) - server) < 0.01
        cpu = r["cpu"]
        assert cpu["runs"] == profiled and cpu["cpu_s"] > 0, key
        if data["spy_note"] is None:
            counted = sum(n for c, n in cpu["samples"].items() if c != "idle")
            assert counted > 0, key
            assert all(v is not None for v in cpu["ms_per_run"].values()), key
    for row in (
        "**History events per step**",
        "**Payload bytes and the rest**",
        "| model call 1 | 6 ev, ",
        "| **run** | ",
        "sched/started/completed + WFT\u00d73",
        "| (c) ratchet | ",
        "**Milliseconds per step**",
        "| step | activity sched→start | activity run | WFT sched→start | WFT run | ",
        "| tool call 2 (shipping_eta) | ",
        "| **run on the server** (started → completed) |",
        "| **client wall time** (start → result) |",
        "**Step totals side by side**",
        "**The run's milliseconds by kind**",
        "| workflow tasks: scheduled → started | ",
        "**Worker CPU by kind of code**",
        "| workflow code | ",
        "| Temporal core (native threads) | ",
        "| **worker CPU per run** | ",
        "### How to read this",
    ):
        assert row in proc.stdout, row
    if "d" in keys:
        # ratchet's totals as ratios to (b) and to (d).
        totals = [
            line
            for line in proc.stdout.splitlines()
            if line.startswith("| (c) ratchet | ") and " = " in line
        ]
        assert len(totals) == 1 and totals[0].count("x (b), ") == totals[0].count("x (d)") == 4
    if data["spy_note"] is not None:
        assert data["spy_note"] in proc.stdout
    written = results.read_text()
    assert written.startswith("# results\n\nthe tables of python -m bench\n")
    assert "<!-- breakdown:begin -->\n## Where each millisecond" in written
    assert written.rstrip().endswith("<!-- breakdown:end -->")


def test_cpu_categories() -> None:
    """A sampled stack's kind of code: the first rule matching a frame wins; a thread
    waiting for work is idle."""
    from bench.cpu_categories import IDLE, classify

    py = "/usr/lib/python3.11"
    site = "/venv/lib/python3.11/site-packages"
    loop = [f"BaseEventLoop._run_once ({py}/asyncio/base_events.py:1922)"]
    activity = [*loop, f"_ActivityWorker._run_activity ({site}/temporalio/worker/_activity.py:9)"]
    assert classify([*activity, f"AsyncOpenAI.post ({site}/openai/_base_client.py:1)"]) == (
        "activities & provider HTTP"
    )
    # A transcript write made by an activity is the store's.
    assert classify([*activity, "SqliteStore.write (/src/ratchet/transcripts.py:5)"]) == (
        "streaming & SQLite stores"
    )
    workflow = [
        *loop,
        f"_WorkflowWorker._handle_activation ({site}/temporalio/worker/_workflow.py:1)",
    ]
    assert classify(workflow) == "workflow code"
    assert classify([*workflow, f"Worker.complete ({site}/temporalio/bridge/worker.py:2)"]) == (
        "Temporal bridge"
    )
    assert classify([*loop, f"Handle._run ({py}/asyncio/events.py:80)"]) == "asyncio event loop"
    import concurrent.futures.thread as pool
    import linecache

    path = pool.__file__
    waiting = next(
        i + 1
        for i, line in enumerate(linecache.getlines(path))
        if "work_queue.get(block=True)" in line
    )
    assert classify([f"_worker ({path}:{waiting})"]) == IDLE
    assert classify([f"_worker ({path}:{waiting + 1})"]) != IDLE
