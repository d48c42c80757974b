"""Worker subprocesses for crash tests: real `ratchet worker` processes we can kill -9."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path

from ratchet.testing import ScriptedModelServer

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
        app: str = "tests.crash_app:agents",
        args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
    ) -> None:
        extra_env = dict(env or {})
        env = {
            **os.environ,
            "OPENAI_BASE_URL": server.base_url,
            "OPENAI_API_KEY": API_KEY,
            "SUPPORT_DB": str(tmp / "shop.sqlite"),
            "CRASH_LOG": str(tmp / "tools.log"),
            "PYTHONPATH": str(ROOT),
            "RATCHET_TRANSCRIPT_STORE": f"sqlite:///{tmp / 'transcripts.sqlite'}",
            "RATCHET_PAYLOAD_STORE": str(tmp / "payloads"),
            # Stopped at once unless a test asks for a drain (tests/test_worker_drain.py):
            # stop() waits 10 s before SIGKILL, which a 10 s drain would always reach.
            "RATCHET_DRAIN_SECONDS": "0",
        }
        env.update(extra_env)
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
                app,
                "--task-queue",
                queue,
                "--address",
                address,
                *args,
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


def tool_log(tmp: Path) -> list[str]:
    path = tmp / "tools.log"
    return path.read_text().splitlines() if path.exists() else []


def wait_for(predicate, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.05)
