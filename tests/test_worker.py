"""One worker assembly (run_worker), runs refused for agents nobody hosts, and worker
logs that keep tracebacks for the unexpected."""

from __future__ import annotations

import asyncio
import re
import uuid
from pathlib import Path

import pytest
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from ratchet import AgentClient, AgentWorkflow, ConfigError, RunFailed
from ratchet._hosting import announce_agents, announced_agents, hosted_agents
from ratchet.testing import ScriptedModelServer, error, reply
from ratchet.worker import WorkerSettings, run_worker, workflow_runner

from .conftest import hosted, scripted_provider
from .scenarios import AGENT
from .test_cli import address, assert_clean_error, ratchet
from .workers import WorkerProcess, wait_for


async def assert_no_run(client: Client, run_id: str) -> None:
    with pytest.raises(RPCError) as info:
        await client.get_workflow_handle(run_id).describe()
    assert info.value.status == RPCStatusCode.NOT_FOUND


async def test_run_of_an_agent_no_worker_hosts_fails_before_starting(
    temporal_client: Client, model_server: ScriptedModelServer
) -> None:
    async with hosted(temporal_client, [AGENT], model_server) as client:
        result = await ratchet(
            "run",
            "nosuchagent",
            "hi",
            "--id",
            "cli-unhosted-1",
            "--address",
            address(temporal_client),
            "--task-queue",
            client.task_queue,
        )
        assert_clean_error(
            result,
            "UnknownAgent",
            "agent 'nosuchagent'",
            f"task queue '{client.task_queue}'",
            "hosted agents: golden",
            "ratchet worker --app",
        )
        await assert_no_run(temporal_client, "cli-unhosted-1")
        query = f"TaskQueue = '{client.task_queue}'"
        assert [w.id async for w in temporal_client.list_workflows(query)] == []

        # The same from Python; a hosted agent passes the check.
        with pytest.raises(ConfigError, match="hosted agents: golden"):
            await client.start("nosuchagent", "hi", id="api-unhosted-1", check_hosted=True)
        await assert_no_run(temporal_client, "api-unhosted-1")
        model_server.add(reply("hello"))
        handle = await client.start("golden", "hi", check_hosted=True)
        assert (await handle.result()).output == "hello"


async def test_run_on_a_queue_no_worker_polls_fails_before_starting(
    temporal_client: Client,
) -> None:
    queue = f"nobody-{uuid.uuid4().hex[:8]}"
    result = await ratchet(
        "run",
        "golden",
        "hi",
        "--id",
        "cli-unpolled-1",
        "--address",
        address(temporal_client),
        "--task-queue",
        queue,
    )
    assert_clean_error(result, f"no worker polls task queue '{queue}'", "ratchet worker --app")
    await assert_no_run(temporal_client, "cli-unpolled-1")


async def test_the_check_attaches_to_an_existing_run(
    temporal_client: Client, model_server: ScriptedModelServer
) -> None:
    """Reusing a run's id attaches to it, even once its workers are gone."""
    model_server.add(reply("done"))
    async with hosted(temporal_client, [AGENT], model_server) as client:
        run_id = f"attach-{uuid.uuid4().hex[:8]}"
        await (await client.start("golden", "hi", id=run_id)).result()
    other_queue = AgentClient(temporal_client, task_queue=f"gone-{uuid.uuid4().hex[:8]}")
    handle = await other_queue.start("golden", "hi", id=run_id, check_hosted=True)
    assert (await handle.result()).output == "done"


def test_identity_announces_the_agents() -> None:
    identity = announce_agents("42@host", ["support", "billing"])
    assert identity == "42@host agents=billing,support"
    # Workers before issue 18 announced with a longer mark: still read.
    assert announced_agents("42@host ratchet agents=a,b") == {"a", "b"}
    assert announced_agents(identity) == {"billing", "support"}
    assert announced_agents(announce_agents("42@host", [])) == frozenset()
    assert announced_agents("42@host") is None  # says nothing: may host anything
    assert announced_agents(announce_agents("42@host", [f"agent{i:03}" for i in range(99)])) is None


async def test_run_worker_hosts_the_settings_until_stopped(
    temporal_env: WorkflowEnvironment, model_server: ScriptedModelServer, tmp_path: Path
) -> None:
    queue = f"assembled-{uuid.uuid4().hex[:8]}"
    settings = WorkerSettings(
        agents=(AGENT,),
        task_queue=queue,
        providers={"openai": scripted_provider(model_server)},
        address=address(temporal_env.client),
        transcript_store_url=f"sqlite:///{tmp_path / 'transcripts.sqlite'}",
    )
    stop = asyncio.Event()
    ready: list[list[str]] = []
    worker = asyncio.create_task(run_worker(settings, stop=stop, on_ready=ready.append))
    try:
        model_server.add(reply("assembled"))
        client = AgentClient(temporal_env.client, task_queue=queue)
        await asyncio.to_thread(wait_for, lambda: bool(ready), 30, "the worker to start")
        handle = await client.start("golden", "hi", check_hosted=True)
        assert (await handle.result()).output == "assembled"
    finally:
        stop.set()
        await asyncio.wait_for(worker, 30)
    assert ready[0][0] == f"hosting golden on task queue '{queue}'"


