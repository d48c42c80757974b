"""Golden histories replay against the current workflow code; runs survive a cache of 0."""

from __future__ import annotations

import json
import pkgutil
from pathlib import Path

import pytest
from temporalio.client import Client, WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer, UnsandboxedWorkflowRunner
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner

import ratchet.workflows
from ratchet import AgentWorkflow
from ratchet.testing import ScriptedModelServer
from ratchet.worker import SANDBOX_ENV, workflow_runner

from .conftest import decoded_history_text, hosted
from .scenarios import AGENT, PRE_LINEAR_SCENARIOS, PRE_PATCH_SCENARIOS, SCENARIOS
from .unpatched_workflow import UnpatchedAgentWorkflow

ROOT = Path(__file__).parent / "histories"
CURRENT = sorted(ROOT.glob("*.json"))
# Recorded before the `ratchet.local-snapshot` patch; they must keep replaying.
PRE_PATCH = sorted((ROOT / "pre-patch").glob("*.json"))
# Recorded before the `ratchet.linear-history` patch (whole transcripts in every model
# call); they must keep replaying too.
PRE_LINEAR = sorted((ROOT / "pre-linear").glob("*.json"))
# Recorded before the `ratchet.budget-ask-memo` patch (a budget's request for a decision
# was not in the history); they must keep replaying too.
PRE_BUDGET_MEMO = sorted((ROOT / "pre-budget-memo").glob("*.json"))
# Every scenario as recorded at RunInput.version 1 (before issue 18): the patches asked
# with markers, search attributes upserted after every model call.
VERSION_1 = sorted((ROOT / "version-1").glob("*.json"))
SINCE_VERSION_2 = {"eval_replay"}
"""Scenarios of behaviour added after RunInput.version 2: no run took them at version 1
(an eval's case runs are started by the eval workflow, which version-1 workers lack)."""


def scenario_of(path: Path) -> str:
    """`NAME.json`, and `NAME.2.json`... for the later executions of a run."""
    return path.stem.split(".")[0]


def load(path: Path, text: str | None = None) -> WorkflowHistory:
    return WorkflowHistory.from_json(scenario_of(path), json.loads(text or path.read_text()))


async def replay(
    history: WorkflowHistory, workflow: type = AgentWorkflow, *, sandboxed: bool = False
) -> Exception | None:
    replayer = Replayer(
        workflows=[workflow],
        data_converter=pydantic_data_converter,
        workflow_runner=workflow_runner(sandboxed),
    )
    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    return result.replay_failure


def test_every_scenario_has_committed_histories() -> None:
    assert {scenario_of(p) for p in CURRENT} == {s.name for s in SCENARIOS}
    assert {p.stem for p in PRE_PATCH} == PRE_PATCH_SCENARIOS
    assert {p.stem for p in PRE_LINEAR} == PRE_LINEAR_SCENARIOS
    assert {p.stem for p in PRE_BUDGET_MEMO} == {"budget_raised"}
    # Forks and eval replays came after version 2: none was ever recorded at version 1.
    assert {scenario_of(p) for p in VERSION_1} == {
        s.name for s in SCENARIOS if not s.fork_at
    } - SINCE_VERSION_2


