"""Regenerate the golden histories: `python -m tests.record_histories [NAME ...]`.

With names, only those scenarios are recorded (a new scenario, without touching the rest).

Only do this on purpose (a deliberate change of workflow behaviour); say so in
the commit. Running agents recorded with the old code must still replay, so
prefer `workflow.patched` for behaviour changes.
"""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from pathlib import Path

from temporalio.client import WorkflowHistory
from temporalio.testing import WorkflowEnvironment

from ratchet import AgentClient, RunFailed, RunHandle, create_worker
from ratchet import _search as search
from ratchet._converter import DATA_CONVERTER
from ratchet._history import executions
from ratchet._protocol import WORKFLOW_TYPE
from ratchet.testing import ScriptedModelServer

from .conftest import API_KEY, _test_store, scripted_provider, temporal_binary
from .scenarios import (
    AGENT,
    ASKING,
    CAPPED,
    GUARDED,
    LONG,
    MCP_AGENT,
    SCENARIOS,
    STRUCTURED,
    SUMMARIZING,
    TEAM,
    Scenario,
)

HISTORIES = Path(__file__).parent / "histories"


async def record(names: set[str]) -> None:
    # With ratchet's search attributes registered, so the histories carry their upserts.
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_binary(),
        data_converter=DATA_CONVERTER,
        search_attributes=search.ALL,
    )
    try:
        for scenario in SCENARIOS:
            if names and scenario.name not in names:
                continue
            with ScriptedModelServer(scenario.steps, expected_api_key=API_KEY) as server:
                queue = f"golden-{uuid.uuid4().hex[:6]}"
                worker = create_worker(
                    env.client,
                    [
                        AGENT,
                        GUARDED,
                        LONG,
                        SUMMARIZING,
                        CAPPED,
                        ASKING,
                        STRUCTURED,
                        TEAM,
                        MCP_AGENT,
                    ],
                    task_queue=queue,
                    providers={"openai": scripted_provider(server)},
                    transcript_store=_test_store(),
                )
                async with worker:
                    client = AgentClient(env.client, task_queue=queue)
                    if scenario.fixtures is not None:
                        handle = await _start_replaying(client, scenario)
                    else:
                        parent = f"{scenario.name}-parent" if scenario.fork_at else scenario.name
                        handle = await client.start(
                            scenario.agent.name, scenario.prompt, id=parent, chat=scenario.chat
                        )
                        if scenario.fork_at is not None:
                            await handle.result()
                            handle = await client.fork(
                                parent,
                                at=scenario.fork_at,
                                edit_message=scenario.fork_edit,
                                id=scenario.name,
                            )
                    if scenario.drive is not None:
                        await scenario.drive(handle)
                    try:
                        await handle.result()
                        assert not scenario.fails, scenario.name
                    except RunFailed:
                        assert scenario.fails, scenario.name
                server.verify()
            # A run that continued as new has one history per execution: NAME.json for
            # the first, NAME.2.json for the second, and so on.
            histories = await executions(env.client, scenario.name)
            for n, events in enumerate(histories, start=1):
                history = WorkflowHistory(scenario.name, events)
                suffix = "" if n == 1 else f".{n}"
                path = HISTORIES / f"{scenario.name}{suffix}.json"
                path.write_text(json.dumps(history.to_json_dict(), indent=1) + "\n")
                print(f"recorded {path}")
    finally:
        await env.shutdown()


async def _start_replaying(client: AgentClient, scenario: Scenario) -> RunHandle:
    """A run as an eval starts its cases: with recorded tool results to replay."""
    start = await client._run_start(
        scenario.agent.name, scenario.prompt, model=None, chat=False, tenant=None
    )
    await client.temporal.start_workflow(
        WORKFLOW_TYPE,
        start.input.model_copy(update={"fixtures": scenario.fixtures}),
        id=scenario.name,
        task_queue=client.task_queue,
        **start.options,
    )
    return client.get(scenario.name)


if __name__ == "__main__":
    asyncio.run(record(set(sys.argv[1:])))
