"""Embedded services (ratchet.local) against real processes: temporal dev server, llama-server."""

from __future__ import annotations

import asyncio
import errno
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
from temporalio.client import Client, WorkflowExecutionStatus

from ratchet.local import (
    LOCAL_MODEL_NAME,
    LlamaServer,
    LocalServiceError,
    TemporalDevServer,
    down,
    ensure_llama_server,
    local_llm_base_url,
    smollm2_model_path,
    state_file_path,
    status,
    up,
)
from ratchet.local._llm import default_llm_threads
from ratchet.local._proc import free_port


def pid_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().rpartition(")")[2].split()[0] == "Z")


@pytest.fixture
def local_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Isolated RATCHET_DATA_DIR; whatever up() started is stopped even if the test fails."""
    data = tmp_path / "data"
    monkeypatch.setenv("RATCHET_DATA_DIR", str(data))
    monkeypatch.delenv("RATCHET_LOCAL_LLM_URL", raising=False)
    yield data
    down(timeout=5)


def make_temporal(tmp_path: Path, port: int | None = None) -> TemporalDevServer:
    return TemporalDevServer(
        db_path=tmp_path / "temporal.sqlite",
        log_path=tmp_path / "temporal.log",
        port=port or free_port(),
        ui_port=None,  # headless: one port less to collide with parallel test runs
    )


async def test_temporal_dev_server_start_connect_stop(tmp_path: Path) -> None:
    server = TemporalDevServer(
        db_path=tmp_path / "t.sqlite",
        log_path=tmp_path / "t.log",
        port=free_port(),
        ui_port=free_port(),
    )
    with server:
        assert server.address.startswith("127.0.0.1:")
        assert server.ui_url is not None and server.ui_url.startswith("http://127.0.0.1:")
        pid = server.pid
        assert pid is not None
        client = await Client.connect(server.address)
        assert await client.service_client.check_health()
    assert server.pid is None
    assert not pid_running(pid)
    assert (tmp_path / "t.sqlite").exists()
    assert "ratchet starting" in (tmp_path / "t.log").read_text()


async def test_temporal_data_survives_sigkill(tmp_path: Path) -> None:
    port = free_port()
    first = make_temporal(tmp_path, port)
    with first:
        client = await Client.connect(first.address)
        # No worker polls this queue: the workflow just stays RUNNING, which is
        # all we need to check that the server's state is persisted.
        handle = await client.start_workflow(
            "NoSuchWorkflow", id="survives-sigkill", task_queue="nobody-polls-this"
        )
        run_id = handle.result_run_id
        first.kill()
        assert first.pid is None

        with make_temporal(tmp_path, port) as second:
            client = await Client.connect(second.address)
            desc = await client.get_workflow_handle("survives-sigkill").describe()
            assert desc.run_id == run_id
            assert desc.status == WorkflowExecutionStatus.RUNNING
            # Visibility is eventually consistent; give it a moment.
            for _ in range(300):  # up to 30 s on a busy machine
                ids = [wf.id async for wf in client.list_workflows()]
                if "survives-sigkill" in ids:
                    break
                await asyncio.sleep(0.1)
            assert "survives-sigkill" in ids


def test_temporal_dev_server_reports_port_in_use(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        server = make_temporal(tmp_path, sock.getsockname()[1])
        with pytest.raises(LocalServiceError, match="already in use"):
            server.start()
    assert server.pid is None


def test_temporal_dev_server_early_exit_shows_log(tmp_path: Path) -> None:
    server = TemporalDevServer(
        db_path=None,
        log_path=tmp_path / "t.log",
        port=free_port(),
        ui_port=None,
        extra_args=("--no-such-flag",),
    )
    with pytest.raises(
        LocalServiceError, match=r"(?s)exited with code 1.*unknown flag: --no-such-flag"
    ):
        server.start(timeout=20)
    assert server.pid is None


def test_free_port_is_kept_out_of_automatic_port_picks() -> None:
    # CI once lost a dev server start because the port chosen for its front end
    # was handed out again (to the server's own internal ports) before it bound
    # it. free_port leaves the port in TIME_WAIT: a plain bind, as the OS's own
    # picks do, is refused, while a server binding it with SO_REUSEADDR can.
    port = free_port()
    with socket.socket() as plain, pytest.raises(OSError) as refused:
        plain.bind(("127.0.0.1", port))
    assert refused.value.errno == errno.EADDRINUSE
    with socket.socket() as server:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", port))
        server.listen()


def test_a_crash_at_start_shows_its_cause_not_the_stack_trace(tmp_path: Path) -> None:
    # A stand-in binary that fails the way the dev server did in CI: an error
    # line, then a Go panic with a long stack trace. The cause must be in the
    # error; a plain tail showed only stack frames.
    fake = tmp_path / "temporal"
    frames = "\n".join(f"go.uber.org/dig.frame{i}(0x0)\n\t/dig/file.go:{i}" for i in range(40))
    fake.write_text(
        "#!/bin/sh\n"
        'echo \'time=2026 level=ERROR msg="Failed to start gRPC listener" '
        'error="listen tcp 127.0.0.1:1: bind: address already in use"\'\n'
        "echo 'panic: runtime error: invalid memory address or nil pointer dereference'\n"
        "echo '[signal SIGSEGV: segmentation violation code=0x1 addr=0x20 pc=0x2bb0889]'\n"
        "echo\n"
        "echo 'goroutine 1 [running]:'\n"
        f"cat <<'EOF'\n{frames}\nEOF\n"
        "exit 2\n"
    )
    fake.chmod(0o755)
    server = TemporalDevServer(
        db_path=None, log_path=tmp_path / "t.log", port=free_port(), ui_port=None, binary=fake
    )
    with pytest.raises(LocalServiceError) as failed:
        server.start(timeout=20)
    message = str(failed.value)
    assert "exited with code 2" in message
    assert "Failed to start gRPC listener" in message
    assert "bind: address already in use" in message
    assert "panic: runtime error" in message
    assert "goroutine 1" not in message and "frame39" not in message
    assert f"stack trace omitted; it is in {tmp_path / 't.log'}" in message

    # The log is appended to: a later start that fails otherwise shows its own cause,
    # not the earlier panic.
    fake.write_text("#!/bin/sh\necho 'Error: unknown flag: --bogus'\nexit 1\n")
    with pytest.raises(LocalServiceError) as again:
        server.start(timeout=20)
    assert "unknown flag: --bogus" in str(again.value)
    assert "panic" not in str(again.value) and "gRPC listener" not in str(again.value)


async def test_up_reuses_and_down_stops_temporal(local_dirs: Path) -> None:
    port, ui_port = free_port(), free_port()
    messages: list[str] = []
    services = up(
        temporal=True,
        llm=False,
        on_progress=messages.append,
        temporal_port=port,
        temporal_ui_port=ui_port,
    )
    assert services.temporal_address == f"127.0.0.1:{port}"
    assert services.ui_url == f"http://127.0.0.1:{ui_port}"
    assert services.llm_base_url is None
    assert any("starting" in m for m in messages)
    first = status()["temporal"]
    assert first.running and first.managed and first.pid is not None
    assert (local_dirs / "temporal.sqlite").exists()
    assert state_file_path() == local_dirs / "services.json"

    client = await Client.connect(services.temporal_address)
    assert await client.service_client.check_health()

    again = up(temporal=True, llm=False, temporal_port=port, temporal_ui_port=ui_port)
    assert again == services
    assert status()["temporal"].pid == first.pid

    assert local_llm_base_url() is None  # no LLM recorded

    lines = down()
    assert any("stopped" in line and str(first.pid) in line for line in lines), lines
    assert not pid_running(first.pid)
    assert not state_file_path().exists()
    assert not status()["temporal"].running
    assert down() == ["no ratchet services are recorded; nothing to stop"]


def test_down_never_signals_a_reused_pid(local_dirs: Path) -> None:
    # A live process whose command line differs from the recorded one stands
    # for a PID that the OS has handed to an unrelated program.
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        state = {
            "version": 1,
            "services": {
                "llm": {
                    "pid": other.pid,
                    "port": 1,
                    "base_url": "http://127.0.0.1:1/v1",
                    "command": ["/nonexistent/llama-server", "--port", "1"],
                }
            },
        }
        local_dirs.mkdir(parents=True, exist_ok=True)
        state_file_path().write_text(json.dumps(state))
        assert local_llm_base_url() is None
        lines = down()
        assert lines == [f"local LLM server (llama-server) (pid {other.pid}) was not running"]
        time.sleep(0.2)
        assert other.poll() is None
    finally:
        other.send_signal(signal.SIGKILL)
        other.wait()


def test_local_llm_base_url_env_override(local_dirs: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RATCHET_LOCAL_LLM_URL", "http://10.0.0.5:9999/v1")
    assert local_llm_base_url() == "http://10.0.0.5:9999/v1"


def test_llama_server_json_schema_chat(tmp_path: Path) -> None:
    # Cached after the first build; a fresh cache takes several minutes here.
    binary = ensure_llama_server()
    schema = {
        "type": "object",
        "properties": {
            "city": {"type": "string"},
            "country": {"type": "string"},
        },
        "required": ["city", "country"],
        "additionalProperties": False,
    }
    with LlamaServer(binary, smollm2_model_path(), free_port(), tmp_path / "llm.log") as server:
        assert server.base_url.startswith("http://127.0.0.1:")
        client = openai.OpenAI(base_url=server.base_url, api_key="local", max_retries=0)
        with client:
            assert [m.id for m in client.models.list().data] == [LOCAL_MODEL_NAME]
            response = client.chat.completions.create(
                model=LOCAL_MODEL_NAME,
                messages=[{"role": "user", "content": "Which city is the capital of France?"}],
                response_format={
                    "type": "json_schema",
                    "json_schema": {"name": "capital", "schema": schema, "strict": True},
                },
                max_tokens=60,
                temperature=0,
                timeout=60,
            )
        content = response.choices[0].message.content
        assert content is not None
        data = json.loads(content)
        assert set(data) == {"city", "country"}
        assert all(isinstance(value, str) for value in data.values())
        pid = server.pid
    assert server.pid is None
    assert pid is not None and not pid_running(pid)


def test_the_local_llm_keeps_answering_while_a_core_is_busy(tmp_path: Path) -> None:
    # llama.cpp's threads spin-wait for each other: with one thread per core and one
    # core busy elsewhere (the Temporal server, a worker, CI), 60 tokens took 2 minutes
    # here instead of one second. The default leaves cores free, so this stays fast.
    binary = ensure_llama_server()
    burner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        with LlamaServer(binary, smollm2_model_path(), free_port(), tmp_path / "llm.log") as server:
            assert server.threads == max(1, len(os.sched_getaffinity(0)) // 2)
            client = openai.OpenAI(base_url=server.base_url, api_key="local", max_retries=0)
            with client:
                response = client.chat.completions.create(
                    model=LOCAL_MODEL_NAME,
                    messages=[{"role": "user", "content": "Count from 1 to 100."}],
                    max_tokens=60,
                    temperature=0,
                    timeout=60,  # ~1 s when it works, minutes when the threads stall
                    extra_body={"ignore_eos": True},  # always the full 60 tokens
                )
        assert response.usage is not None and response.usage.completion_tokens == 60
    finally:
        burner.kill()
        burner.wait()


def test_llm_threads_can_be_set_and_are_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RATCHET_LLM_THREADS", "3")
    assert default_llm_threads() == 3
    monkeypatch.setenv("RATCHET_LLM_THREADS", "many")
    with pytest.raises(LocalServiceError, match="RATCHET_LLM_THREADS='many' is not a positive"):
        default_llm_threads()


def test_up_llm_reuse_discovery_and_down(local_dirs: Path) -> None:
    ensure_llama_server()  # a possible first build happens here, not under up()
    with socket.socket() as squatter:
        # The preferred port is taken by another program: up() must pick another one.
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        messages: list[str] = []
        services = up(temporal=False, llm=True, llm_port=taken, on_progress=messages.append)
    assert services.temporal_address is None
    assert services.llm_base_url is not None
    assert services.llm_model == LOCAL_MODEL_NAME
    assert f":{taken}/" not in services.llm_base_url
    assert any(f"port {taken} is in use" in m for m in messages), messages
    assert local_llm_base_url() == services.llm_base_url
    llm = status()["llm"]
    assert llm.running and llm.pid is not None

    with openai.OpenAI(base_url=services.llm_base_url, api_key="local", max_retries=0) as client:
        assert [m.id for m in client.models.list().data] == [LOCAL_MODEL_NAME]

    assert up(temporal=False, llm=True) == services
    assert status()["llm"].pid == llm.pid

    lines = down()
    assert any("stopped local LLM" in line for line in lines), lines
    assert not pid_running(llm.pid)
    assert local_llm_base_url() is None


def test_up_uses_but_never_stops_a_foreign_temporal(local_dirs: Path, tmp_path: Path) -> None:
    with make_temporal(tmp_path) as foreign:
        services = up(temporal=True, llm=False, temporal_port=foreign.port)
        assert services.temporal_address == foreign.address
        temporal = status()["temporal"]
        assert temporal.running and not temporal.managed and temporal.pid is None
        lines = down()
        assert lines == [
            f"left the Temporal server at {foreign.address} running (not started by ratchet)"
        ]
        assert foreign.pid is not None
