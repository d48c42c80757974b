"""The codec endpoint the Temporal Web UI calls: model-call inputs show the exact prompt.

Real parts throughout: a real run on the dev server with an in-process worker and a
SQLite transcript store, the codec server over real HTTP called the way the Web UI
calls it, and `ratchet up` starting an isolated dev server whose UI is configured
with the codec endpoint.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import shutil
import signal
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import json_format
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from ratchet import Agent, Limits, tool
from ratchet._protocol import MODEL_ACTIVITY, TOOL_ACTIVITY
from ratchet.codec import AesGcmCodec, CodecServer, encrypted_converter
from ratchet.local import LocalServices, down, status, up
from ratchet.local._proc import free_port, pid_alive
from ratchet.messages import Message
from ratchet.testing import ScriptedModelServer, call, reply, tool_calls
from ratchet.transcripts import SQLiteTranscriptStore

from .conftest import hosted

HISTORIES = Path(__file__).parent / "histories"
UI = "http://127.0.0.1:8233"
INSTRUCTIONS = "You are the refunds desk of Quillfeather Stationery. Never promise cash."
PROMPT = "Please refund order 1042, the ink arrived dried out."
LOOKUP_RESULT = "order 1042: 3 bottles of Nightfall ink, paid 27.90 EUR"
TOKEN = "codec-endpoint-test-token"


@tool
def lookup_order(order_id: int) -> str:
    """Look an order up by its number.

    Args:
        order_id: the order number printed on the receipt.
    """
    return LOOKUP_RESULT if order_id == 1042 else f"no order {order_id}"


def refunds_agent() -> Agent:
    return Agent(
        "refunds",
        instructions=INSTRUCTIONS,
        model="openai:gpt-test",
        tools=[lookup_order],
        limits=Limits(max_turns=4),
    )


async def run_refund(
    client: Client, model_server: ScriptedModelServer, store: SQLiteTranscriptStore
) -> str:
    """One run: a tool call, then an answer; its workflow id."""
    model_server.add(
        tool_calls(call("lookup_order", {"order_id": 1042})),
        reply("I have asked for a refund of 27.90 EUR."),
    )
    async with hosted(client, [refunds_agent()], model_server, transcript_store=store) as agents:
        handle = await agents.start("refunds", PROMPT)
        await handle.result()
    return handle.id


async def scheduled_inputs(client: Client, run_id: str, activity: str) -> list[dict[str, Any]]:
    """The inputs of a run's scheduled ``activity`` calls, as the Web UI receives them."""
    found = []
    async for event in client.get_workflow_handle(run_id).fetch_history_events():
        if event.event_type != EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            continue
        attrs = event.activity_task_scheduled_event_attributes
        if attrs.activity_type.name == activity:
            found.append(json_format.MessageToDict(attrs.input))
    return found


async def workflow_input(client: Client, run_id: str) -> dict[str, Any]:
    async for event in client.get_workflow_handle(run_id).fetch_history_events():
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED:
            return json_format.MessageToDict(
                event.workflow_execution_started_event_attributes.input
            )
    raise AssertionError("no WorkflowExecutionStarted event")


def post(
    url: str, body: Any, headers: dict[str, str], method: str = "POST"
) -> tuple[int, dict[str, str], Any]:
    """A request as the Web UI's fetch sends it."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            status_code, got, raw = response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as e:
        status_code, got, raw = e.code, dict(e.headers), e.read()
    return status_code, got, json.loads(raw) if raw else None


def ui_headers(origin: str = UI, **extra: str) -> dict[str, str]:
    # What the Web UI's codec client sends (src/lib/services/data-encoder.ts).
    return {"Content-Type": "application/json", "X-Namespace": "default", "Origin": origin, **extra}


async def decode(server: CodecServer, body: Any, **headers: str) -> dict[str, Any]:
    status_code, got, answer = await asyncio.to_thread(
        post, f"{server.url}/decode", body, ui_headers(**headers)
    )
    assert status_code == 200, answer
    assert got["Access-Control-Allow-Origin"] == UI
    assert isinstance(answer, dict)
    return answer


def data_of(payload: dict[str, Any]) -> Any:
    return json.loads(base64.b64decode(payload["data"]))


def plain_text(body: Any) -> str:
    return "\n".join(base64.b64decode(p["data"]).decode("latin-1") for p in body["payloads"])


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteTranscriptStore]:
    store = SQLiteTranscriptStore(tmp_path / "transcripts.sqlite")
    yield store
    asyncio.run(store.close())


@pytest.fixture
def endpoint(store: SQLiteTranscriptStore) -> Iterator[CodecServer]:
    """The endpoint `ratchet up` runs: no keys, no token, loopback, the UI's origin."""
    with CodecServer(None, token=None, port=0, origins=[UI], transcript_store=store) as server:
        yield server


