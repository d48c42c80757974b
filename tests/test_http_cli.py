"""`ratchet keys` and `ratchet serve` in real subprocesses."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from pathlib import Path

import httpx2 as httpx
from temporalio.client import Client

from ratchet.testing import ScriptedModelServer, reply

from .conftest import ROOT, default_sigint, hosted
from .http_kit import agents, bearer, read_sse
from .test_cli import assert_clean_error, ratchet


async def test_keys_are_created_once_listed_and_revoked(tmp_path: Path) -> None:
    env = {"RATCHET_API_KEYS": str(tmp_path / "keys.sqlite")}
    created = await ratchet(
        "keys", "create", "--name", "alice", "--role", "approver", "--tenant", "acme", env=env
    )
    assert created.returncode == 0, created.stderr
    secret = created.stdout.strip()
    assert secret.startswith("rk_") and len(secret) > 40
    assert "shown only now" in created.stderr
    key_id = created.stderr.split()[2]

    listed = await ratchet("keys", "ls", env=env)
    assert listed.returncode == 0
    [header, row] = listed.stdout.splitlines()
    assert header.split()[:4] == ["ID", "NAME", "ROLE", "TENANT"]
    assert row.split()[:4] == [key_id, "alice", "approver", "acme"]
    assert secret not in listed.stdout
    assert secret.encode() not in (tmp_path / "keys.sqlite").read_bytes()

    revoked = await ratchet("keys", "revoke", key_id, env=env)
    assert revoked.returncode == 0 and "revoked" in revoked.stdout
    assert (await ratchet("keys", "ls", env=env)).stdout.splitlines()[1].split()[-1] != "-"

    assert_clean_error(
        await ratchet("keys", "create", "--name", "x", "--role", "root", env=env),
        "unknown role 'root'",
    )
    assert_clean_error(await ratchet("keys", "revoke", "nope", env=env), "no key with id")


async def test_serve_and_keys_have_help() -> None:
    for command in (["serve"], ["keys"], ["keys", "create"]):
        result = await ratchet(*command, "--help")
        assert result.returncode == 0 and "Usage" in result.stdout, result.stderr
    assert "--app" in (await ratchet("serve", "--help")).stdout


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def test_serve_runs_the_api_on_loopback(
    temporal_client: Client, model_server: ScriptedModelServer, tmp_path: Path
) -> None:
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "RATCHET_API_KEYS": str(tmp_path / "keys.sqlite"),
        "RATCHET_DATA_DIR": str(tmp_path / "data"),
    }
    made = await ratchet("keys", "create", "--name", "ops", "--role", "operator", env=env)
    key = made.stdout.strip()
    port = free_port()
    model_server.add(reply("Served."))
    async with hosted(temporal_client, agents(), model_server) as client:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "ratchet.cli",
            "serve",
            "--app",
            "tests.http_kit:agents",
            "--port",
            str(port),
            "--address",
            temporal_client.service_client.config.target_host,
            "--task-queue",
            client.task_queue,
            cwd=ROOT,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            preexec_fn=default_sigint,  # stopped with SIGINT below
        )
        try:
            url = f"http://127.0.0.1:{port}"
            async with httpx.AsyncClient(base_url=url, headers=bearer(key), timeout=30) as http:
                for _ in range(600):
                    try:
                        if (await http.get("/v1/openapi.json")).status_code == 200:
                            break
                    except httpx.TransportError:
                        await asyncio.sleep(0.1)
                else:
                    raise AssertionError("ratchet serve did not come up")
                started = await http.post("/v1/runs", json={"agent": "helper", "prompt": "hi"})
                assert started.status_code == 201, started.text
                run_id = started.json()["id"]
                async with http.stream("GET", f"/v1/runs/{run_id}/events") as response:
                    events = [e async for e in read_sse(response)]
                me = (await http.get("/v1/me")).json()
                listening = listeners(port)
        finally:
            proc.send_signal(signal.SIGINT)
            stdout, stderr = await asyncio.wait_for(proc.communicate(), timeout=30)
    assert events[-1].event == "run_finished" and events[-1].json()["output"] == "Served."
    assert me["principal"] == "ops" and me["role"] == "operator"
    assert f"on http://127.0.0.1:{port}/v1" in stdout.decode()
    # Ctrl-C stops it gracefully, as it stops every command (exit status 130).
    assert proc.returncode == 130 and "Traceback" not in stderr.decode(), stderr.decode()
    assert listening == {"127.0.0.1"}  # loopback only, by default


def listeners(port: int) -> set[str]:
    """The local addresses with a socket listening on ``port`` (from /proc/net/tcp)."""
    found = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        address, _, hex_port = local.partition(":")
        if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
            found.add(socket.inet_ntoa(bytes.fromhex(address)[::-1]))
    return found


async def test_serve_on_a_taken_port_says_so_in_one_line(
    temporal_client: Client, tmp_path: Path
) -> None:
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "RATCHET_API_KEYS": str(tmp_path / "keys.sqlite"),
        "RATCHET_DATA_DIR": str(tmp_path / "data"),
    }
    await ratchet("keys", "create", "--name", "ops", "--role", "operator", env=env)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = await ratchet(
            "serve",
            "--app",
            "tests.http_kit:agents",
            "--port",
            str(port),
            "--address",
            temporal_client.service_client.config.target_host,
            env=env,
        )
    assert_clean_error(result, f"cannot serve on 127.0.0.1:{port}", "--port")
    assert "ratchet API for" not in result.stdout
