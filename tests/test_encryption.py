"""Payload encryption: the AES-GCM codec, its keys, rotation, the codec server, real histories."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import json_format
from temporalio.api.common.v1 import Payload, Payloads
from temporalio.api.enums.v1 import EventType
from temporalio.api.failure.v1 import Failure
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment

import ratchet
from ratchet import Agent, AgentClient, ConfigError, Limits, RetryableToolError, ToolContext, tool
from ratchet._converter import DATA_CONVERTER
from ratchet.codec import (
    ENCODING,
    KEY_ID_METADATA,
    KEYS_ENV,
    KEYS_FILE_ENV,
    AesGcmCodec,
    CodecServer,
    PayloadDecryptionError,
    codec_from_env,
    decrypt_failure,
    encrypted_converter,
    generate_key,
    parse_keys,
)
from ratchet.testing import ScriptedModelServer, call, reply, tool_calls
from ratchet.trace import ToolStep, build_trace

from .conftest import API_KEY, ROOT, decoded_history_text, hosted

K1 = os.urandom(32)
K2 = os.urandom(32)
TOKEN = "codec-token-for-tests"
UI = "http://localhost:8233"

PROMPT = "Where is my parcel? My passphrase is marmalade-umbrella-417."
TRACKING = "ZX-TRACK-88231"
RESULT_TEXT = "left with neighbour Ottoline"
RETRY_TEXT = "carrier gateway busy for"


def entry(key_id: str, key: bytes) -> str:
    return f"{key_id}:{base64.b64encode(key).decode()}"


def codec_k1() -> AesGcmCodec:
    return AesGcmCodec({"k1": K1}, "k1")


async def connect_with(env: WorkflowEnvironment, codec: AesGcmCodec | None) -> Client:
    """A client of the test server; with ``codec`` it encrypts, without it sees raw payloads."""
    return await Client.connect(
        env.client.service_client.config.target_host,
        namespace=env.client.namespace,
        data_converter=pydantic_data_converter if codec is None else encrypted_converter(codec),
    )


# ---------------------------------------------------------------------------------------------
# The codec


def payload(value: Any) -> Payload:
    [p] = pydantic_data_converter.payload_converter.to_payloads([value])
    return p


async def test_codec_round_trips_and_labels_payloads() -> None:
    codec = AesGcmCodec({"k2": K2, "k1": K1}, "k2")
    original = payload({"prompt": PROMPT})
    [sealed] = await codec.encode([original])
    assert sealed.metadata["encoding"] == ENCODING.encode()
    assert sealed.metadata[KEY_ID_METADATA] == b"k2"
    assert PROMPT.encode() not in sealed.data and b"json/plain" not in sealed.data
    [again] = await codec.encode([original])
    assert again.data[:12] != sealed.data[:12], "each payload gets a fresh nonce"
    assert await codec.decode([sealed]) == [original]
    assert codec.key_ids == ["k2", "k1"] and codec.active_key_id == "k2"
    assert base64.b64encode(K1).decode() not in repr(codec)


async def test_unencrypted_payloads_pass_through() -> None:
    plain = payload("written before encryption was on")
    assert await codec_k1().decode([plain]) == [plain]


async def test_altered_or_relabelled_payloads_fail_to_decrypt() -> None:
    codec = AesGcmCodec({"k1": K1, "k2": K2}, "k1")
    [sealed] = await codec.encode([payload("x")])
    tampered = Payload()
    tampered.CopyFrom(sealed)
    tampered.data = sealed.data[:-1] + bytes([sealed.data[-1] ^ 1])
    with pytest.raises(PayloadDecryptionError, match=r"'k1'.*altered"):
        await codec.decode([tampered])
    relabelled = Payload()
    relabelled.CopyFrom(sealed)
    relabelled.metadata[KEY_ID_METADATA] = b"k2"  # the key id is bound as associated data
    with pytest.raises(PayloadDecryptionError, match="'k2'"):
        await codec.decode([relabelled])


async def test_missing_key_is_named() -> None:
    [sealed] = await codec_k1().encode([payload("x")])
    with pytest.raises(PayloadDecryptionError, match=r"key 'k1', which is not configured"):
        await AesGcmCodec({"k2": K2}, "k2").decode([sealed])


def test_codec_rejects_bad_keys() -> None:
    with pytest.raises(ConfigError, match="16 bytes"):
        AesGcmCodec({"k1": K1[:16]}, "k1")
    with pytest.raises(ConfigError, match="not among"):
        AesGcmCodec({"k1": K1}, "k2")
    with pytest.raises(ConfigError, match="invalid key id"):
        AesGcmCodec({"k 1": K1}, "k 1")


async def test_encrypted_converter_encrypts_failure_messages() -> None:
    converter = encrypted_converter(codec_k1())
    assert converter.payload_codec is not None
    assert converter.payload_converter_class is DATA_CONVERTER.payload_converter_class
    failure = Failure()
    await converter.encode_failure(ApplicationError(f"no parcel {TRACKING}"), failure)
    assert TRACKING not in str(failure) and failure.message == "Encoded failure"
    decrypted = await decrypt_failure(converter, failure)
    assert TRACKING in decrypted.message and not decrypted.HasField("encoded_attributes")
    assert TRACKING in str(await converter.decode_failure(failure))
    plain = encrypted_converter(codec_k1(), encrypt_failures=False)
    failure = Failure()
    await plain.encode_failure(ApplicationError(f"no parcel {TRACKING}"), failure)
    assert TRACKING in failure.message


# ---------------------------------------------------------------------------------------------
# Key configuration


def test_generated_keys_are_32_random_bytes() -> None:
    a, b = generate_key(), generate_key()
    assert a != b and len(base64.b64decode(a)) == 32


def test_parse_keys_first_is_active() -> None:
    keys, active = parse_keys(f" {entry('k2', K2)} , {entry('k1', K1)} ")
    assert active == "k2" and keys == {"k2": K2, "k1": K1}
    urlsafe = base64.urlsafe_b64encode(K1).decode().rstrip("=")
    assert parse_keys(f"k1:{urlsafe}") == ({"k1": K1}, "k1")


def test_keys_from_env_and_file(tmp_path: Path) -> None:
    assert codec_from_env({}) is None
    codec = codec_from_env({KEYS_ENV: f"{entry('k2', K2)},{entry('k1', K1)}"})
    assert codec is not None and codec.key_ids == ["k2", "k1"]
    path = tmp_path / "keys"
    path.write_text(f"# newest first\n{entry('k3', K2)}\n\n{entry('k1', K1)}\n")
    codec = codec_from_env({KEYS_FILE_ENV: str(path)})
    assert codec is not None and codec.key_ids == ["k3", "k1"]


MALFORMED_KEYS = [
    ("", "holds no key"),
    (base64.b64encode(K1).decode(), "entry 1 is not 'id:base64key'"),
    (f"{entry('k1', K1)},k2:", "entry 2 is not 'id:base64key'"),
    (f"{base64.b64encode(K1).decode()}:k1", "key id of entry 1 is invalid"),
    ("k1:not base64!", "key 'k1' is not valid base64"),
    (entry("k1", K1[:20]), "key 'k1' is 20 bytes"),
    (f"{entry('k1', K1)},{entry('k1', K2)}", "'k1' appears twice"),
]


# Named by what they say, not by the random keys they hold: test ids must be the same
# in every process (pytest-xdist's workers each collect the suite and compare ids).
@pytest.mark.parametrize(("value", "needle"), MALFORMED_KEYS, ids=[n for _, n in MALFORMED_KEYS])
def test_malformed_keys_say_what_is_wrong_without_key_material(value: str, needle: str) -> None:
    with pytest.raises(ConfigError) as raised:
        codec_from_env({KEYS_ENV: value})
    message = str(raised.value)
    assert needle in message and KEYS_ENV in message
    for secret in (base64.b64encode(K1).decode(), base64.b64encode(K2).decode()):
        assert secret not in message and secret[:16] not in message


def test_key_file_and_variable_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="set only one"):
        codec_from_env({KEYS_ENV: entry("k1", K1), KEYS_FILE_ENV: "x"})
    with pytest.raises(ConfigError, match=r"cannot read RATCHET_ENCRYPTION_KEYS_FILE .*missing"):
        codec_from_env({KEYS_FILE_ENV: str(tmp_path / "missing")})
    with pytest.raises(ConfigError, match="set but empty"):
        codec_from_env({KEYS_FILE_ENV: ""})


async def test_connect_encrypts_when_keys_are_configured(
    temporal_env: WorkflowEnvironment, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = temporal_env.client.service_client.config.target_host
    monkeypatch.delenv(KEYS_ENV, raising=False)
    monkeypatch.delenv(KEYS_FILE_ENV, raising=False)
    assert (await ratchet.connect(target)).data_converter.payload_codec is None
    mine = codec_k1()
    assert (await ratchet.connect(target, codec=mine)).data_converter.payload_codec is mine
    monkeypatch.setenv(KEYS_ENV, entry("k1", K1))
    codec = (await ratchet.connect(target)).data_converter.payload_codec
    assert isinstance(codec, AesGcmCodec) and codec.key_ids == ["k1"]
    monkeypatch.setenv(KEYS_ENV, "k1:short")
    with pytest.raises(ConfigError, match="RATCHET_ENCRYPTION_KEYS: key 'k1'"):
        await ratchet.connect(target)


# ---------------------------------------------------------------------------------------------
# Real runs against the Temporal dev server

track_attempts: list[int] = []


@tool(max_attempts=3)
def track_parcel(tracking: str, ctx: ToolContext) -> str:
    """Track a parcel.

    Args:
        tracking: the tracking number.
    """
    track_attempts.append(ctx.attempt)
    if ctx.attempt == 1:
        raise RetryableToolError(f"{RETRY_TEXT} {tracking}")
    return f"parcel {tracking}: {RESULT_TEXT}"


def parcel_agent() -> Agent:
    return Agent(
        "parcels",
        instructions="You track parcels.",
        model="openai:gpt-test",
        tools=[track_parcel],
        limits=Limits(model_retry_initial_seconds=0.1, max_turns=4),
    )


async def run_parcel_agent(client: Client, model_server: ScriptedModelServer) -> str:
    """One run with a prompt, a tool call that is retried once, and a result; its id."""
    model_server.add(
        tool_calls(call("track_parcel", {"tracking": TRACKING})),
        reply(f"Your parcel was {RESULT_TEXT}."),
    )
    async with hosted(client, [parcel_agent()], model_server) as agents:
        handle = await agents.start("parcels", PROMPT)
        assert (await handle.result()).output == f"Your parcel was {RESULT_TEXT}."
    model_server.verify()
    return handle.id


def history_payloads(
    node: Any, path: tuple[str, ...] = ()
) -> Iterator[tuple[Any, tuple[str, ...]]]:
    """Every payload in a history's JSON form with its path, except the search attributes
    (indexed by the server, so never encrypted)."""
    if isinstance(node, dict):
        metadata = node.get("metadata")
        if isinstance(metadata, dict) and "encoding" in metadata:
            if "searchAttributes" not in path:
                yield node, path
            return
        for k, v in node.items():
            yield from history_payloads(v, (*path, k))
    elif isinstance(node, list):
        for v in node:
            yield from history_payloads(v, path)


def key_ids_in(history_json: Any) -> set[str]:
    """The key ids of a history's payloads, checking that every payload is encrypted.

    The only exception is the SDK's own marker bookkeeping (patch ids, local activity
    attempt counts): the local activity's result inside the marker is encrypted.
    """
    found = set()
    for p, path in history_payloads(history_json):
        if base64.b64decode(p["metadata"]["encoding"]) != ENCODING.encode():
            assert path[1:3] == ("markerRecordedEventAttributes", "details"), (path, p)
            assert path[3] in ("patch-data", "data"), (path, p)
            continue
        found.add(base64.b64decode(p["metadata"][KEY_ID_METADATA]).decode())
    return found


async def decrypted_text(history_json: Any, codec: AesGcmCodec) -> str:
    parts = []
    for p, _ in history_payloads(history_json):
        sealed = json_format.ParseDict(p, Payload())
        [plain] = await codec.decode([sealed])
        parts.append(plain.data.decode("utf-8", "replace"))
    return "\n".join(parts)


async def test_encrypted_history_is_unreadable_without_the_key(
    temporal_env: WorkflowEnvironment, model_server: ScriptedModelServer
) -> None:
    track_attempts.clear()
    codec = codec_k1()
    run_id = await run_parcel_agent(await connect_with(temporal_env, codec), model_server)
    assert track_attempts == [1, 2]
    assert all(r.api_key == API_KEY for r in model_server.requests)

    keyless = await connect_with(temporal_env, None)
    history = (await keyless.get_workflow_handle(run_id).fetch_history()).to_json_dict()
    raw = decoded_history_text(history)
    assert "ratchet.run_tool" in raw  # the history itself is there
    for secret in (PROMPT, "marmalade-umbrella", TRACKING, "Ottoline", RETRY_TEXT, API_KEY):
        assert secret not in raw, f"{secret!r} is readable in the raw history"
    assert "track_parcel" not in raw  # tool names, summaries and memos are encrypted too
    assert key_ids_in(history) == {"k1"}, "every payload is encrypted with the active key"
    assert len(list(history_payloads(history))) > 10

    plain = await decrypted_text(history, codec)
    for expected in (PROMPT, TRACKING, RESULT_TEXT, RETRY_TEXT, "track_parcel"):
        assert expected in plain
    assert API_KEY not in plain, "the API key never enters history, encrypted or not"

    with pytest.raises(Exception, match="binary/encrypted"):
        await build_trace(keyless, run_id)

    # The retried attempt's error is encrypted too; the key holder decrypts it.
    keyed = await connect_with(temporal_env, codec)
    [started] = [
        e.activity_task_started_event_attributes
        async for e in keyed.get_workflow_handle(run_id).fetch_history_events()
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED
        and e.activity_task_started_event_attributes.attempt == 2
    ]
    assert started.last_failure.message == "Encoded failure"
    failure = await decrypt_failure(keyed.data_converter, started.last_failure)
    assert f"{RETRY_TEXT} {TRACKING}" in failure.message
    assert started.last_failure.message == "Encoded failure", "the input is not modified"


async def test_key_holder_reads_result_trace_and_cli_trace(
    temporal_env: WorkflowEnvironment,
    model_server: ScriptedModelServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    client = await connect_with(temporal_env, codec_k1())
    run_id = await run_parcel_agent(client, model_server)

    handle = AgentClient(client).get(run_id)
    assert (await handle.result()).output == f"Your parcel was {RESULT_TEXT}."
    transcript = await handle.transcript()
    assert transcript[1].content == PROMPT

    # What `ratchet trace` does: connect() with the keys from the environment.
    monkeypatch.setenv(KEYS_ENV, entry("k1", K1))
    target = temporal_env.client.service_client.config.target_host
    trace = await build_trace(await ratchet.connect(target), run_id)
    assert trace.prompt == PROMPT
    [step] = [s for s in trace.steps if isinstance(s, ToolStep)]
    assert step.arguments == {"tracking": TRACKING}
    assert step.result is not None and RESULT_TEXT in step.result and step.attempts == 2

    # And the command itself, in a subprocess with the key in its environment.
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "ratchet.cli",
        "trace",
        run_id,
        "--address",
        target,
        "--json",
        cwd=ROOT,
        env={**os.environ, KEYS_ENV: entry("k1", K1)},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode == 0, err.decode()
    assert json.loads(out)["prompt"] == PROMPT


async def test_key_rotation(
    temporal_env: WorkflowEnvironment, model_server: ScriptedModelServer
) -> None:
    agent = Agent("rotating", instructions="Be brief.", model="openai:gpt-test")
    old = await connect_with(temporal_env, codec_k1())
    model_server.add(reply("written with k1"))
    async with hosted(old, [agent], model_server) as agents:
        old_run = (await agents.start("rotating", "first question")).id
        await agents.get(old_run).result()

    # Rotate: k2 is active, k1 only decrypts.
    rotated = await connect_with(temporal_env, AesGcmCodec({"k2": K2, "k1": K1}, "k2"))
    model_server.add(reply("written with k2"))
    async with hosted(rotated, [agent], model_server) as agents:
        new_run = (await agents.start("rotating", "second question")).id
        assert (await agents.get(new_run).result()).output == "written with k2"
        assert (await agents.get(old_run).result()).output == "written with k1"
    assert (await build_trace(rotated, old_run)).prompt == "first question"

    keyless = await connect_with(temporal_env, None)
    old_history = (await keyless.get_workflow_handle(old_run).fetch_history()).to_json_dict()
    new_history = (await keyless.get_workflow_handle(new_run).fetch_history()).to_json_dict()
    assert key_ids_in(old_history) == {"k1"}
    assert key_ids_in(new_history) == {"k2"}

    # A client that dropped k1 too early is told which key is missing.
    k2_only = await connect_with(temporal_env, AesGcmCodec({"k2": K2}, "k2"))
    assert (await build_trace(k2_only, new_run)).prompt == "second question"
    with pytest.raises(PayloadDecryptionError, match="key 'k1', which is not configured"):
        await build_trace(k2_only, old_run)


# ---------------------------------------------------------------------------------------------
# The codec server


@pytest.fixture
def codec_server() -> Iterator[CodecServer]:
    with CodecServer(codec_k1(), token=TOKEN, port=0) as server:
        yield server


def http(
    url: str, *, method: str = "POST", body: Any = None, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            status, got, raw = response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as e:
        status, got, raw = e.code, dict(e.headers), e.read()
    return status, got, json.loads(raw) if raw else None


def as_json(*values: Any) -> dict[str, Any]:
    payloads = pydantic_data_converter.payload_converter.to_payloads(list(values))
    return json_format.MessageToDict(Payloads(payloads=payloads))


AUTH = {"Authorization": f"Bearer {TOKEN}", "X-Namespace": "default"}


def test_codec_server_requires_the_bearer_token(codec_server: CodecServer) -> None:
    body = as_json("hello")
    for headers in (
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": TOKEN},
        {"Authorization": f"Basic {TOKEN}"},
    ):
        status, got, answer = http(f"{codec_server.url}/decode", body=body, headers=headers)
        assert status == 401, headers
        assert "payloads" not in answer
        assert got["WWW-Authenticate"].startswith("Bearer")
    # The UI can read the 401 (CORS headers are on errors too).
    status, got, _ = http(f"{codec_server.url}/decode", body=body, headers={"Origin": UI})
    assert status == 401 and got["Access-Control-Allow-Origin"] == UI


def test_codec_server_cors(codec_server: CodecServer) -> None:
    preflight = {
        "Origin": UI,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type,x-namespace",
    }
    status, got, _ = http(f"{codec_server.url}/decode", method="OPTIONS", headers=preflight)
    assert status == 204
    assert got["Access-Control-Allow-Origin"] == UI
    assert got["Access-Control-Allow-Credentials"] == "true"
    assert "POST" in got["Access-Control-Allow-Methods"]
    allowed = {h.strip().lower() for h in got["Access-Control-Allow-Headers"].split(",")}
    assert {"authorization", "content-type", "x-namespace"} <= allowed

    evil = {**preflight, "Origin": "http://evil.example"}
    status, got, _ = http(f"{codec_server.url}/decode", method="OPTIONS", headers=evil)
    assert status == 403 and "Access-Control-Allow-Origin" not in got
    status, got, _ = http(
        f"{codec_server.url}/decode",
        body=as_json("x"),
        headers={**AUTH, "Origin": "http://evil.example"},
    )
    assert status == 403 and "Access-Control-Allow-Origin" not in got

    with CodecServer(codec_k1(), token=TOKEN, port=0, origins=["https://ui.example/"]) as other:
        custom = {**preflight, "Origin": "https://ui.example"}
        status, got, _ = http(f"{other.url}/decode", method="OPTIONS", headers=custom)
        assert status == 204 and got["Access-Control-Allow-Origin"] == "https://ui.example"
        status, _, _ = http(f"{other.url}/decode", method="OPTIONS", headers=preflight)
        assert status == 403


def test_codec_server_encode_then_decode_round_trips(codec_server: CodecServer) -> None:
    original = as_json("hello", {"order_id": 1042, "note": PROMPT})
    headers = {**AUTH, "Origin": UI}
    status, got, encoded = http(f"{codec_server.url}/encode", body=original, headers=headers)
    assert status == 200 and got["Access-Control-Allow-Origin"] == UI
    assert len(encoded["payloads"]) == 2
    for p in encoded["payloads"]:
        assert base64.b64decode(p["metadata"]["encoding"]) == ENCODING.encode()
        assert PROMPT not in base64.b64decode(p["data"]).decode("latin-1")
    status, _, decoded = http(f"{codec_server.url}/decode", body=encoded, headers=headers)
    assert status == 200 and decoded == original
    # An endpoint configured with a path prefix works too.
    status, _, again = http(f"{codec_server.url}/codec/decode", body=encoded, headers=headers)
    assert status == 200 and again == original


def test_codec_server_errors(codec_server: CodecServer) -> None:
    status, _, answer = http(f"{codec_server.url}/decode", body={"payloads": 3}, headers=AUTH)
    assert status == 400 and "payloads" in answer["error"]
    status, _, _ = http(f"{codec_server.url}/other", body=as_json("x"), headers=AUTH)
    assert status == 404
    with CodecServer(AesGcmCodec({"k2": K2}, "k2"), token=TOKEN, port=0) as k2_only:
        _, _, sealed = http(f"{k2_only.url}/encode", body=as_json("x"), headers=AUTH)
    status, _, answer = http(f"{codec_server.url}/decode", body=sealed, headers=AUTH)
    assert status == 400 and "'k2'" in answer["error"]


def test_codec_server_without_token_is_loopback_only() -> None:
    with CodecServer(codec_k1(), token=None, port=0) as server:
        status, _, answer = http(f"{server.url}/encode", body=as_json("x"))
        assert status == 200 and len(answer["payloads"]) == 1
    with pytest.raises(ConfigError, match="without a token"):
        CodecServer(codec_k1(), token=None, host="0.0.0.0", port=0)


async def test_codec_server_decodes_a_real_history(
    temporal_env: WorkflowEnvironment,
    model_server: ScriptedModelServer,
    codec_server: CodecServer,
) -> None:
    run_id = await run_parcel_agent(await connect_with(temporal_env, codec_k1()), model_server)
    keyless = await connect_with(temporal_env, None)
    started = None
    async for event in keyless.get_workflow_handle(run_id).fetch_history_events():
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED:
            started = event.workflow_execution_started_event_attributes.input
            break
    assert started is not None
    body = json_format.MessageToDict(started)
    assert PROMPT not in json.dumps(body)
    status, _, decoded = await asyncio.to_thread(
        http, f"{codec_server.url}/decode", body=body, headers={**AUTH, "Origin": UI}
    )
    assert status == 200
    [p] = decoded["payloads"]
    assert base64.b64decode(p["metadata"]["encoding"]) == b"json/plain"
    assert json.loads(base64.b64decode(p["data"]))["prompt"] == PROMPT


def test_cli_generates_keys_and_refuses_to_serve_without_keys_or_token() -> None:
    def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
        clean = {k: v for k, v in os.environ.items() if not k.startswith("RATCHET_")}
        return subprocess.run(
            [sys.executable, "-m", "ratchet.cli", "codec-server", *args],
            cwd=ROOT,
            env={**clean, "COLUMNS": "200", **env},
            capture_output=True,
            text=True,
            timeout=60,
        )

    generated = cli("--generate-key", env={})
    assert generated.returncode == 0, generated.stderr
    keys, active = parse_keys(generated.stdout.strip())
    assert len(keys[active]) == 32

    # Without keys it still expands prompts; with --no-expand it has nothing to do.
    no_keys = cli("--no-expand", env={})
    assert no_keys.returncode == 1 and "set RATCHET_ENCRYPTION_KEYS" in no_keys.stderr
    no_token = cli(env={KEYS_ENV: generated.stdout.strip()})
    assert no_token.returncode == 1 and "RATCHET_CODEC_TOKEN" in no_token.stderr
    assert generated.stdout.strip().split(":", 1)[1] not in no_token.stderr
