"""kill -9 of real worker processes: the run finishes, nothing recorded is redone,
the side effect is applied exactly once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from examples.support import db
from temporalio.testing import WorkflowEnvironment

from ratchet import AgentClient
from ratchet.testing import ScriptedModelServer, call, hang, reply, tool_calls

from .conftest import API_KEY, ROOT


class WorkerProcess:
    """`ratchet worker` in a subprocess, hosting tests.crash_app."""

    def __init__(
        self,
        address: str,
        queue: str,
        server: ScriptedModelServer,
        tmp: Path,
        *,
        pause_in_refund: bool = False,
    ) -> None:
        env = {
            **os.environ,
            "OPENAI_BASE_URL": server.base_url,
            "OPENAI_API_KEY": API_KEY,
            "SUPPORT_DB": str(tmp / "shop.sqlite"),
            "CRASH_LOG": str(tmp / "tools.log"),
            "PYTHONPATH": str(ROOT),
        }
        env.pop("CRASH_PAUSE_IN_REFUND", None)
        if pause_in_refund:
            env["CRASH_PAUSE_IN_REFUND"] = "1"
        self.log = (tmp / f"worker-{uuid.uuid4().hex[:6]}.log").open("w")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "ratchet.cli",
                "worker",
                "--app",
                "tests.crash_app:agents",
                "--task-queue",
                queue,
                "--address",
                address,
            ],
            env=env,
            cwd=ROOT,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def kill9(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


@pytest.fixture
def workers() -> Iterator[list[WorkerProcess]]:
    started: list[WorkerProcess] = []
    yield started
    for w in started:
        w.stop()


def tool_log(tmp: Path) -> list[str]:
    path = tmp / "tools.log"
    return path.read_text().splitlines() if path.exists() else []


def wait_for(predicate, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.05)


async def test_kill9_during_model_call(
    temporal_env: WorkflowEnvironment,
    model_server: ScriptedModelServer,
    tmp_path: Path,
    workers: list[WorkerProcess],
) -> None:
    address = temporal_env.client.service_client.config.target_host
    queue = f"crash-{uuid.uuid4().hex[:8]}"
    model_server.add(
        tool_calls(call("lookup", {"order_id": 1042})),
        hang(),  # turn 2, first attempt: the worker dies while this call is in flight
        reply("Order 1042 has shipped."),
    )
    workers.append(WorkerProcess(address, queue, model_server, tmp_path))
    client = AgentClient(temporal_env.client, task_queue=queue)
    handle = await client.start("crashy", "Where is order 1042?")

    await model_server.wait_for_requests_async(2, timeout=30)
    workers[0].kill9()
    workers.append(WorkerProcess(address, queue, model_server, tmp_path))

    result = await handle.result()
    assert result.output == "Order 1042 has shipped."
    model_server.verify()
    assert len(model_server.requests) == 3, "turn 1's model call was executed again"
    assert tool_log(tmp_path) == ["lookup 1042"], "a recorded tool call was executed again"
    transcript = await handle.transcript()
    assert [m.role for m in transcript] == ["system", "user", "assistant", "tool", "assistant"]


async def test_kill9_during_side_effecting_tool(
    temporal_env: WorkflowEnvironment,
    model_server: ScriptedModelServer,
    tmp_path: Path,
    workers: list[WorkerProcess],
) -> None:
    address = temporal_env.client.service_client.config.target_host
    queue = f"crash-{uuid.uuid4().hex[:8]}"
    model_server.add(
        tool_calls(call("refund", {"order_id": 1043})),
        reply("Your refund is on its way."),
    )
    workers.append(WorkerProcess(address, queue, model_server, tmp_path, pause_in_refund=True))
    client = AgentClient(temporal_env.client, task_queue=queue)
    handle = await client.start("crashy", "Please refund order 1043.")

    # The refund row is written; the worker dies before the activity completes.
    wait_for(
        lambda: any(line.startswith("refund") for line in tool_log(tmp_path)),
        30,
        "the refund tool to run",
    )
    workers[0].kill9()
    workers.append(WorkerProcess(address, queue, model_server, tmp_path))

    result = await handle.result()
    assert result.output == "Your refund is on its way."
    model_server.verify()
    attempts = [line for line in tool_log(tmp_path) if line.startswith("refund")]
    assert len(attempts) == 2, attempts  # at-least-once: the tool really ran twice...
    assert attempts[0].split(" key ")[1] == attempts[1].split(" key ")[1]  # ...with one key
    assert db.refunds_for(1043, tmp_path / "shop.sqlite") == 1  # ...and refunded once
    transcript = await handle.transcript()
    assert [m.role for m in transcript] == ["system", "user", "assistant", "tool", "assistant"]