async def test_the_web_ui_sees_each_model_call_prompt_and_tools_as_sent(
    temporal_env: WorkflowEnvironment,
    model_server: ScriptedModelServer,
    store: SQLiteTranscriptStore,
    endpoint: CodecServer,
) -> None:
    client = temporal_env.client
    run_id = await run_refund(client, model_server, store)
    inputs = await scheduled_inputs(client, run_id, MODEL_ACTIVITY)
    assert len(inputs) == 2
    # The history holds references: neither the instructions nor the tool result.
    assert INSTRUCTIONS not in plain_text(inputs[0]) and "order_id" not in plain_text(inputs[0])
    assert LOOKUP_RESULT not in plain_text(inputs[1])

    sent = model_server.requests
    for n, recorded in enumerate(inputs):
        answer = await decode(endpoint, recorded)
        [payload] = answer["payloads"]
        [original] = recorded["payloads"]
        assert payload["metadata"] == original["metadata"]
        shown = data_of(payload)
        # Every recorded field is still there, unchanged, beside the expansion.
        assert {k: shown[k] for k in data_of(original)} == data_of(original)
        assert list(shown)[:3] == ["prompt", "tools_offered", "expanded_by"]
        assert "not in the event history" in shown["expanded_by"]
        # Exactly the messages and tools the model received on the wire.
        prompt = [Message.model_validate(m) for m in shown["prompt"]]
        assert [m.to_openai() for m in prompt] == sent[n].body["messages"]
        offered = [t["function"] for t in sent[n].body["tools"]]
        assert shown["tools_offered"] == offered

    first = data_of((await decode(endpoint, inputs[0]))["payloads"][0])
    assert first["prompt"][0] == {"role": "system", "content": INSTRUCTIONS}
    assert first["prompt"][1] == {"role": "user", "content": PROMPT, "pinned": True}
    [lookup] = first["tools_offered"]
    assert lookup["name"] == "lookup_order"
    assert lookup["parameters"]["properties"]["order_id"]["type"] == "integer"
    assert "order number printed on the receipt" in json.dumps(lookup["parameters"])
    second = data_of((await decode(endpoint, inputs[1]))["payloads"][0])
    assert second["prompt"][-1]["role"] == "tool"
    assert second["prompt"][-1]["content"] == LOOKUP_RESULT


async def test_other_payloads_pass_through_unchanged(
    temporal_env: WorkflowEnvironment,
    model_server: ScriptedModelServer,
    store: SQLiteTranscriptStore,
    endpoint: CodecServer,
) -> None:
    client = temporal_env.client
    run_id = await run_refund(client, model_server, store)
    started = await workflow_input(client, run_id)
    [tool_input] = await scheduled_inputs(client, run_id, TOOL_ACTIVITY)
    for recorded in (started, tool_input):
        assert await decode(endpoint, recorded) == recorded
    # Several payloads in one request, in order; not JSON objects too.
    mixed = {
        "payloads": [
            *started["payloads"],
            {"metadata": {"encoding": base64.b64encode(b"binary/plain").decode()}, "data": "AAE="},
            {
                "metadata": {"encoding": base64.b64encode(b"json/plain").decode()},
                "data": base64.b64encode(b'"transcript_ref"').decode(),
            },
        ]
    }
    assert await decode(endpoint, mixed) == mixed


