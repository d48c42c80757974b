"""ratchet agents as A2A agents, driven by the ``a2a-sdk``'s own client over real HTTP.

The server is ``ratchet serve``'s application (the A2A endpoints beside the HTTP API)
under uvicorn on 127.0.0.1; a real Temporal dev server and an in-process worker run
the agents against the scripted model server. Nothing of ratchet, Temporal or the
A2A SDK is replaced.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from a2a.client import (
    A2ACardResolver,
    A2AClientError,
    AuthInterceptor,
    Client,
    ClientCallContext,
    ClientConfig,
    ClientFactory,
    CredentialService,
)
from a2a.helpers import get_artifact_text, get_data_parts, get_message_text
from a2a.types import (
    CancelTaskRequest,
    GetTaskRequest,
    InvalidParamsError,
    InvalidRequestError,
    Message,
    Part,
    Role,
    SendMessageRequest,
    StreamResponse,
    SubscribeToTaskRequest,
    Task,
    TaskNotCancelableError,
    TaskNotFoundError,
    TaskState,
    UnsupportedOperationError,
)
from google.protobuf import struct_pb2
from google.protobuf.json_format import ParseDict
from temporalio.client import Client as TemporalClient

from examples.a2a_client import ask
from ratchet import AgentClient, RunCancelled
from ratchet import events as ev
from ratchet.a2a import create_a2a_app
from ratchet.http import AuthSettings, KeyStore, create_app
from ratchet.testing import ScriptedModelServer, call, hang, reply, tool_calls

from .conftest import ROOT, hosted
from .http_kit import agents, keys_of_every_role, serve
from .test_cli import assert_clean_error, ratchet
from .test_http_cli import free_port

ANSWER = "Order 1042 shipped on Monday."
COMPLETED = TaskState.TASK_STATE_COMPLETED
INPUT_REQUIRED = TaskState.TASK_STATE_INPUT_REQUIRED


@dataclass
class Site:
    url: str
    keys: dict[str, str]
    """A key per role, each named after its role."""
    store: KeyStore
    runs: AgentClient


@pytest.fixture
async def site(
    temporal_client: TemporalClient, model_server: ScriptedModelServer, tmp_path: Path
) -> AsyncIterator[Site]:
    store = KeyStore(tmp_path / "keys.sqlite")
    keys = keys_of_every_role(store)
    async with hosted(temporal_client, agents(), model_server) as client:
        app = create_app(client, agents=agents(), auth=AuthSettings(keys=store))
        with serve(app) as served:
            yield Site(served.url, keys, store, client)
    store.close()


class Key(CredentialService):
    """Hands the A2A client's auth interceptor one credential for the card's scheme."""

    def __init__(self, key: str | None) -> None:
        self.key = key
        self.schemes: list[str] = []

    async def get_credentials(self, scheme: str, context: ClientCallContext | None) -> str | None:
        self.schemes.append(scheme)
        return self.key


@asynccontextmanager
async def a2a(
    url: str, agent: str, key: str | None, *, streaming: bool = False, polling: bool = False
) -> AsyncIterator[Client]:
    """The SDK's client for an agent, found through its card, authenticating as the card
    says (the bearer scheme) with ``key``."""
    async with httpx.AsyncClient(timeout=60) as http:
        card = await A2ACardResolver(http, f"{url}/a2a/{agent}").get_agent_card()
        config = ClientConfig(httpx_client=http, streaming=streaming, polling=polling)
        client = ClientFactory(config).create(card, interceptors=[AuthInterceptor(Key(key))])
        try:
            yield client
        finally:
            await client.close()


def message(
    text: str | None = None,
    *,
    data: Any = None,
    task_id: str = "",
    message_id: str | None = None,
    chat: bool = False,
) -> SendMessageRequest:
    parts = [Part(text=text)] if text is not None else []
    if data is not None:
        parts.append(Part(data=ParseDict(data, struct_pb2.Value())))
    return SendMessageRequest(
        message=Message(
            message_id=message_id or f"m-{id(parts)}-{text}",
            role=Role.ROLE_USER,
            parts=parts,
            task_id=task_id,
            metadata={"chat": True} if chat else None,
        )
    )


async def send(client: Client, request: SendMessageRequest) -> list[StreamResponse]:
    """Everything the server answers, or a failure after 60 s (a stream that never ends:
    the server missed the state the exchange ends in)."""
    async with asyncio.timeout(60):
        return [r async for r in client.send_message(request)]


async def sent_task(client: Client, request: SendMessageRequest) -> Task:
    [response] = await send(client, request)
    assert response.HasField("task"), response
    return response.task


def kind_of(status_message: Message) -> str | None:
    """What a status message reports (its metadata ``kind``: token, tool_call...)."""
    fields = status_message.metadata.fields
    return fields["kind"].string_value if "kind" in fields else None


def artifact_text(task: Task, artifact_id: str) -> str:
    [artifact] = [a for a in task.artifacts if a.artifact_id == artifact_id]
    return "\n".join(p.text for p in artifact.parts if p.HasField("text"))


async def test_each_agent_has_a_public_card_that_leads_a_client_to_it(site: Site) -> None:
    async with httpx.AsyncClient(timeout=30) as http:
        card = await A2ACardResolver(http, f"{site.url}/a2a/helper").get_agent_card()
        unknown = await http.get(f"{site.url}/a2a/nobody/.well-known/agent-card.json")
        rpc_of_unknown = await http.post(f"{site.url}/a2a/nobody", json={})
    assert card.name == "helper"
    assert card.description == "You are a support agent."  # the instructions' first sentence
    assert card.capabilities.streaming and not card.capabilities.push_notifications
    assert {(i.url, i.protocol_binding, i.protocol_version) for i in card.supported_interfaces} == {
        (f"{site.url}/a2a/helper", "JSONRPC", "1.0"),
        (f"{site.url}/a2a/helper", "JSONRPC", "0.3"),
    }
    scheme = card.security_schemes["bearer"].http_auth_security_scheme
    assert scheme.scheme.lower() == "bearer" and "ratchet keys create" in scheme.description
    assert [list(r.schemes) for r in card.security_requirements] == [["bearer"]]
    skills = {s.id: s for s in card.skills}
    assert skills["helper"].description == card.description
    assert skills["tool:lookup_order"].description.startswith("Look up an order")
    assert unknown.status_code == 404 and "helper" in unknown.json()["detail"]
    assert rpc_of_unknown.status_code == 404


async def test_send_returns_the_completed_task_with_the_answer(
    site: Site, model_server: ScriptedModelServer
) -> None:
    model_server.add(tool_calls(call("lookup_order", {"order_id": 1042})), reply(ANSWER))
    request = message("Where is order 1042?", message_id="order-question")
    async with a2a(site.url, "helper", site.keys["operator"]) as client:
        task = await sent_task(client, request)
        again = await sent_task(client, request)  # a retried message: the same task
        read = await client.get_task(GetTaskRequest(id=task.id))
        short = await client.get_task(GetTaskRequest(id=task.id, history_length=1))
    assert task.status.state == COMPLETED
    assert artifact_text(task, "answer") == ANSWER
    assert [get_message_text(m) for m in task.history] == ["Where is order 1042?", ANSWER]
    assert [m.role for m in task.history] == [Role.ROLE_USER, Role.ROLE_AGENT]
    # The task is the run: same id, same answer; the retry started nothing.
    assert task.context_id == task.id and task.id.startswith("helper-a2a-")
    assert (await site.runs.get(task.id).result()).output == ANSWER
    assert again.id == task.id and again.status.state == COMPLETED
    assert len(model_server.requests) == 2
    assert read.status.state == COMPLETED and artifact_text(read, "answer") == ANSWER
    assert [get_message_text(m) for m in short.history] == [ANSWER]


async def test_a_stream_carries_the_work_then_the_answer_artifact(
    site: Site, model_server: ScriptedModelServer
) -> None:
    model_server.add(
        tool_calls(call("lookup_order", {"order_id": 1042})),
        reply(ANSWER, chunk_chars=6, chunk_delay=0.01),
    )
    async with a2a(site.url, "helper", site.keys["operator"], streaming=True) as client:
        stream = await send(client, message("Where is order 1042?"))
    first, *rest = stream
    assert first.HasField("task") and first.task.status.state == TaskState.TASK_STATE_SUBMITTED
    assert get_message_text(first.task.history[0]) == "Where is order 1042?"
    kinds = [r.WhichOneof("payload") for r in rest]
    statuses = [r.status_update for r in rest if r.HasField("status_update")]
    assert {s.task_id for s in statuses} == {first.task.id}

    def of_kind(kind: str) -> list[Any]:
        return [s for s in statuses if kind_of(s.status.message) == kind]

    assert statuses[0].status.state == TaskState.TASK_STATE_WORKING
    [called] = of_kind("tool_call")
    [result] = of_kind("tool_result")
    assert get_message_text(called.status.message).startswith("calling tool lookup_order")
    assert get_data_parts(called.status.message.parts)[0]["tool_call"]["arguments"] == {
        "order_id": 1042.0  # a protobuf Value's numbers are doubles
    }
    assert json.loads(get_data_parts(result.status.message.parts)[0]["tool_result"]["result"]) == {
        "id": 1042,
        "status": "shipped",
    }
    # The answer streamed piece by piece, as the model wrote it.
    tokens = [get_message_text(s.status.message) for s in of_kind("token")]
    assert len(tokens) > 1 and "".join(tokens) == ANSWER
    # Then the answer as an artifact, then completed: the stream's last event.
    assert kinds[-2:] == ["artifact_update", "status_update"]
    artifact = rest[-2].artifact_update.artifact
    assert artifact.artifact_id == "answer" and get_artifact_text(artifact) == ANSWER
    assert rest[-1].status_update.status.state == COMPLETED
    assert statuses.index(called) < statuses.index(result) < len(statuses) - 1


async def test_cancel_stops_the_run_and_the_task_is_canceled(
    site: Site, model_server: ScriptedModelServer
) -> None:
    model_server.add(hang())
    async with a2a(site.url, "helper", site.keys["operator"], polling=True) as client:
        # polling: send returns at once (return_immediately), the task still working.
        task = await sent_task(client, message("Think about order 1042 forever."))
        assert task.status.state == TaskState.TASK_STATE_SUBMITTED
        await model_server.wait_for_requests_async(1)  # the model call is in flight
        working = await client.get_task(GetTaskRequest(id=task.id))
        canceled = await client.cancel_task(CancelTaskRequest(id=task.id))
        with pytest.raises(TaskNotCancelableError, match="already ended"):
            await client.cancel_task(CancelTaskRequest(id=task.id))
        read = await client.get_task(GetTaskRequest(id=task.id))
    assert working.status.state == TaskState.TASK_STATE_WORKING
    assert canceled.status.state == TaskState.TASK_STATE_CANCELED
    assert read.status.state == TaskState.TASK_STATE_CANCELED
    assert get_message_text(read.status.message) == "the run was cancelled"
    with pytest.raises(RunCancelled):
        await site.runs.get(task.id).result()
    await model_server.wait_for_disconnect_async()  # the model call was abandoned too


async def test_a_call_waiting_for_approval_is_input_required_until_a_message_approves_it(
    site: Site, model_server: ScriptedModelServer
) -> None:
    model_server.add(
        tool_calls(call("refund", {"order_id": 7, "amount": 30})), reply("Refunded $30.")
    )
    async with (
        a2a(site.url, "guarded", site.keys["approver"]) as approver,
        a2a(site.url, "guarded", site.keys["operator"]) as operator,
    ):
        task = await sent_task(approver, message("Refund $30 on order 7."))
        assert task.status.state == INPUT_REQUIRED
        asked = task.status.message
        [data] = get_data_parts(asked.parts)
        call_id = data["approval"]["call_id"]
        assert data["answer_with"] == {"approve": True, "call_id": call_id}
        assert "refund" in get_message_text(asked) and call_id in get_message_text(asked)
        assert list(task.metadata["waiting_approval"]) == [call_id]
        read = await approver.get_task(GetTaskRequest(id=task.id))
        assert read.status.state == INPUT_REQUIRED

        # An operator may not approve; text is no answer to an approval.
        with pytest.raises(InvalidRequestError, match="needs the approver role"):
            await send(operator, message(data={"approve": True}, task_id=task.id))
        with pytest.raises(InvalidParamsError, match="waits for an approval"):
            await send(operator, message("please hurry", task_id=task.id))

        done = await sent_task(
            approver,
            message("fine by me", data={"approve": True, "call_id": call_id}, task_id=task.id),
        )
        with pytest.raises(UnsupportedOperationError, match="has ended"):
            await send(approver, message(data={"approve": True}, task_id=task.id))
    assert done.id == task.id and done.status.state == COMPLETED
    assert artifact_text(done, "answer") == "Refunded $30."
    # The authenticated caller approved, with the message's text as the reason.
    [answered] = [
        e
        async for e in site.runs.get(task.id).events(follow=False)
        if isinstance(e, ev.ApprovalAnswered)
    ]
    assert answered.record.approved
    assert (answered.record.approver, answered.record.reason) == ("approver", "fine by me")


async def test_a_denial_streams_and_the_model_is_told(
    site: Site, model_server: ScriptedModelServer
) -> None:
    model_server.add(
        tool_calls(call("refund", {"order_id": 7, "amount": 30})), reply("I could not refund.")
    )
    key = site.keys["approver"]
    async with a2a(site.url, "guarded", key, streaming=True) as client:
        first = await send(client, message("Refund $30 on order 7."))
        task_id = first[0].task.id
        assert first[-1].status_update.status.state == INPUT_REQUIRED  # the stream ends there
        second = await send(
            client, message(data={"approve": False, "reason": "not today"}, task_id=task_id)
        )
    assert second[0].task.status.state == TaskState.TASK_STATE_WORKING
    assert second[-1].status_update.status.state == COMPLETED
    texts = [get_message_text(r.status_update.status.message) for r in second[1:-1]]
    assert any("denied by approver: not today" in t for t in texts), texts
    assert "not today" in json.dumps(model_server.requests[-1].messages)


async def test_the_readme_client_streams_and_answers_approvals(
    site: Site, model_server: ScriptedModelServer
) -> None:
    model_server.add(
        tool_calls(call("refund", {"order_id": 7, "amount": 30})), reply("Refunded $30.")
    )
    asked: list[dict[str, Any]] = []
    lines: list[str] = []

    def approve(waiting: dict[str, Any]) -> bool:
        asked.append(waiting)
        return True

    answer = await ask(
        f"{site.url}/a2a/guarded",
        site.keys["approver"],
        "Refund $30 on order 7.",
        approve=approve,
        show=lines.append,
    )
    assert answer == "Refunded $30."
    assert [(a["tool"], a["arguments"]) for a in asked] == [
        ("refund", {"order_id": 7.0, "amount": 30.0})
    ]
    assert lines[0].startswith("tool call refund(") and "needs approval" in lines[0]
    assert any(line.startswith("refund returned: refunded $30 on order 7") for line in lines)


async def test_a_chat_task_takes_follow_ups_until_it_is_ended(
    site: Site, model_server: ScriptedModelServer
) -> None:
    model_server.add(reply("Hi! How can I help?"), reply("It shipped.", chunk_chars=3))
    async with (
        a2a(site.url, "helper", site.keys["operator"]) as client,
        a2a(site.url, "helper", site.keys["operator"], streaming=True) as streaming,
    ):
        task = await sent_task(client, message("hello", chat=True))
        assert task.status.state == INPUT_REQUIRED
        assert get_message_text(task.status.message) == "Hi! How can I help?"
        assert task.status.message.metadata["waiting_for"] == "message"
        with pytest.raises(InvalidParamsError, match="has no text"):
            await send(client, message("  ", task_id=task.id))
        stream = await send(streaming, message("where is order 1042?", task_id=task.id))
        ended = await sent_task(client, message(data={"end_chat": True}, task_id=task.id))
        with pytest.raises(UnsupportedOperationError, match="takes no more messages"):
            await send(client, message("and now?", task_id=task.id))
    assert stream[0].task.status.state == TaskState.TASK_STATE_WORKING
    assert stream[-2].artifact_update.artifact.artifact_id == "reply-2"
    assert stream[-1].status_update.status.state == INPUT_REQUIRED
    assert get_message_text(stream[-1].status_update.status.message) == "It shipped."
    assert ended.status.state == COMPLETED
    assert [a.artifact_id for a in ended.artifacts] == ["reply-1", "reply-2"]
    assert [get_message_text(m) for m in ended.history] == [
        "hello",
        "Hi! How can I help?",
        "where is order 1042?",
        "It shipped.",
    ]
    assert (await site.runs.get(task.id).result()).output == "It shipped."


async def test_without_a_valid_key_nothing_but_the_card_is_served(
    site: Site, model_server: ScriptedModelServer
) -> None:
    for key in (None, "rk_not-a-key"):
        async with a2a(site.url, "helper", key) as client:
            with pytest.raises(A2AClientError, match="401"):
                await send(client, message("hello"))
            with pytest.raises(A2AClientError, match="401"):
                await client.get_task(GetTaskRequest(id="anything"))
    async with httpx.AsyncClient(timeout=30) as http:
        bare = await http.post(
            f"{site.url}/a2a/helper",
            json={"jsonrpc": "2.0", "id": 1, "method": "GetTask", "params": {"id": "x"}},
        )
    assert bare.status_code == 401 and bare.headers["www-authenticate"] == "Bearer"
    # A viewer reads but does not start tasks.
    async with a2a(site.url, "helper", site.keys["viewer"]) as viewer:
        with pytest.raises(InvalidRequestError, match="needs the operator role"):
            await send(viewer, message("hello"))
        with pytest.raises(TaskNotFoundError):
            await viewer.get_task(GetTaskRequest(id="no-such-task"))
    assert model_server.requests == []  # nothing ran


async def test_a_tenants_key_sees_only_its_tenants_tasks(
    site: Site, model_server: ScriptedModelServer
) -> None:
    acme = site.store.create("acme-ops", "operator", "acme")[1]
    globex = site.store.create("globex-ops", "operator", "globex")[1]
    model_server.add(reply("Done for acme."))
    async with a2a(site.url, "helper", acme) as a, a2a(site.url, "helper", globex) as g:
        task = await sent_task(a, message("acme's secret errand", message_id="same-id"))
        hidden = [
            g.get_task(GetTaskRequest(id=task.id)),
            g.cancel_task(CancelTaskRequest(id=task.id)),
            send(g, message("more", task_id=task.id)),
        ]
        for attempt in hidden:
            with pytest.raises(TaskNotFoundError, match="has no task"):
                await attempt
    assert (await site.runs.get(task.id).input()).tenant == "acme"
    assert task.status.state == COMPLETED


async def test_a2a_0_3_method_names_work_on_the_same_endpoint(
    site: Site, model_server: ScriptedModelServer
) -> None:
    model_server.add(reply(ANSWER))
    headers = {"Authorization": f"Bearer {site.keys['operator']}"}
    sent = {
        "jsonrpc": "2.0",
        "id": "1",
        "method": "message/send",
        "params": {
            "message": {
                "kind": "message",
                "messageId": "legacy-1",
                "role": "user",
                "parts": [{"kind": "text", "text": "Where is order 1042?"}],
            }
        },
    }
    async with httpx.AsyncClient(base_url=site.url, headers=headers, timeout=60) as http:
        result = (await http.post("/a2a/helper", json=sent)).json()["result"]
        got = await http.post(
            "/a2a/helper",
            json={
                "jsonrpc": "2.0",
                "id": "2",
                "method": "tasks/get",
                "params": {"id": result["id"]},
            },
        )
    assert result["kind"] == "task" and result["status"]["state"] == "completed"
    assert result["artifacts"][0]["parts"][0]["text"] == ANSWER
    assert got.json()["result"]["status"]["state"] == "completed"


async def test_subscribing_follows_a_running_task_to_its_end(
    site: Site, model_server: ScriptedModelServer
) -> None:
    model_server.add(reply(ANSWER, delay=3.0))
    async with (
        a2a(site.url, "helper", site.keys["operator"], polling=True) as starter,
        a2a(site.url, "helper", site.keys["viewer"], streaming=True) as watcher,
    ):
        task = await sent_task(starter, message("Where is order 1042?"))
        events = [r async for r in watcher.subscribe(SubscribeToTaskRequest(id=task.id))]
        with pytest.raises(UnsupportedOperationError, match="has ended"):
            _ = [r async for r in watcher.subscribe(SubscribeToTaskRequest(id=task.id))]
    assert events[0].task.id == task.id
    assert events[-1].status_update.status.state == COMPLETED
    assert events[-2].artifact_update.artifact.artifact_id == "answer"


async def test_the_standalone_app_serves_only_the_chosen_agents(
    temporal_client: TemporalClient, model_server: ScriptedModelServer, tmp_path: Path
) -> None:
    store = KeyStore(tmp_path / "keys.sqlite")
    key = store.create("ops", "operator")[1]
    model_server.add(reply(ANSWER))
    helper = [a for a in agents() if a.name == "helper"]
    async with hosted(temporal_client, agents(), model_server) as client:
        app = create_a2a_app(
            client, agents=helper, auth=AuthSettings(keys=store), descriptions={"helper": "Orders."}
        )
        with serve(app) as served:
            async with a2a(served.url, "helper", key) as a:
                task = await sent_task(a, message("Where is order 1042?"))
            async with httpx.AsyncClient(base_url=served.url, timeout=30) as http:
                card = (await http.get("/a2a/helper/.well-known/agent-card.json")).json()
                other = await http.get("/a2a/guarded/.well-known/agent-card.json")
                api = await http.get("/v1/agents")
    store.close()
    assert artifact_text(task, "answer") == ANSWER
    assert card["description"] == "Orders."
    assert other.status_code == 404 and api.status_code == 404


async def test_the_card_is_served_while_the_api_needs_keys_for_everything_else(
    site: Site,
) -> None:
    async with httpx.AsyncClient(base_url=site.url, timeout=30) as http:
        card = await http.get("/a2a/guarded/.well-known/agent-card.json")
        api = await http.get("/v1/agents")
    assert card.status_code == 200 and card.json()["name"] == "guarded"
    assert api.status_code == 401
    # The A2A routes stay out of the HTTP API's OpenAPI document (A2A is their contract).
    async with httpx.AsyncClient(base_url=site.url, timeout=30) as http:
        paths = (await http.get("/v1/openapi.json")).json()["paths"]
    assert not [p for p in paths if p.startswith("/a2a")]


async def test_ratchet_a2a_serve_serves_the_chosen_agents_until_ctrl_c(
    temporal_client: TemporalClient, model_server: ScriptedModelServer, tmp_path: Path
) -> None:
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "RATCHET_API_KEYS": str(tmp_path / "keys.sqlite"),
        "RATCHET_DATA_DIR": str(tmp_path / "data"),
    }
    key = (await ratchet("keys", "create", "--name", "ops", "--role", "operator", env=env)).stdout
    assert_clean_error(
        await ratchet("a2a", "serve", "--app", "tests.http_kit:agents", "--agents", "x", env=env),
        "--agents names agents that tests.http_kit:agents does not have: x",
    )
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    model_server.add(reply("Served over A2A."))
    async with hosted(temporal_client, agents(), model_server) as client:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            *("-m", "ratchet.cli", "a2a", "serve", "--app", "tests.http_kit:agents"),
            *("--agents", "helper", "--port", str(port), "--task-queue", client.task_queue),
            *("--address", temporal_client.service_client.config.target_host),
            cwd=ROOT,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            async with httpx.AsyncClient(base_url=url, timeout=30) as http:
                for _ in range(600):
                    try:
                        card = await http.get("/a2a/helper/.well-known/agent-card.json")
                        break
                    except httpx.TransportError:
                        await asyncio.sleep(0.1)
                else:
                    raise AssertionError("ratchet a2a serve did not come up")
                not_served = await http.get("/a2a/guarded/.well-known/agent-card.json")
            async with a2a(url, "helper", key.strip()) as a:
                task = await sent_task(a, message("Where is order 1042?"))
        finally:
            proc.send_signal(signal.SIGINT)
            stdout, stderr = await asyncio.wait_for(proc.communicate(), timeout=30)
    assert card.json()["supportedInterfaces"][0]["url"] == f"{url}/a2a/helper"
    assert not_served.status_code == 404
    assert artifact_text(task, "answer") == "Served over A2A."
    assert f"helper: {url}/a2a/helper" in stdout.decode()
    assert proc.returncode == 130 and "Traceback" not in stderr.decode(), stderr.decode()
