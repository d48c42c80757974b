"""Golden histories replay against the current workflow code; runs survive a cache of 0."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from temporalio.client import Client, WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from ratchet import AgentWorkflow
from ratchet.testing import ScriptedModelServer
from ratchet.worker import workflow_runner

from .conftest import hosted
from .scenarios import AGENT, SCENARIOS

HISTORIES = sorted((Path(__file__).parent / "histories").glob("*.json"))


def test_every_scenario_has_a_committed_history() -> None:
    assert {p.stem for p in HISTORIES} == {s.name for s in SCENARIOS}


@pytest.mark.parametrize("path", HISTORIES, ids=lambda p: p.stem)
async def test_golden_history_replays(path: Path) -> None:
    history = WorkflowHistory.from_json(path.stem, json.loads(path.read_text()))
    replayer = Replayer(
        workflows=[AgentWorkflow],
        data_converter=pydantic_data_converter,
        workflow_runner=workflow_runner(),
    )
    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is None, f"{path.name} no longer replays: {result.replay_failure}"


async def test_replay_detects_a_changed_workflow(temporal_client: Client) -> None:
    """The check above can fail: a history with a tampered activity name does not replay."""
    path = next(p for p in HISTORIES if p.stem == "tool_then_answer")
    text = path.read_text().replace('"ratchet.call_model"', '"ratchet.call_model_v0"')
    history = WorkflowHistory.from_json("tampered", json.loads(text))
    replayer = Replayer(
        workflows=[AgentWorkflow],
        data_converter=pydantic_data_converter,
        workflow_runner=workflow_runner(),
    )
    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is not None


async def test_run_with_no_workflow_cache(
    temporal_client: Client, model_server: ScriptedModelServer
) -> None:
    """max_cached_workflows=0: every workflow task replays the run from its history."""
    scenario = next(s for s in SCENARIOS if s.name == "parallel_tools_and_retry")
    model_server.add(*scenario.steps)
    async with hosted(temporal_client, [AGENT], model_server, max_cached_workflows=0) as client:
        result = await client.run(AGENT.name, scenario.prompt)
    model_server.verify()
    assert result.output == "Both shipped."
    assert result.tool_calls == 2
