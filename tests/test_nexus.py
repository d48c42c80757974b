"""Agents as Nexus operations: a caller workflow in one namespace runs an agent hosted
in another, through a Nexus endpoint made with the real ``temporal`` CLI."""

from __future__ import annotations

import asyncio
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowFailureError
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.exceptions import ApplicationError, NexusOperationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker
from typer.testing import CliRunner

from ratchet import Agent, AgentClient, Policy, require_approval, tool
from ratchet._converter import DATA_CONVERTER
from ratchet._search import ALL
from ratchet.cli import app
from ratchet.errors import ConfigError
from ratchet.local._proc import free_port
from ratchet.nexus import AgentsServiceHandler, AnswerApprovalInput
from ratchet.testing import (
    ScriptedModelServer,
    call,
    error,
    in_process_worker,
    reply,
    scripted_provider,
    tool_calls,
)
from ratchet.trace import build_trace, render_trace
from ratchet.worker import WorkerSettings, run_worker

from .conftest import API_KEY, temporal_binary
from .nexus_caller import ENDPOINT, AnswerApproval, Ask, AskAgent

AGENTS_NS = "agents"
CALLERS_NS = "callers"
AGENTS_QUEUE = "nexus-agents"


@tool(side_effects=True)
def refund(order_id: int, amount: int) -> str:
    """Refund an amount (in dollars) on an order."""
    return f"refunded ${amount} on order {order_id}"


SUPPORT = Agent(
    "support",
    instructions="You are a support agent.",
    model="openai:m",
    tools=[refund],
    policy=Policy(rules=[require_approval("refund", reason="every refund")]),
)


@dataclass
class Servers:
    env: WorkflowEnvironment
    agents: AgentClient
    """A ratchet client of the agents' namespace and queue."""
    callers: Client
    """The caller team's client: its own namespace, temporalio's pydantic converter."""


@pytest_asyncio.fixture(scope="module")
async def servers() -> AsyncIterator[Servers]:
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_binary(),
        data_converter=DATA_CONVERTER,
        port=free_port(),
        ui=False,
        dev_server_log_level="error",
        search_attributes=ALL,
        dev_server_extra_args=["--namespace", AGENTS_NS, "--namespace", CALLERS_NS],
    )
    try:
        address = env.client.service_client.config.target_host
        subprocess.run(
            [
                temporal_binary(),
                "operator",
                "nexus",
                "endpoint",
                "create",
                "--name",
                ENDPOINT,
                "--target-namespace",
                AGENTS_NS,
                "--target-task-queue",
                AGENTS_QUEUE,
                "--address",
                address,
            ],
            check=True,
            capture_output=True,
        )
        agents = await Client.connect(address, namespace=AGENTS_NS, data_converter=DATA_CONVERTER)
        callers = await Client.connect(
            address, namespace=CALLERS_NS, data_converter=pydantic_data_converter
        )
        yield Servers(env, AgentClient(agents, task_queue=AGENTS_QUEUE), callers)
    finally:
        await env.shutdown()


@pytest.fixture
def model() -> Iterator[ScriptedModelServer]:
    server = ScriptedModelServer(expected_api_key=API_KEY).start()
    yield server
    server.stop()
    server.verify()


async def _hosting(stack: AsyncExitStack, s: Servers, model: ScriptedModelServer) -> None:
    """The agents' worker (with the Nexus handler) and the callers' worker, until the
    stack closes."""
    await stack.enter_async_context(
        in_process_worker(
            s.agents.temporal,
            [SUPPORT],
            model,
            task_queue=AGENTS_QUEUE,
            nexus_service_handlers=[AgentsServiceHandler([SUPPORT], task_queue=AGENTS_QUEUE)],
        )
    )
    await stack.enter_async_context(
        Worker(s.callers, task_queue="callers", workflows=[AskAgent, AnswerApproval])
    )


async def _ask(s: Servers, ask: Ask) -> Any:
    return await s.callers.start_workflow(
        AskAgent.run, ask, id=f"caller-{uuid.uuid4().hex[:8]}", task_queue="callers"
    )


async def _waiting_call(s: Servers, run_id: str) -> str:
    """The id of the tool call run ``run_id`` waits on, once it waits."""
    for _ in range(200):
        if await s.agents.exists(run_id):
            pending = await s.agents.get(run_id).pending()
            if pending:
                return pending[0].call_id
        await asyncio.sleep(0.1)
    raise AssertionError(f"run {run_id} never waited for an approval")


