"""What a trace says about failed attempts: the real cause, never the server's
"Failure exceeds size limit." stand-in; failures stay small enough to be kept."""

from __future__ import annotations

import json
import uuid

from temporalio.client import Client

from ratchet import Agent, AgentClient, Limits, OpenAICompatible, RunFailed, create_worker
from ratchet.local._proc import free_port
from ratchet.testing import ScriptedModelServer, hang, reply
from ratchet.trace import ModelStep, build_trace

from .conftest import _test_store, hosted


async def test_connection_refused_attempts_show_their_cause(
    temporal_client: Client, model_server: ScriptedModelServer
) -> None:
    agent = Agent(
        "refused",
        instructions="x",
        model="closed:m",
        limits=Limits(model_max_attempts=3, model_retry_initial_seconds=0.1),
    )
    closed = OpenAICompatible(base_url=f"http://127.0.0.1:{free_port()}/v1", api_key="k")
    queue = f"refused-{uuid.uuid4().hex[:6]}"
    worker = create_worker(
        temporal_client,
        [agent],
        task_queue=queue,
        providers={"closed": closed},
        transcript_store=_test_store(),
    )
    async with worker:
        handle = await AgentClient(temporal_client, task_queue=queue).start(agent.name, "hi")
        try:
            await handle.result()
        except RunFailed as e:
            assert e.error_type == "ModelConnectionError"
        trace = await build_trace(temporal_client, handle.id)
    [step] = trace.steps
    assert isinstance(step, ModelStep)
    assert step.attempts == 3
    assert step.last_retry_error is not None
    assert step.last_retry_error.startswith("ModelConnectionError: cannot connect"), step
    assert trace.error is not None and "ModelConnectionError" in trace.error
    history = await temporal_client.get_workflow_handle(handle.id).fetch_history()
    assert "Failure exceeds size limit" not in json.dumps(history.to_json_dict())


async def test_timed_out_attempts_show_their_cause(
    temporal_client: Client, model_server: ScriptedModelServer
) -> None:
    model_server.add(hang(5), reply("late but fine"))
    agent = Agent(
        "slow",
        instructions="x",
        model="openai:m",
        limits=Limits(
            model_timeout_seconds=1,
            model_heartbeat_seconds=2,
            model_retry_initial_seconds=0.1,
        ),
    )
    async with hosted(temporal_client, [agent], model_server) as c:
        handle = await c.start(agent.name, "hi")
        assert (await handle.result()).output == "late but fine"
        trace = await build_trace(temporal_client, handle.id)
    [step] = trace.steps
    assert isinstance(step, ModelStep) and step.attempts == 2
    assert step.last_retry_error is not None
    assert step.last_retry_error.startswith("ModelTimeout"), step.last_retry_error
    assert "size limit" not in step.last_retry_error
