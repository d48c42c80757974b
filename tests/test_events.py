"""ratchet.events: the one history reader, checked on every golden history.

Each scenario's event list is kept as a snapshot under tests/events/ (checked by
hand once when recorded). A change to the reader that changes what a user sees of
a recorded run fails here; regenerate on purpose with
``RATCHET_UPDATE_EVENT_SNAPSHOTS=1 pytest tests/test_events.py`` and say why.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import WorkflowHistory

from ratchet.events import RunEvent, RunEventAdapter, RunStarted, events_of

HISTORIES = Path(__file__).parent / "histories"
SNAPSHOTS = Path(__file__).parent / "events"


def runs() -> list[tuple[str, list[Path]]]:
    """Golden runs: (name, the history files of its executions in order)."""
    out: dict[str, list[Path]] = {}
    for path in sorted(HISTORIES.rglob("*.json")):
        prefix = f"{path.parent.name}/" if path.parent != HISTORIES else ""
        out.setdefault(prefix + path.stem.split(".")[0], []).append(path)
    return [
        (name, sorted(paths, key=lambda p: (len(p.name), p.name)))
        for name, paths in sorted(out.items())
    ]


def summary(event: RunEvent) -> dict[str, Any]:
    """The event as JSON, with the bulky parts (snapshot, prompts, schemas) shortened."""
    data = RunEventAdapter.dump_python(event, mode="json", exclude_none=True)
    data.pop("spec", None)
    if "messages" in data:
        data["messages"] = [
            f"{m['role']}: {(m.get('content') or '')[:50]}" for m in data["messages"]
        ]
    if "tools" in data:
        data["tools"] = [t["name"] for t in data["tools"]]
    return data


async def events_of_files(paths: list[Path]) -> list[RunEvent]:
    histories = [WorkflowHistory.from_json(p.stem, json.loads(p.read_text())) for p in paths]
    return await events_of(histories)


@pytest.mark.parametrize("name,paths", runs(), ids=[n for n, _ in runs()])
async def test_events_of_every_golden_history(name: str, paths: list[Path]) -> None:
    events = await events_of_files(paths)
    got = [summary(e) for e in events]
    snapshot = SNAPSHOTS / f"{name}.json"
    if os.environ.get("RATCHET_UPDATE_EVENT_SNAPSHOTS") or not snapshot.exists():
        snapshot.parent.mkdir(parents=True, exist_ok=True)
        snapshot.write_text(json.dumps(got, indent=1) + "\n")
        if not os.environ.get("RATCHET_UPDATE_EVENT_SNAPSHOTS"):
            pytest.fail(f"no snapshot for {name}: wrote {snapshot}; check it by hand, commit it")
    assert got == json.loads(snapshot.read_text())


@pytest.mark.parametrize("name,paths", runs(), ids=[n for n, _ in runs()])
async def test_event_invariants(name: str, paths: list[Path]) -> None:
    """seq counts from 1 without gaps; times have a zone; one start, at most one end."""
    events = await events_of_files(paths)
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert all(e.at.tzinfo is not None for e in events)
    assert [e.type for e in events].count("run_started") == 1
    assert events[0].type == "run_started"
    ends = [e for e in events if e.type == "run_finished"]
    assert len(ends) <= 1 and (not ends or ends[0] is events[-1])
    # The transcript: every index once, from 0 without gaps.
    indexes = [e.index for e in events if e.type == "message"]
    # A fork read without the transcript store starts after the messages it inherited.
    forked = isinstance(events[0], RunStarted) and events[0].forked_from is not None
    start = min(indexes, default=0) if forked else 0
    assert sorted(indexes) == list(range(start, start + len(indexes)))
    # Reading a prefix yields a prefix (what lets a follower resume by seq).
    half = await events_of_files(paths[:1])
    assert [summary(e) for e in half] == [summary(e) for e in events[: len(half)]] or (
        len(paths) > 1 and half[-1].type == "continued_as_new"
    )


def test_the_schema_is_a_stable_contract() -> None:
    schema = RunEventAdapter.json_schema()
    types = {
        v["properties"]["type"]["const"]
        for v in schema["$defs"].values()
        if "type" in v.get("properties", {})
    }
    assert types == {
        "run_started",
        "agent_snapshotted",
        "message",
        "model_call_started",
        "model_call_attempt_failed",
        "model_call_finished",
        "tool_call_rejected",
        "policy_decision",
        "approval_requested",
        "approval_answered",
        "tool_call_started",
        "tool_call_finished",
        "output_checked",
        "guardrail_checked",
        "handoff",
        "budget_decision",
        "prompt_compacted",
        "continued_as_new",
        "run_finished",
        "token",
        "tokens_superseded",
    }