async def test_a_caller_in_another_namespace_gets_the_agents_answer(
    servers: Servers, model: ScriptedModelServer
) -> None:
    model.add(reply("Order 1042 shipped yesterday."))
    run_id = f"support-{uuid.uuid4().hex[:8]}"
    async with AsyncExitStack() as stack:
        await _hosting(stack, servers, model)
        caller = await _ask(servers, Ask("support", "Where is order 1042?", run_id))
        assert await caller.result() == "Order 1042 shipped yesterday."
        # Its id again, once it ended: refused (no second run), saying where it is.
        again = await _ask(servers, Ask("support", "Where is order 1042?", run_id))
        with pytest.raises(WorkflowFailureError) as ended:
            await again.result()
        assert f"run {run_id!r} has already ended" in _messages(ended.value)

    # The run lives in the agents' namespace, as any run does.
    run = servers.agents.get(run_id)
    assert (await run.info()).status == "completed"
    assert (await run.result()).output == "Order 1042 shipped yesterday."
    # Its start event links to the caller's Nexus operation, in the callers' namespace.
    started = await _start_event(servers.agents.temporal, run_id)
    attrs = started.workflow_execution_started_event_attributes
    links = [link.workflow_event for cb in attrs.completion_callbacks for link in cb.links]
    assert [(w.namespace, w.workflow_id) for w in links] == [(CALLERS_NS, caller.id)]
    trace = await build_trace(servers.agents.temporal, run_id)
    assert trace.started_by is not None
    assert (trace.started_by.namespace, trace.started_by.workflow_id) == (CALLERS_NS, caller.id)
    shown = "\n".join(render_trace(trace))
    assert f"started by Nexus operation of workflow {caller.id} in namespace {CALLERS_NS}" in shown
    # ...and the caller's history names the run it started.
    scheduled = [
        e
        async for e in caller.fetch_history_events()
        if e.event_type == EventType.EVENT_TYPE_NEXUS_OPERATION_STARTED
    ]
    assert [e.links[0].workflow_event.workflow_id for e in scheduled] == [run_id]


async def _start_event(client: Client, run_id: str) -> Any:
    async for event in client.get_workflow_handle(run_id).fetch_history_events():
        return event
    raise AssertionError("no history")


async def test_cancelling_the_caller_cancels_the_agents_run(
    servers: Servers, model: ScriptedModelServer
) -> None:
    model.add(tool_calls(call("refund", {"order_id": 7, "amount": 500})))
    run_id = f"support-{uuid.uuid4().hex[:8]}"
    async with AsyncExitStack() as stack:
        await _hosting(stack, servers, model)
        caller = await _ask(servers, Ask("support", "Refund order 7", run_id))
        await _waiting_call(servers, run_id)
        await caller.cancel()
        with pytest.raises(WorkflowFailureError):
            await caller.result()
        run = servers.agents.get(run_id)
        for _ in range(100):
            if (await run.info()).status != "waiting-approval":
                break
            await asyncio.sleep(0.1)
        assert await run.temporal_status() == "canceled"
        assert (await run.info()).status == "cancelled"


async def test_an_approval_answered_over_nexus_lets_the_run_finish(
    servers: Servers, model: ScriptedModelServer
) -> None:
    model.add(
        tool_calls(call("refund", {"order_id": 7, "amount": 500})),
        reply("Refunded $500 on order 7."),
    )
    run_id = f"support-{uuid.uuid4().hex[:8]}"
    async with AsyncExitStack() as stack:
        await _hosting(stack, servers, model)
        caller = await _ask(servers, Ask("support", "Refund order 7", run_id))
        call_id = await _waiting_call(servers, run_id)
        # A second caller asking for the same run attaches to it; another prompt under
        # its id is refused.
        second = await _ask(servers, Ask("support", "Refund order 7", run_id))
        other = await _ask(servers, Ask("support", "Refund order 8", run_id))
        with pytest.raises(WorkflowFailureError) as refused:
            await other.result()
        assert f"run {run_id!r} already exists" in _messages(refused.value)
        answer = AnswerApprovalInput(
            run_id=run_id, call_id=call_id, approve=True, approver="ana", reason="known buyer"
        )
        said = await servers.callers.execute_workflow(
            AnswerApproval.run, answer, id=f"approve-{uuid.uuid4().hex[:8]}", task_queue="callers"
        )
        assert said == "refund approved=True by ana"
        assert await caller.result() == "Refunded $500 on order 7."
        assert await second.result() == "Refunded $500 on order 7."
        # The same answer again: the run has ended, and the caller is told so.
        with pytest.raises(WorkflowFailureError) as failed:
            await servers.callers.execute_workflow(
                AnswerApproval.run,
                answer,
                id=f"approve-{uuid.uuid4().hex[:8]}",
                task_queue="callers",
            )
    assert isinstance(failed.value.cause, NexusOperationError)
    assert f"run {run_id!r} has already ended" in _messages(failed.value.cause)


