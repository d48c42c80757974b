"""The `ratchet` command in real subprocesses: output, exit codes, clear one-line errors."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import pytest
from temporalio.client import Client

from ratchet.testing import ScriptedModelServer, call, reply, tool_calls

from .conftest import ROOT, hosted
from .scenarios import AGENT


async def ratchet(
    *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the CLI without blocking the event loop (the in-process worker must keep polling)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "ratchet.cli",
        *args,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200", **(env or {})},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode is not None
    return subprocess.CompletedProcess(args, proc.returncode, stdout.decode(), stderr.decode())


def assert_clean_error(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert result.returncode != 0, result
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def address(client: Client) -> str:
    return client.service_client.config.target_host


@pytest.mark.parametrize(
    "command", ["up", "down", "worker", "run", "fork", "ls", "show", "cancel", "limits"]
)
async def test_every_command_has_help(command: str) -> None:
    result = await ratchet(command, "--help")
    assert result.returncode == 0, result.stderr
    assert "Usage" in result.stdout


async def test_run_follows_progress_and_prints_the_answer(
    temporal_client: Client, model_server: ScriptedModelServer
) -> None:
    model_server.add(
        tool_calls(call("lookup_order", {"order_id": 1042})), reply("Order 1042 has shipped.")
    )
    async with hosted(temporal_client, [AGENT], model_server) as client:
        result = await ratchet(
            "run",
            "golden",
            "Where is order 1042?",
            "--id",
            "cli-run-1",
            "--address",
            address(temporal_client),
            "--task-queue",
            client.task_queue,
        )
        assert result.returncode == 0, result.stderr
        assert "call lookup_order(order_id=1042)" in result.stdout
        assert 'tool      lookup_order result: {"id": 1042, "status": "shipped"}' in result.stdout
        assert "answer: Order 1042 has shipped." in result.stdout
        assert "cli-run-1" in result.stdout

        shown = await ratchet("show", "cli-run-1", "--address", address(temporal_client))
        assert shown.returncode == 0, shown.stderr
        assert "status:  completed" in shown.stdout
        assert "answer:  Order 1042 has shipped." in shown.stdout
        assert "turns:   2, tool calls: 1" in shown.stdout

        # `ratchet ls` reads visibility, which lags a little behind the run.
        for _ in range(100):
            listed = await ratchet("ls", "--agent", "golden", "--address", address(temporal_client))
            if "cli-run-1" in listed.stdout and "completed" in listed.stdout:
                break
            await asyncio.sleep(0.3)
        assert "cli-run-1" in listed.stdout and "completed" in listed.stdout
    model_server.verify()


async def test_no_wait_prints_the_run_id(
    temporal_client: Client, model_server: ScriptedModelServer
) -> None:
    model_server.add(reply("hi"))
    async with hosted(temporal_client, [AGENT], model_server) as client:
        result = await ratchet(
            "run",
            "golden",
            "hello",
            "--no-wait",
            "--id",
            "cli-nowait",
            "--address",
            address(temporal_client),
            "--task-queue",
            client.task_queue,
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == "cli-nowait"
        assert (await client.get("cli-nowait").result()).output == "hi"


async def test_unknown_agent(temporal_client: Client, model_server: ScriptedModelServer) -> None:
    async with hosted(temporal_client, [AGENT], model_server) as client:
        result = await ratchet(
            "run",
            "nosuchagent",
            "hi",
            "--address",
            address(temporal_client),
            "--task-queue",
            client.task_queue,
        )
    assert_clean_error(result, "UnknownAgent", "nosuchagent", "hosted agents: golden")


async def test_unreachable_server() -> None:
    result = await ratchet("ls", "--address", "127.0.0.1:1")
    assert_clean_error(result, "cannot reach the Temporal server at 127.0.0.1:1", "ratchet up")


async def test_bad_model_string() -> None:
    result = await ratchet("run", "golden", "hi", "--model", "gpt4", "--address", "127.0.0.1:1")
    assert_clean_error(result, "bad model string 'gpt4'")


async def test_empty_prompt() -> None:
    result = await ratchet("run", "golden", "  ", "--address", "127.0.0.1:1")
    assert_clean_error(result, "prompt is empty")


async def test_unknown_run_id(temporal_client: Client) -> None:
    result = await ratchet("show", "no-such-run", "--address", address(temporal_client))
    assert_clean_error(result, "no run with id 'no-such-run'")


async def test_bad_app_spec() -> None:
    result = await ratchet("worker", "--app", "examples.support", "--address", "127.0.0.1:1")
    assert_clean_error(result, "bad app spec")
    result = await ratchet("worker", "--app", "examples.nope:agent", "--address", "127.0.0.1:1")
    assert_clean_error(result, "cannot import module 'examples.nope'")
