"""A stopping worker drains: on SIGTERM it stops taking work, lets the calls in flight
finish for up to ``--drain-seconds``, says so, and exits 0; what it cannot finish, or a
second signal cuts off, another worker redoes with the same idempotency key. Real
`ratchet worker` processes against the dev server."""

from __future__ import annotations

import asyncio
import re
import signal
import time
from pathlib import Path

import pytest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from ratchet import AgentClient, ConfigError
from ratchet.testing import ScriptedModelServer, call, reply, tool_calls
from ratchet.worker import WorkerSettings

from .crash_app import agents
from .workers import WorkerProcess, tool_log, wait_for

SETTLING = next(a for a in agents if a.name == "settling")


def log_of(worker: WorkerProcess) -> str:
    """What the worker printed so far (it writes to the file itself)."""
    return Path(worker.log.name).read_text()


async def settle_run(
    temporal_env: WorkflowEnvironment,
    model_server: ScriptedModelServer,
    tmp_path: Path,
    seconds: float,
    *,
    drain: str,
    tool: str = "settle",
    finishes: bool = True,
) -> tuple[AgentClient, str, WorkerProcess]:
    """A run of ``settling`` whose ``tool`` call is in flight on a fresh worker
    (``finishes``: the model then answers, for a run that is not cancelled)."""
    model_server.add(tool_calls(call(tool, {"order_id": 7, "seconds": seconds})))
    if finishes:
        model_server.add(reply("Settled."))
    queue = f"drain-{tmp_path.name[-12:]}"
    address = temporal_env.client.service_client.config.target_host
    worker = WorkerProcess(address, queue, model_server, tmp_path, args=["--drain-seconds", drain])
    client = AgentClient(temporal_env.client, task_queue=queue)
    await asyncio.to_thread(
        wait_for, lambda: "Ctrl-C to stop" in log_of(worker), 60, "the worker to start"
    )
    handle = await client.start("settling", "settle order 7", id=f"drain-{queue}")
    await asyncio.to_thread(
        wait_for,
        lambda: any("start attempt 1" in line for line in tool_log(tmp_path)),
        30,
        "the settle call to start",
    )
    return client, handle.id, worker


def settles(tmp_path: Path) -> list[str]:
    """The settle calls' log lines, without their keys."""
    return [line.split(" key ")[0] for line in tool_log(tmp_path) if line.startswith("settle")]


async def failure_before_attempt_2(client: Client, run_id: str) -> str:
    """The failure the server recorded for the tool call's first attempt."""
    async for event in client.get_workflow_handle(run_id).fetch_history_events():
        started = event.activity_task_started_event_attributes
        if event.HasField("activity_task_started_event_attributes") and started.attempt == 2:
            failure = started.last_failure
            return f"{failure.application_failure_info.type}: {failure.message}"
    raise AssertionError(f"run {run_id} has no second attempt of an activity")


async def test_sigterm_lets_the_call_in_flight_finish(
    temporal_env: WorkflowEnvironment, model_server: ScriptedModelServer, tmp_path: Path
) -> None:
    client, run_id, first = await settle_run(temporal_env, model_server, tmp_path, 3, drain="10")
    address = temporal_env.client.service_client.config.target_host
    stopped_at = time.monotonic()
    first.proc.send_signal(signal.SIGTERM)
    second = WorkerProcess(address, client.task_queue, model_server, tmp_path)
    try:
        await asyncio.to_thread(first.proc.wait, 30)
        took = time.monotonic() - stopped_at
        result = await client.get(run_id).result()
    finally:
        second.stop()
        first.stop()
    log = log_of(first)
    assert first.proc.returncode == 0, log
    assert "worker stopping: letting 1 call in flight finish (up to 10 s;" in log, log
    assert log.rstrip().endswith("worker stopped"), log
    # The call ran once, to its end, on the stopping worker: nothing was redone.
    assert settles(tmp_path) == ["settle 7 start attempt 1", "settle 7 done attempt 1"]
    assert took >= 1  # it waited for the call (about 3 s from its start)...
    assert result.output == "Settled."  # ...and another worker finished the run.
    model_server.verify()


