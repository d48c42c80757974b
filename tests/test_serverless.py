"""Serverless workers: the Lambda handler invoked locally against the dev server, with a
simulated Lambda context whose deadline is short.

Each invocation runs the handler as the Lambda runtime does (a plain call, its own event
loop); the run's steps are split between two invocations, and nothing is lost or done twice.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from dataclasses import replace
from pathlib import Path

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowExecutionStatus
from temporalio.common import WorkerDeploymentVersion
from temporalio.testing import WorkflowEnvironment

from ratchet import Agent, AgentClient, ToolContext, tool
from ratchet._hosting import _problem, hosted_agents
from ratchet.errors import ConfigError
from ratchet.serverless import LocalContext, current_build_id, lambda_handler, make_current
from ratchet.testing import ScriptedModelServer, call, reply, tool_calls
from ratchet.worker import WorkerSettings, model_queue

from .conftest import scripted_provider

STEPS = 5


def _agent(log: Path) -> Agent:
    @tool(side_effects=True, timeout=30)
    def record_step(n: int, ctx: ToolContext) -> str:
        """Record step n of the job (a side effect, keyed for idempotency)."""
        time.sleep(1.0)  # long enough for a drain to find work in flight
        with log.open("a") as f:
            f.write(f"step {n} key {ctx.idempotency_key}\n")
        return f"step {n} recorded"

    return Agent(
        name="serverless-job",
        model="openai:scripted",
        instructions="Record the job's steps one by one.",
        tools=[record_step],
    )


def _settings(address: str, queue: str, server: ScriptedModelServer, tmp: Path) -> WorkerSettings:
    return WorkerSettings(
        agents=(_agent(tmp / "steps.log"),),
        task_queue=queue,
        providers={"openai": scripted_provider(server)},
        address=address,
        transcript_store_url=f"sqlite:///{tmp / 'transcripts.sqlite'}",
    )


async def test_a_run_spans_two_invocations_and_nothing_is_lost_or_repeated(
    temporal_env: WorkflowEnvironment, model_server: ScriptedModelServer, tmp_path: Path
) -> None:
    address = temporal_env.client.service_client.config.target_host
    queue = f"lambda-{uuid.uuid4().hex[:8]}"
    model_server.add(
        *(tool_calls(call("record_step", {"n": n}), delay=0.3) for n in range(1, STEPS + 1)),
        reply("All steps recorded."),
    )
    build = f"build-{uuid.uuid4().hex[:6]}"
    handler = lambda_handler(
        settings=_settings(address, queue, model_server, tmp_path),
        deployment_name=f"agents-{queue}",
        build_id=build,
    )
    client = AgentClient(temporal_env.client, task_queue=queue)
    run = await client.start("serverless-job", "Record the five steps.")

    # First invocation: 10 s to live, 7 s of them kept for the drain (Temporal's Lambda
    # defaults: 5 s graceful shutdown + 2 s for hooks), so about 3 s of polling.
    first = LocalContext(10)
    started = time.monotonic()
    await asyncio.to_thread(handler, {}, first)
    assert time.monotonic() < first.deadline, "the first invocation overran its deadline"
    assert time.monotonic() - started > 2.5, "the first invocation did not poll"
    done_in_first = _steps(tmp_path)
    assert done_in_first, "the first invocation processed none of the run's steps"
    assert len(done_in_first) < STEPS, "the run finished in one invocation: nothing to prove"
    # No worker polls between invocations, so ask the server, not the run.
    described = await temporal_env.client.get_workflow_handle(run.id).describe()
    assert described.status == WorkflowExecutionStatus.RUNNING
    # A first deployment has no current version: the handler made its own current, so
    # the run's tasks (started unversioned) reached it.
    assert await current_build_id(temporal_env.client, f"agents-{queue}") == build

    # Second invocation finishes the run.
    second = LocalContext(18)
    await asyncio.to_thread(handler, {}, second)
    assert time.monotonic() < second.deadline, "the second invocation overran its deadline"
    result = await asyncio.wait_for(run.result(), timeout=5)
    assert result.output == "All steps recorded."

    # Nothing lost: every scripted model step was asked exactly once (the fixture's
    # verify() fails on a leftover or an unexpected request), every tool step once.
    model_server.verify()
    assert len(model_server.requests) == STEPS + 1
    steps = _steps(tmp_path)
    assert [n for n, _ in steps] == list(range(1, STEPS + 1)), steps
    assert len({key for _, key in steps}) == STEPS
    history = await temporal_env.client.get_workflow_handle(run.id).fetch_history()
    completed = [
        e for e in history.events if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED
    ]
    scheduled = [
        e for e in history.events if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
    ]
    assert len(completed) == len(scheduled), "an activity was scheduled and never completed"


def _steps(tmp: Path) -> list[tuple[int, str]]:
    log = tmp / "steps.log"
    if not log.exists():
        return []
    rows = []
    for line in log.read_text().splitlines():
        step, key = line.removeprefix("step ").split(" key ")
        rows.append((int(step), key))
    return rows


async def test_a_handler_with_current_never_leaves_the_current_version_alone(
    temporal_env: WorkflowEnvironment, model_server: ScriptedModelServer, tmp_path: Path
) -> None:
    address = temporal_env.client.service_client.config.target_host
    queue = f"lambda-{uuid.uuid4().hex[:8]}"
    handler = lambda_handler(
        settings=_settings(address, queue, model_server, tmp_path),
        deployment_name=f"agents-{queue}",
        build_id="v1",
        current="never",
    )
    await asyncio.to_thread(handler, {}, LocalContext(9))
    assert await current_build_id(temporal_env.client, f"agents-{queue}") is None


def test_settings_a_function_cannot_run_are_refused_with_what_to_do(
    model_server: ScriptedModelServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RATCHET_TRANSCRIPT_STORE", raising=False)
    monkeypatch.delenv("RATCHET_BUILD_ID", raising=False)
    monkeypatch.delenv("AWS_LAMBDA_FUNCTION_VERSION", raising=False)
    agent = _agent(tmp_path / "steps.log")
    store = f"sqlite:///{tmp_path / 't.sqlite'}"
    with pytest.raises(ConfigError, match="transcript store every worker shares"):
        lambda_handler([agent], build_id="v1")
    with pytest.raises(ConfigError, match="cannot also serve model queues"):
        lambda_handler(
            settings=WorkerSettings(
                agents=(agent,),
                model_queues={"openai": model_queue("openai")},
                transcript_store_url=store,
            ),
            build_id="v1",
        )
    with pytest.raises(ConfigError, match="metrics port"):
        lambda_handler(
            settings=WorkerSettings(agents=(agent,), metrics_port=9464, transcript_store_url=store),
            build_id="v1",
        )
    monkeypatch.setenv("RATCHET_TRANSCRIPT_STORE", store)
    with pytest.raises(ConfigError, match="no build id"):
        lambda_handler([agent])
    # $LATEST is whatever code was uploaded last: not a build id.
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
    with pytest.raises(ConfigError, match="no build id"):
        lambda_handler([agent])
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_VERSION", "7")
    assert callable(lambda_handler([agent]))
    assert os.environ["AWS_LAMBDA_FUNCTION_VERSION"] == "7"


@pytest.mark.parametrize("kind", ["async", "sync"])
async def test_a_call_cut_off_by_the_drain_is_retried_by_the_next_invocation(
    temporal_env: WorkflowEnvironment,
    model_server: ScriptedModelServer,
    tmp_path: Path,
    kind: str,
) -> None:
    """A tool still running when the invocation must end is cancelled after the graceful
    shutdown timeout; the server retries it in the next invocation, with the same key.

    A sync tool's thread cannot be cancelled: the invocation must return on time anyway
    (its late result is discarded by the server; the retry carries the same key)."""
    log = tmp_path / "slow.log"

    def started(ctx: ToolContext) -> None:
        with log.open("a") as f:
            f.write(f"start attempt {ctx.attempt} key {ctx.idempotency_key}\n")

    def finished(ctx: ToolContext) -> str:
        with log.open("a") as f:
            f.write(f"done attempt {ctx.attempt}\n")
        return "exported"

    # Each outlives the first invocation's drain (5 s of graceful shutdown).
    @tool(name="slow_export", side_effects=True, timeout=60)
    async def slow_export_async(ctx: ToolContext) -> str:
        """Export the report (slow)."""
        started(ctx)
        await asyncio.sleep(9)
        return finished(ctx)

    @tool(name="slow_export", side_effects=True, timeout=60)
    def slow_export_sync(ctx: ToolContext) -> str:
        """Export the report (slow)."""
        started(ctx)
        time.sleep(9)
        return finished(ctx)

    slow_export = slow_export_async if kind == "async" else slow_export_sync
    agent = Agent(
        name="serverless-export",
        model="openai:scripted",
        instructions="Export reports.",
        tools=[slow_export],
    )
    address = temporal_env.client.service_client.config.target_host
    queue = f"lambda-{uuid.uuid4().hex[:8]}"
    model_server.add(tool_calls(call("slow_export", {})), reply("Exported."))
    handler = lambda_handler(
        settings=WorkerSettings(
            agents=(agent,),
            task_queue=queue,
            providers={"openai": scripted_provider(model_server)},
            address=address,
            transcript_store_url=f"sqlite:///{tmp_path / 'transcripts.sqlite'}",
        ),
        deployment_name=f"agents-{queue}",
        build_id="v1",
    )
    run = await AgentClient(temporal_env.client, task_queue=queue).start(
        "serverless-export", "Export the report."
    )
    first = LocalContext(10)
    await asyncio.to_thread(handler, {}, first)
    assert time.monotonic() < first.deadline, "the drain overran the deadline"
    lines = log.read_text().splitlines()
    assert len(lines) == 1 and lines[0].startswith("start attempt 1 key"), lines

    second = LocalContext(25)
    await asyncio.to_thread(handler, {}, second)
    assert time.monotonic() < second.deadline
    assert (await asyncio.wait_for(run.result(), timeout=5)).output == "Exported."
    lines = log.read_text().splitlines()
    starts = [line for line in lines if line.startswith("start")]
    assert [s.split(" key ")[0] for s in starts] == ["start attempt 1", "start attempt 2"]
    assert len({s.split(" key ")[1] for s in starts}) == 1, "the retry had another key"
    assert lines[-1] == "done attempt 2"


async def test_a_queue_served_on_demand_accepts_runs_while_no_worker_polls(
    temporal_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    """Between invocations nobody polls a serverless queue: starting a run there must not
    be refused as unserved once a deployment version is current on it."""
    client = temporal_env.client
    queue = f"lambda-{uuid.uuid4().hex[:8]}"
    agents = AgentClient(client, task_queue=queue)
    with pytest.raises(ConfigError, match="no worker polls task queue"):
        await agents.start("serverless-job", "Record the steps.", check_hosted=True)

    version = WorkerDeploymentVersion(deployment_name=f"agents-{queue}", build_id="v1")
    assert await make_current(client, version, "if-none")
    assert not await make_current(client, version, "if-none")  # already current
    # The deployment serves the queue once a worker of it has polled once.
    handler_settings = WorkerSettings(
        agents=(_agent(tmp_path / "steps.log"),),
        task_queue=queue,
        address=client.service_client.config.target_host,
        transcript_store_url=f"sqlite:///{tmp_path / 'transcripts.sqlite'}",
    )
    handler = lambda_handler(
        settings=handler_settings, deployment_name=f"agents-{queue}", build_id="v1"
    )
    await asyncio.to_thread(handler, {}, LocalContext(8.5))
    hosting = await hosted_agents(client, queue)
    assert hosting.current_version == f"agents-{queue}.v1"
    # The invocation's pollers stay listed for minutes; once they age out, the queue
    # still counts as served:
    idle = replace(hosting, pollers=0, agents=frozenset())
    assert _problem(idle, client.namespace, queue, "serverless-job") is None
    assert _problem(replace(idle, current_version=None), client.namespace, queue, "x")
    run = await agents.start("serverless-job", "Record the steps.", check_hosted=True)
    described = await client.get_workflow_handle(run.id).describe()
    assert described.status == WorkflowExecutionStatus.RUNNING
    await run.cancel()