async def test_model_calls_recorded_before_linear_history_pass_through(
    endpoint: CodecServer,
) -> None:
    # Their input holds the whole prompt already (a golden history of such a run).
    history = json.loads((HISTORIES / "pre-linear" / "tool_then_answer.json").read_text())
    inputs = [
        e["activityTaskScheduledEventAttributes"]["input"]
        for e in history["events"]
        if e.get("activityTaskScheduledEventAttributes", {}).get("activityType", {}).get("name")
        == MODEL_ACTIVITY
    ]
    assert inputs and "You are a support agent." in plain_text(inputs[0])
    for recorded in inputs:
        assert await decode(endpoint, recorded) == recorded


async def test_a_missing_store_entry_is_said_and_the_payload_kept(
    temporal_env: WorkflowEnvironment,
    model_server: ScriptedModelServer,
    store: SQLiteTranscriptStore,
    tmp_path: Path,
) -> None:
    client = temporal_env.client
    run_id = await run_refund(client, model_server, store)
    [first, _] = await scheduled_inputs(client, run_id, MODEL_ACTIVITY)
    other = SQLiteTranscriptStore(tmp_path / "another.sqlite")
    try:
        with CodecServer(None, token=None, port=0, origins=[UI], transcript_store=other) as wrong:
            [payload] = (await decode(wrong, first))["payloads"]
    finally:
        await other.close()
    shown = data_of(payload)
    assert "prompt" not in shown
    assert re.search(r"has no (chain node|message) [0-9a-f]{64}", shown["prompt_error"])
    assert "RATCHET_TRANSCRIPT_STORE" in shown["prompt_error"]
    assert {k: v for k, v in shown.items() if k != "prompt_error"} == data_of(first["payloads"][0])


async def test_encrypted_payloads_are_decrypted_and_expanded(
    temporal_env: WorkflowEnvironment,
    model_server: ScriptedModelServer,
    store: SQLiteTranscriptStore,
) -> None:
    codec = AesGcmCodec({"k1": os.urandom(32)}, "k1")
    encrypting = await Client.connect(
        temporal_env.client.service_client.config.target_host,
        namespace=temporal_env.client.namespace,
        data_converter=encrypted_converter(codec),
    )
    run_id = await run_refund(encrypting, model_server, store)
    [first, _] = await scheduled_inputs(temporal_env.client, run_id, MODEL_ACTIVITY)
    assert base64.b64decode(first["payloads"][0]["metadata"]["encoding"]) == b"binary/encrypted"

    with CodecServer(codec, token=TOKEN, port=0, origins=[UI], transcript_store=store) as server:
        status_code, _, _ = await asyncio.to_thread(
            post, f"{server.url}/decode", first, ui_headers()
        )
        assert status_code == 401
        answer = await decode(server, first, Authorization=f"Bearer {TOKEN}")
    [payload] = answer["payloads"]
    assert base64.b64decode(payload["metadata"]["encoding"]) == b"json/plain"
    shown = data_of(payload)
    assert shown["linear"] is True and shown["prompt"][0]["content"] == INSTRUCTIONS
    assert shown["prompt"][1]["content"] == PROMPT
    assert shown["tools_offered"][0]["name"] == "lookup_order"