def test_worker_settings_from_flags_explain_bad_flags() -> None:
    with pytest.raises(ConfigError, match="nothing to host"):
        WorkerSettings.from_flags()
    with pytest.raises(ConfigError, match="bad --rate-limit 'openai'"):
        WorkerSettings.from_flags(model_queues=["openai"], rate_limits=["openai"])
    with pytest.raises(ConfigError, match="bad --provider 'vllm'"):
        WorkerSettings.from_flags(model_queues=["openai"], providers=["vllm"])
    with pytest.raises(ConfigError, match="bad --model-queue 'openai='"):
        WorkerSettings.from_flags(model_queues=["openai="])
    settings = WorkerSettings.from_flags(
        app="tests.crash_app:agents",
        model_queues=["openai", "vllm=gpu"],
        providers=["vllm=http://gpu:8000/v1"],
        rate_limits=["openai:rpm=60"],
    )
    assert settings.agents[0].name == "crashy"
    assert settings.model_queues == {"openai": "ratchet.model.openai", "vllm": "gpu"}
    assert settings.rate_limits["openai"].rpm == 60 and "vllm" in settings.providers


async def test_worker_log_has_no_tracebacks_for_expected_failures(
    temporal_env: WorkflowEnvironment,
    model_server: ScriptedModelServer,
    tmp_path: Path,
    workers: list[WorkerProcess],
) -> None:
    """Retried 429 and 500s and a run of an agent nobody hosts: one line each, no traceback."""
    queue = f"quiet-{uuid.uuid4().hex[:8]}"
    model_server.add(
        error(429, headers={"Retry-After": "0"}),
        error(500),
        reply("Order 1042 has shipped."),
    )
    worker = WorkerProcess(address(temporal_env.client), queue, model_server, tmp_path)
    workers.append(worker)
    client = AgentClient(temporal_env.client, task_queue=queue)
    handle = await client.start("crashy", "Where is order 1042?")
    assert (await handle.result()).output == "Order 1042 has shipped."
    # Without the check, the run starts and its first activity cannot find the agent.
    with pytest.raises(RunFailed) as info:
        await client.run("nosuchagent", "hi")
    assert info.value.error_type == "UnknownAgent"
    worker.stop()

    log = Path(worker.log.name).read_text()
    assert "Traceback" not in log, log
    lines = log.splitlines()
    for kind in ("ModelRateLimited", "ModelServerError", "UnknownAgent"):
        failures = [line for line in lines if re.search(rf"failed \(attempt \d\): {kind}: ", line)]
        assert len(failures) == 1, (kind, log)
    assert f"run {handle.id}" in next(line for line in lines if "ModelRateLimited" in line)


async def test_a_queue_with_a_worker_from_before_version_2_gets_version_1_runs(
    temporal_client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Such a worker ignores RunInput.version and would record a version-2 run the old
    way, which this release's workers could not replay: clients see its identity (the
    old mark) and start version-1 runs on its queue; RATCHET_RUN_VERSION=1 forces it."""
    from ratchet._hosting import QueueHosting
    from ratchet.client import RUN_VERSION_ENV, _run_version

    monkeypatch.delenv(RUN_VERSION_ENV, raising=False)
    assert _run_version(None) == 2
    assert _run_version(QueueHosting(frozenset({"a"}), False, 1)) == 2
    assert _run_version(QueueHosting(frozenset({"a"}), False, 2, legacy=True)) == 1
    monkeypatch.setenv(RUN_VERSION_ENV, "1")
    assert _run_version(QueueHosting(frozenset({"a"}), False, 1)) == 1

    # A real poller with the old identity on a real queue.
    monkeypatch.delenv(RUN_VERSION_ENV, raising=False)
    queue = f"legacy-{uuid.uuid4().hex[:6]}"
    old = Worker(
        temporal_client,
        task_queue=queue,
        workflows=[AgentWorkflow],
        identity="42@host ratchet agents=helper",
        workflow_runner=workflow_runner(),
    )
    async with old:
        hosting = await hosted_agents(temporal_client, queue)
        for _ in range(40):
            if hosting.pollers:
                break
            await asyncio.sleep(0.25)
            hosting = await hosted_agents(temporal_client, queue)
        assert hosting.legacy and hosting.agents == {"helper"}
        handle = await AgentClient(temporal_client, task_queue=queue).start("helper", "hi")
        assert (await handle.input()).version == 1
        await temporal_client.get_workflow_handle(handle.id).terminate("test done")
