"""Large payloads in S3: RATCHET_PAYLOAD_STORE=s3://BUCKET, across processes.

There is no AWS here: moto's S3 server stands in for S3 and speaks its HTTP API,
as the scripted server does for the model provider. Everything else is real: the
SDK's S3 driver, aioboto3 over HTTP, a `ratchet worker` process and the CLI.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer
from temporalio.client import Client

from ratchet import AgentClient, ConfigError, connect, payloads
from ratchet.local._proc import free_port
from ratchet.testing import ScriptedModelServer, call, reply, tool_calls

from .s3_app import RESULT_BYTES
from .test_cli import address, assert_clean_error, ratchet
from .workers import WorkerProcess, wait_for

BUCKET = "ratchet-payloads"


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """An S3 server with the bucket, configured for this process and its children."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=free_port(), verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    env = {
        "AWS_ACCESS_KEY_ID": "test-key",
        "AWS_SECRET_ACCESS_KEY": "test-secret",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL_S3": f"http://{host}:{port}",
        "RATCHET_PAYLOAD_STORE": f"s3://{BUCKET}",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    bucket = boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL_S3"])
    bucket.create_bucket(Bucket=BUCKET)
    try:
        yield bucket
    finally:
        server.stop()


def stored(bucket: Any) -> dict[str, int]:
    listing = bucket.list_objects_v2(Bucket=BUCKET)
    return {o["Key"]: o["Size"] for o in listing.get("Contents", [])}


async def test_a_5mb_tool_result_goes_to_s3_and_every_process_reads_it(
    s3: Any,
    temporal_client: Client,
    model_server: ScriptedModelServer,
    workers: list[Any],
    tmp_path: Path,
) -> None:
    model_server.add(
        tool_calls(call("export_everything", {"part": 1})),
        reply("Exported.").expecting(
            lambda r: len(r.messages[-1]["content"]) == RESULT_BYTES  # the whole result
        ),
    )
    queue = f"s3-{uuid.uuid4().hex[:8]}"
    # The worker process takes the bucket from its environment, like the client here.
    worker = WorkerProcess(
        address(temporal_client),
        queue,
        model_server,
        tmp_path,
        app="tests.s3_app:agents",
        env={"RATCHET_PAYLOAD_STORE": f"s3://{BUCKET}"},
    )
    workers.append(worker)
    wait_for(lambda: "Ctrl-C to stop" in Path(worker.log.name).read_text(), 60, "the worker")
    # It says where large payloads go, so a misconfigured worker is seen at a glance.
    assert f"payloads over 524,288 bytes go to s3://{BUCKET}" in Path(worker.log.name).read_text()

    client = AgentClient(await connect(address(temporal_client)), task_queue=queue)
    handle = await client.start("exporter", "export")
    result = await handle.result()
    transcript = await handle.transcript()
    assert result.output == "Exported."
    assert len(transcript[-2].content or "") == RESULT_BYTES

    # The history holds references; the bytes are in the bucket, under the namespace.
    history = await temporal_client.get_workflow_handle(handle.id).fetch_history()
    assert max(e.ByteSize() for e in history.events) < 100_000
    objects = stored(s3)
    assert sum(objects.values()) > RESULT_BYTES, objects
    assert all(key.startswith("v0/ns/default/") for key in objects), objects

    # Another process (the CLI) reads them back through the same setting.
    traced = await ratchet("trace", handle.id, "--address", address(temporal_client))
    assert traced.returncode == 0, traced.stderr
    assert "export_everything" in traced.stdout and "Exported." in traced.stdout
    assert "result: yyyyyyyy" in traced.stdout  # the tool's result, read from the bucket
    assert traced.stderr == "", traced.stderr  # e.g. no warning about an unclosed S3 client
    # Without the setting the CLI cannot read them, and says what to set.
    off = await ratchet(
        "trace",
        handle.id,
        "--address",
        address(temporal_client),
        env={"RATCHET_PAYLOAD_STORE": "off"},
    )
    assert_clean_error(off, "RATCHET_PAYLOAD_STORE is off here", "s3://BUCKET")
    # The default (local files) is another kind of store: also said, not a traceback.
    local = await ratchet(
        "trace",
        handle.id,
        "--address",
        address(temporal_client),
        env={"RATCHET_PAYLOAD_STORE": str(tmp_path / "local-payloads")},
    )
    assert_clean_error(local, "in a store not set up here", "aws.s3driver")
    # Objects gone (say, expired by a lifecycle rule): the read failure is explained.
    for key in objects:
        s3.delete_object(Bucket=BUCKET, Key=key)
    gone = await ratchet("trace", handle.id, "--address", address(temporal_client))
    assert_clean_error(gone, "cannot read this run's large payloads from S3", "lifecycle")


def test_the_s3_client_is_closed_when_its_event_loop_ends(s3: Any) -> None:
    # Without closing, aiohttp warns "Unclosed client session" for each loop's client
    # when it is collected (at exit here; at the second loop in a script running two).
    script = (
        "import asyncio, gc\n"
        "from ratchet.payloads import check_external_storage, external_storage_from_env\n"
        "storage = external_storage_from_env()\n"
        "asyncio.run(check_external_storage(storage))\n"
        "asyncio.run(check_external_storage(storage))\n"
        "gc.collect()\n"
        "print('checked twice')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0 and "checked twice" in done.stdout, done.stderr
    assert "Unclosed" not in done.stderr, done.stderr


async def test_an_unusable_bucket_fails_at_connect_saying_what_to_do(
    s3: Any, temporal_client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    where = address(temporal_client)
    monkeypatch.setenv("RATCHET_PAYLOAD_STORE", "s3://no-such-bucket")
    with pytest.raises(ConfigError, match=r"s3://no-such-bucket: the bucket does not exist"):
        await connect(where)
    assert_clean_error(
        await ratchet("ls", "--address", where),
        "RATCHET_PAYLOAD_STORE=s3://no-such-bucket: the bucket does not exist",
    )
    monkeypatch.setenv("RATCHET_PAYLOAD_STORE", "s3://Bad_Name/prefix")
    with pytest.raises(ConfigError, match=r"bad S3 bucket name 'Bad_Name/prefix'"):
        await connect(where)
    # Nothing listens here: connect says S3 is unreachable instead of hanging in retries.
    monkeypatch.setenv("RATCHET_PAYLOAD_STORE", f"s3://{BUCKET}")
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", f"http://127.0.0.1:{free_port()}")
    with pytest.raises(ConfigError, match=r"the S3 check failed \(Could not connect"):
        await connect(where)
    # Something accepts connections but never answers: the check gives up (after 15 s;
    # 1 s here) instead of hanging every command for botocore's minutes of retries.
    monkeypatch.setattr(payloads, "_CHECK_SECONDS", 1.0)
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        monkeypatch.setenv("AWS_ENDPOINT_URL_S3", f"http://127.0.0.1:{silent.getsockname()[1]}")
        with pytest.raises(ConfigError, match=r"S3 did not answer within 1 s.*=off for commands"):
            await connect(where)