def test_workers_run_the_workflows_without_the_sandbox_unless_asked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Production workers skip the sandbox (its per-run re-import cost, issue 18); the
    guard is one setting away, and this suite replays and runs under it."""
    monkeypatch.delenv(SANDBOX_ENV, raising=False)
    assert isinstance(workflow_runner(), UnsandboxedWorkflowRunner)
    assert isinstance(workflow_runner(sandboxed=True), SandboxedWorkflowRunner)
    monkeypatch.setenv(SANDBOX_ENV, "1")
    assert isinstance(workflow_runner(), SandboxedWorkflowRunner)
    assert isinstance(workflow_runner(sandboxed=False), UnsandboxedWorkflowRunner)


def test_the_sandbox_guard_covers_the_whole_workflows_package() -> None:
    """Under the guard the sandbox re-imports every workflow module, so it checks them
    all against non-deterministic calls; the definition modules they import are passed
    through."""
    runner = workflow_runner(sandboxed=True)
    assert isinstance(runner, SandboxedWorkflowRunner)
    passthrough = runner.restrictions.passthrough_modules

    def passed_through(module: str) -> bool:
        # The sandbox passes a module through when it or a parent package is listed.
        parts = module.split(".")
        return any(".".join(parts[:n]) in passthrough for n in range(1, len(parts) + 1))

    package = ratchet.workflows
    modules = [package.__name__]
    modules += [m.name for m in pkgutil.iter_modules(package.__path__, f"{package.__name__}.")]
    assert {"ratchet.workflows._agent", "ratchet.workflows._limiter"} < set(modules)
    assert [m for m in modules if passed_through(m)] == []
    assert passed_through("ratchet._protocol") and passed_through("ratchet.messages")


def test_linear_histories_continue_as_new() -> None:
    """The continue-as-new scenario really crossed executions (replayed one by one)."""
    assert len([p for p in CURRENT if scenario_of(p) == "continued_as_new_with_approval"]) >= 3


@pytest.mark.parametrize("sandboxed", [False, True], ids=["unsandboxed", "sandboxed"])
@pytest.mark.parametrize(
    "path",
    CURRENT + VERSION_1 + PRE_PATCH + PRE_LINEAR + PRE_BUDGET_MEMO,
    ids=lambda p: f"{p.parent.name}/{p.stem}",
)
async def test_golden_history_replays(path: Path, sandboxed: bool) -> None:
    """As workers run it, and under the sandbox guard (a non-deterministic call in any
    path a history takes fails the replay)."""
    failure = await replay(load(path), sandboxed=sandboxed)
    assert failure is None, f"{path} no longer replays: {failure}"


async def test_replay_detects_a_changed_workflow() -> None:
    """The check above can fail: a history with a tampered activity name does not replay."""
    path = ROOT / "tool_then_answer.json"
    text = path.read_text().replace('"ratchet.call_model"', '"ratchet.call_model_v0"')
    assert await replay(load(path, text)) is not None


async def test_the_patch_is_what_keeps_old_runs_replaying() -> None:
    """Old histories replay with the patched code, and fail without the patch guard."""
    old = load(ROOT / "pre-patch" / "tool_then_answer.json")
    assert await replay(old) is None
    assert await replay(old, UnpatchedAgentWorkflow) is not None
    # Version-1 histories carry the patch marker and replay.
    patched = load(ROOT / "version-1" / "tool_then_answer.json")
    assert "ratchet.local-snapshot" in decoded_history_text(patched.to_json_dict())
    assert await replay(patched) is None
    # Version-2 runs take the patched path with no marker (workflows/_patches.py).
    new = load(ROOT / "tool_then_answer.json")
    assert "ratchet.local-snapshot" not in decoded_history_text(new.to_json_dict())
    assert await replay(new) is None


def test_version_2_histories_are_lean() -> None:
    """A version-2 run records no patch marker and upserts search attributes only when
    its state changes; the same scenario at version 1 did both (issue 18)."""

    def counts(path: Path) -> tuple[int, int, int]:
        events = json.loads(path.read_text())["events"]
        kinds = [e["eventType"] for e in events]
        markers = [
            e
            for e in events
            if e["eventType"] == "EVENT_TYPE_MARKER_RECORDED"
            and e["markerRecordedEventAttributes"]["markerName"] == "core_patch"
        ]
        upserts = kinds.count("EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES")
        return len(events), len(markers), upserts

    old_events, old_markers, old_upserts = counts(ROOT / "version-1" / "tool_then_answer.json")
    new_events, new_markers, new_upserts = counts(ROOT / "tool_then_answer.json")
    assert old_markers == 2 and old_upserts >= 4  # two patches, their two upserts, per turn
    assert new_markers == 0
    assert new_upserts == 1  # "completed", with the run's totals (the start set "running")
    assert new_events == old_events - old_markers - (old_upserts - 1)
    text = decoded_history_text(json.loads((ROOT / "tool_then_answer.json").read_text()))
    assert '\\"version\\":2' in text


@pytest.mark.parametrize("sandboxed", [False, True], ids=["unsandboxed", "sandboxed"])
async def test_run_with_no_workflow_cache(
    temporal_client: Client, model_server: ScriptedModelServer, sandboxed: bool
) -> None:
    """max_cached_workflows=0: every workflow task replays the run from its history; also
    under the sandbox guard, live."""
    scenario = next(s for s in SCENARIOS if s.name == "parallel_tools_and_retry")
    model_server.add(*scenario.steps)
    async with hosted(
        temporal_client,
        [AGENT],
        model_server,
        max_cached_workflows=0,
        workflow_runner=workflow_runner(sandboxed),
    ) as client:
        result = await client.run(AGENT.name, scenario.prompt)
    model_server.verify()
    assert result.output == "Both shipped."
    assert result.tool_calls == 2


def test_a_capped_run_releases_its_slot_in_its_last_execution() -> None:
    """The slot granted in the first execution is carried, then released at the very end."""
    name = "capped_continued_as_new"
    count = len([p for p in CURRENT if scenario_of(p) == name])
    assert count >= 2
    texts = [
        (ROOT / f"{name}{'' if n == 1 else f'.{n}'}.json").read_text() for n in range(1, count + 1)
    ]
    assert "ratchet.slot_granted" in texts[0]
    assert all("ratchet.slot_granted" not in t for t in texts[1:])  # asked once, never again
    assert "ratchet.slots.release" in texts[-1]
    assert all("ratchet.slots.release" not in t for t in texts[:-1])


def test_a_golden_history_sends_tools_by_reference() -> None:
    """Runs since tools_ref: the snapshot stores the schemas, model calls refer to them."""
    text = decoded_history_text(json.loads((ROOT / "budget_raised.json").read_text()))
    assert text.count("Look up an order.") == 1  # in the snapshot only
    assert '\\"tools\\":[],\\"tools_ref\\":\\"tools-' in text