async def test_a_failed_run_fails_the_callers_operation_with_its_error(
    servers: Servers, model: ScriptedModelServer
) -> None:
    model.add(error(401, message="Incorrect API key provided"))
    async with AsyncExitStack() as stack:
        await _hosting(stack, servers, model)
        caller = await _ask(servers, Ask("support", "Where is order 1042?"))
        with pytest.raises(WorkflowFailureError) as failed:
            await caller.result()
    cause = failed.value.cause
    assert isinstance(cause, NexusOperationError)
    errors = []
    current: BaseException | None = cause
    while current is not None:
        errors.append(current)
        current = current.__cause__
    typed = [e for e in errors if isinstance(e, ApplicationError) and e.type == "ModelAuthError"]
    assert typed and "Incorrect API key provided" in typed[0].message


async def test_an_unknown_agent_is_refused_with_the_hosted_agents_named(
    servers: Servers, model: ScriptedModelServer
) -> None:
    async with AsyncExitStack() as stack:
        await _hosting(stack, servers, model)
        caller = await _ask(servers, Ask("billing", "Where is my invoice?"))
        with pytest.raises(WorkflowFailureError) as failed:
            await caller.result()
    cause = failed.value.cause
    assert isinstance(cause, NexusOperationError)
    text = _messages(cause)
    assert "no agent named 'billing'" in text
    assert "hosted: support" in text


def _messages(error: BaseException) -> str:
    """The messages of an error and its causes, as the caller can read them."""
    out = []
    current: BaseException | None = error
    while current is not None:
        out.append(str(current))
        current = current.__cause__
    return " / ".join(out)


async def test_ratchet_worker_nexus_serves_the_service(
    servers: Servers, model: ScriptedModelServer, tmp_path: Path
) -> None:
    """``ratchet worker --nexus`` (its settings, through run_worker): the worker says it
    serves the service, and a caller's run goes through it."""
    model.add(reply("Served by the assembled worker."))
    settings = WorkerSettings(
        agents=(SUPPORT,),
        task_queue=AGENTS_QUEUE,
        providers={"openai": scripted_provider(model)},
        address=servers.agents.temporal.service_client.config.target_host,
        namespace=AGENTS_NS,
        transcript_store_url=f"sqlite:///{tmp_path / 'transcripts.sqlite'}",
        nexus=True,
    )
    stop = asyncio.Event()
    ready: list[list[str]] = []
    worker = asyncio.create_task(run_worker(settings, stop=stop, on_ready=ready.append))
    try:
        async with Worker(servers.callers, task_queue="callers", workflows=[AskAgent]):
            caller = await _ask(servers, Ask("support", "Who serves me?"))
            assert await caller.result() == "Served by the assembled worker."
    finally:
        stop.set()
        await asyncio.wait_for(worker, 30)
    assert ready[0][1] == (
        f"serving them as Nexus service 'ratchet.nexus' (endpoints targeting namespace "
        f"'{AGENTS_NS}', task queue '{AGENTS_QUEUE}')"
    )


def test_worker_nexus_flag() -> None:
    settings = WorkerSettings.from_flags(app="examples.support:agent", nexus=True)
    assert settings.nexus
    assert not WorkerSettings.from_flags(app="examples.support:agent").nexus
    with pytest.raises(ConfigError, match="the Nexus service runs agents"):
        WorkerSettings.from_flags(model_queues=["openai"], nexus=True)
    shown = CliRunner().invoke(app, ["worker", "--help"], env={"COLUMNS": "200"}).output
    assert "--nexus" in shown