def test_the_endpoint_answers_the_ui_origin_on_loopback_names_only(
    endpoint: CodecServer, store: SQLiteTranscriptStore
) -> None:
    body: dict[str, Any] = {"payloads": []}
    preflight = {
        "Origin": UI,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type,x-namespace",
    }
    status_code, got, _ = post(f"{endpoint.url}/decode", None, preflight, method="OPTIONS")
    assert status_code == 204 and got["Access-Control-Allow-Origin"] == UI
    # Another web page, even one the browser thinks is on this port (DNS rebinding).
    status_code, got, _ = post(f"{endpoint.url}/decode", body, ui_headers("http://evil.example"))
    assert status_code == 403 and "Access-Control-Allow-Origin" not in got
    port = endpoint.url.rsplit(":", 1)[1]
    rebound = {**ui_headers(), "Host": f"evil.example:{port}"}
    status_code, _, answer = post(f"{endpoint.url}/decode", body, rebound)
    assert status_code == 421 and "payloads" not in answer
    for host in (f"localhost:{port}", f"127.0.0.1:{port}", "localhost", f"[::1]:{port}"):
        status_code, _, _ = post(f"{endpoint.url}/decode", body, {**ui_headers(), "Host": host})
        assert status_code == 200, host
    # The public name an authenticating reverse proxy forwards, when allowed.
    proxied = {**ui_headers(), "Host": "codec.example.com"}
    with CodecServer(
        None,
        token=None,
        port=0,
        origins=[UI],
        transcript_store=store,
        allowed_hosts=["codec.example.com"],
    ) as behind_proxy:
        status_code, _, _ = post(f"{behind_proxy.url}/decode", body, proxied)
        assert status_code == 200
    # With a token, a rebound page has no way in anyway: any Host name is answered.
    with CodecServer(None, token=TOKEN, port=0, origins=[UI], transcript_store=store) as guarded:
        headers = {**proxied, "Authorization": f"Bearer {TOKEN}"}
        status_code, _, _ = post(f"{guarded.url}/decode", body, headers)
        assert status_code == 200


def test_encode_never_expands_and_without_keys_changes_nothing(endpoint: CodecServer) -> None:
    typed = {
        "payloads": [
            {
                "metadata": {"encoding": base64.b64encode(b"json/plain").decode()},
                "data": base64.b64encode(b'{"call_id": "turn2-tool0", "approve": true}').decode(),
            }
        ]
    }
    status_code, _, answer = post(f"{endpoint.url}/encode", typed, ui_headers())
    assert status_code == 200 and answer == typed


def test_a_codec_server_needs_keys_or_a_store() -> None:
    from ratchet import ConfigError

    with pytest.raises(ConfigError, match="nothing to do"):
        CodecServer(None, token=None, port=0)


@dataclass
class Isolated:
    """Services `ratchet up` started for one test, with their ports and data directory."""

    services: LocalServices
    port: int
    ui_port: int
    codec_url: str
    data: Path

    @property
    def ui_origin(self) -> str:
        return f"http://127.0.0.1:{self.ui_port}"

    async def first_model_input(self, model_server: ScriptedModelServer) -> tuple[str, Any]:
        """Run the refund agent on these services; its id and first model-call input."""
        assert self.services.temporal_address is not None
        store = SQLiteTranscriptStore(self.data / "transcripts.sqlite")  # the default store
        client = await Client.connect(
            self.services.temporal_address, data_converter=pydantic_data_converter
        )
        try:
            run_id = await run_refund(client, model_server, store)
            [first, _] = await scheduled_inputs(client, run_id, MODEL_ACTIVITY)
        finally:
            await store.close()
        return run_id, first