@pytest.mark.parametrize("tool", ["settle", "settle_sync"])
async def test_a_call_longer_than_the_drain_is_handed_back_and_redone_with_its_key(
    temporal_env: WorkflowEnvironment, model_server: ScriptedModelServer, tmp_path: Path, tool: str
) -> None:
    client, run_id, first = await settle_run(
        temporal_env, model_server, tmp_path, 600, drain="1", tool=tool
    )
    address = temporal_env.client.service_client.config.target_host
    stopped_at = time.monotonic()
    first.proc.send_signal(signal.SIGTERM)
    try:
        await asyncio.to_thread(first.proc.wait, 30)
        took = time.monotonic() - stopped_at
        second = WorkerProcess(address, client.task_queue, model_server, tmp_path)
        try:
            result = await client.get(run_id).result()
        finally:
            second.stop()
    finally:
        first.stop()
    log = log_of(first)
    assert first.proc.returncode == 0, log
    assert "(up to 1 s;" in log and "worker stopped" in log, log
    assert "worker stopped; handed back 1 call still running after the drain" in log, log
    if tool == "settle_sync":  # its thread still sleeps: the worker leaves it, says so
        assert "leaving 1 sync tool call(s) that are still running" in log, log
    # It waited the drain, then cut the call off, not after the call's 600 s.
    assert 1 <= took < 15, took
    assert settles(tmp_path)[-2:] == ["settle 7 start attempt 2", "settle 7 done attempt 2"]
    assert settles(tmp_path).count("settle 7 done attempt 1") == 0
    keys = {line.split(" key ")[1] for line in tool_log(tmp_path) if line.startswith("settle")}
    assert len(keys) == 1  # the redo had the same idempotency key
    # The stopping worker handed the call back (no wait for the 30 s heartbeat timeout).
    assert "WorkerShutdown" in await failure_before_attempt_2(temporal_env.client, run_id)
    assert result.output == "Settled."
    model_server.verify()


async def test_a_second_ctrl_c_stops_at_once(
    temporal_env: WorkflowEnvironment, model_server: ScriptedModelServer, tmp_path: Path
) -> None:
    client, run_id, first = await settle_run(
        temporal_env, model_server, tmp_path, 600, drain="30", finishes=False
    )
    first.proc.send_signal(signal.SIGINT)
    try:
        await asyncio.to_thread(
            wait_for, lambda: "worker stopping" in log_of(first), 30, "the drain to begin"
        )
        stopped_at = time.monotonic()
        first.proc.send_signal(signal.SIGINT)
        await asyncio.to_thread(first.proc.wait, 30)
        took = time.monotonic() - stopped_at
    finally:
        first.stop()
        await client.get(run_id).cancel()
    log = log_of(first)
    # Ended by the signal's default action, not by a KeyboardInterrupt unwinding
    # through the drain (which would wait for the 30 s drain and the call).
    assert first.proc.returncode == -signal.SIGINT, log
    assert took < 10, took
    assert "Traceback" not in log, log


def test_a_bad_drain_is_refused_with_the_flag_named() -> None:
    for bad in (-1.0, float("nan"), float("inf"), 1e14, "10", True):
        with pytest.raises(ConfigError, match=re.escape("--drain-seconds, or RATCHET_DRAIN")):
            WorkerSettings(agents=(SETTLING,), drain_seconds=bad)  # type: ignore[arg-type]
    assert WorkerSettings(agents=(SETTLING,)).drain_seconds == 10
    assert WorkerSettings(agents=(SETTLING,), drain_seconds=0).drain_seconds == 0


async def test_no_calls_in_flight_stops_at_once(
    temporal_client: Client, model_server: ScriptedModelServer, tmp_path: Path
) -> None:
    address = temporal_client.service_client.config.target_host
    worker = WorkerProcess(address, f"idle-{tmp_path.name[-12:]}", model_server, tmp_path)
    try:
        await asyncio.to_thread(
            wait_for, lambda: "Ctrl-C to stop" in log_of(worker), 60, "the worker to start"
        )
        worker.proc.send_signal(signal.SIGINT)
        await asyncio.to_thread(worker.proc.wait, 30)
    finally:
        worker.stop()
    log = log_of(worker)
    assert worker.proc.returncode == 0, log
    assert "worker stopping: no calls in flight" in log and "worker stopped" in log, log
    assert "Traceback" not in log