@pytest.fixture
def isolated_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Isolated]:
    """`ratchet up` on its own data directory and ports, never the shared services."""
    data = tmp_path / "data"
    monkeypatch.setenv("RATCHET_DATA_DIR", str(data))
    for name in ("RATCHET_TRANSCRIPT_STORE", "RATCHET_ENCRYPTION_KEYS", "RATCHET_CODEC_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    port, ui_port, codec_port = free_port(), free_port(), free_port()
    try:
        services = up(
            temporal=True,
            llm=False,
            temporal_port=port,
            temporal_ui_port=ui_port,
            codec_port=codec_port,
        )
        yield Isolated(services, port, ui_port, f"http://127.0.0.1:{codec_port}", data)
    finally:
        down(timeout=5)


async def test_ratchet_up_gives_the_web_ui_the_codec_endpoint(
    isolated_up: Isolated, model_server: ScriptedModelServer
) -> None:
    codec_url = isolated_up.codec_url
    assert isolated_up.services.codec_url == codec_url
    report = status()
    assert report["codec"].running and report["codec"].managed
    state = json.loads((isolated_up.data / "services.json").read_text())["services"]
    command = state["temporal"]["command"]
    assert command[command.index("--ui-codec-endpoint") + 1] == codec_url

    # The Web UI tells the browser to call it.
    settings_url = f"{isolated_up.services.ui_url}/api/v1/settings"
    with urllib.request.urlopen(settings_url, timeout=10) as response:
        settings = json.loads(response.read())
    assert settings["Codec"]["Endpoint"] == codec_url

    # A run on these services: the UI's decode call shows its prompt, read from the
    # default transcript store in the data directory.
    _, first = await isolated_up.first_model_input(model_server)
    origin = isolated_up.ui_origin
    status_code, got, answer = await asyncio.to_thread(
        post, f"{codec_url}/decode", first, ui_headers(origin)
    )
    assert status_code == 200 and got["Access-Control-Allow-Origin"] == origin
    shown = data_of(answer["payloads"][0])
    assert [m["content"] for m in shown["prompt"]] == [INSTRUCTIONS, PROMPT]
    status_code, _, _ = await asyncio.to_thread(post, f"{codec_url}/decode", first, ui_headers(UI))
    assert status_code == 403  # not this UI's origin

    # `ratchet up` again reuses everything; a codec endpoint that died comes back at
    # the URL the running UI was given.
    def up_again() -> LocalServices:
        return up(
            temporal=True,
            llm=False,
            temporal_port=isolated_up.port,
            temporal_ui_port=isolated_up.ui_port,
            on_progress=progress.append,
        )

    progress: list[str] = []
    assert await asyncio.to_thread(up_again) == isolated_up.services
    codec_pid = status()["codec"].pid
    assert codec_pid is not None
    os.kill(codec_pid, signal.SIGKILL)  # up() started it for this test
    await asyncio.to_thread(wait_until_gone, codec_pid)
    assert not status()["codec"].running
    restarted = await asyncio.to_thread(up_again)
    assert restarted.codec_url == codec_url, progress
    assert status()["codec"].running and status()["codec"].pid != codec_pid
    status_code, _, _ = await asyncio.to_thread(
        post, f"{codec_url}/decode", first, ui_headers(origin)
    )
    assert status_code == 200

    lines = down(timeout=5)
    assert any(line.startswith("stopped codec endpoint") for line in lines), lines
    assert not status()["codec"].running


def wait_until_gone(pid: int) -> None:
    deadline = time.monotonic() + 10
    while pid_alive(pid):  # reaps it: up() started it from this process
        assert time.monotonic() < deadline, f"pid {pid} still runs"
        time.sleep(0.05)


async def test_the_web_ui_page_shows_the_prompt(
    isolated_up: Isolated, model_server: ScriptedModelServer, tmp_path: Path
) -> None:
    """The real Web UI in a real browser: the model call's input shows the instructions."""
    import playwright.async_api as playwright

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        message = "no chromium: `make chromium` installs Debian's"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{message}; under CI a missing browser fails, it does not skip")
        pytest.skip(message)
    run_id, _ = await isolated_up.first_model_input(model_server)
    assert isolated_up.services.temporal_address is not None
    client = await Client.connect(isolated_up.services.temporal_address)
    execution = (await client.get_workflow_handle(run_id).describe()).run_id
    ui = isolated_up.services.ui_url
    page_url = f"{ui}/namespaces/default/workflows/{run_id}/{execution}/history"
    decoded: list[int] = []

    def seen(response: Any) -> None:
        if response.url.startswith(isolated_up.codec_url):
            decoded.append(response.status)

    async with playwright.async_playwright() as p:
        browser = await p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            page = await browser.new_page(viewport={"width": 1400, "height": 1600})
            page.on("response", seen)
            await page.goto(page_url)
            # Open the first model call's Activity Task Scheduled row.
            await page.get_by_text("ratchet.call_model").last.click()
            await page.get_by_text(INSTRUCTIONS).first.wait_for(timeout=15_000)
            await page.screenshot(path=str(tmp_path / "web-ui-model-call.png"), full_page=True)
            text = await page.inner_text("body")
        finally:
            await browser.close()
    assert decoded and set(decoded) == {200}
    assert PROMPT in text and "tools_offered" in text and "lookup_order" in text
