"""Process and port helpers shared by the embedded services.

Services are started detached (own session, output to a log file) so that they
outlive the ``ratchet up`` command that started them, and are later found again
by PID. PIDs get reused, so every "is this still our process?" check compares
the command line too.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Self

from ._errors import LocalServiceError

LOCALHOST = "127.0.0.1"

# Popen objects of services started by this interpreter and deliberately left
# running (``up()``). Keeping a reference stops Python from warning about a
# still-running child when the object is collected, and lets ``down()`` in the
# same interpreter reap the child instead of leaving a zombie that looks alive.
_DETACHED: dict[int, subprocess.Popen[bytes]] = {}


def port_open(port: int, host: str = LOCALHOST, timeout: float = 0.5) -> bool:
    """Return True if something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def free_port(host: str = LOCALHOST) -> int:
    """Return a TCP port that is free on ``host`` and stays reserved for about a minute.

    Binding port 0 and closing the socket is not enough: the OS may hand the
    same port to the next ``bind(0)`` or outgoing connection, and the Temporal
    dev server picks its internal ports exactly that way while it starts, so it
    could take the port we had chosen for its front end (seen in CI: "bind:
    address already in use", then a crash). Here a connection to the port is
    closed from the listening side first, which leaves that side in TIME_WAIT:
    for ~60 s the OS skips the port when it picks one, while a server that binds
    it explicitly with SO_REUSEADDR (Go, Rust, llama-server, Python's servers
    all do) still can. The same trick as Temporal's own freeport helper.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((host, 0))
        listener.listen(1)
        port: int = listener.getsockname()[1]
        listener.settimeout(5)
        with socket.create_connection((host, port), timeout=5) as client:
            accepted, peer = listener.accept()
            if peer != client.getsockname():  # a stranger's connection: not our handshake
                accepted.close()
                return free_port(host)
            accepted.close()  # the listening side closes first: it is the one in TIME_WAIT
            client.recv(1)  # wait for that FIN, so the close order is certain
    return port


def _is_zombie(pid: int) -> bool:
    # A zombie still answers kill(pid, 0) but is dead for every practical purpose.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    # The state letter follows the parenthesised command name, which may itself
    # contain spaces or parentheses, so split at the last ")".
    return stat.rpartition(")")[2].split()[:1] == ["Z"]


def _reap(pid: int) -> None:
    popen = _DETACHED.get(pid)
    if popen is not None:
        if popen.poll() is not None:
            _DETACHED.pop(pid, None)
        return
    # Not one of ours from this interpreter: it may still be our child (a
    # garbage-collected Popen), in which case waitpid clears the zombie.
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def pid_alive(pid: int) -> bool:
    """Return True if process ``pid`` exists and is not a zombie."""
    if pid <= 0:
        return False
    _reap(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        # Exists but belongs to another user: alive, and certainly not ours.
        return True
    return not _is_zombie(pid)


def process_cmdline(pid: int) -> list[str] | None:
    """Return the argv of process ``pid``, or None if it cannot be read."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:
        if Path("/proc/self").exists():
            return None  # Linux, and the process is gone.
        # No procfs (macOS): ask ps. Arguments with spaces become ambiguous,
        # which only makes the match below stricter, never looser.
        try:
            out = subprocess.run(
                ["ps", "-p", str(pid), "-o", "command="],
                capture_output=True,
                text=True,
                check=False,
            ).stdout.strip()
        except OSError:
            return None
        return out.split() if out else None
    except OSError:
        return None
    if not raw:
        return None  # zombie or kernel thread
    return [part.decode(errors="replace") for part in raw.rstrip(b"\0").split(b"\0")]


def pid_matches(pid: int, command: Sequence[str]) -> bool:
    """Return True if ``pid`` is alive and still runs exactly ``command``.

    This guards against PID reuse: after a reboot or a long time, the recorded
    PID may belong to an unrelated process that must not be signalled.
    """
    if not pid_alive(pid):
        return False
    argv = process_cmdline(pid)
    if argv is None:
        return False
    return argv == list(command) or " ".join(argv) == " ".join(command)


def terminate_pid(pid: int, timeout: float = 10.0) -> bool:
    """Send SIGTERM to ``pid``, wait up to ``timeout`` seconds, then SIGKILL.

    Returns:
        True if the process had to be killed with SIGKILL.
    """
    popen = _DETACHED.pop(pid, None)
    if popen is not None:
        return _stop_popen(popen, timeout)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return False
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5.0
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return True


def _stop_popen(popen: subprocess.Popen[bytes], timeout: float) -> bool:
    if popen.poll() is not None:
        return False
    with contextlib.suppress(ProcessLookupError):
        popen.terminate()
    try:
        popen.wait(timeout)
        return False
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            popen.kill()
        popen.wait()
        return True


def log_tail(path: Path, lines: int = 20, max_bytes: int = 16384) -> str:
    """Return the last ``lines`` lines of the text file at ``path`` ("" if unreadable)."""
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - max_bytes))
            data = fh.read().decode(errors="replace")
    except OSError:
        return ""
    return "\n".join(data.splitlines()[-lines:])


def startup_failure_excerpt(path: Path, lines: int = 20) -> str:
    """The lines of a service log that explain a failed start.

    A Go program that panics ends its log with a long stack trace, which would
    push the cause out of a plain tail: the error lines logged just before the
    panic and the panic message. For a panic those are returned (the trace is
    left in the log); otherwise the last ``lines`` lines.
    """
    text = log_tail(path, lines=1000, max_bytes=65536)
    all_lines = text.splitlines()
    # The log is appended to at every start: only this start's lines count.
    starts = [i for i, line in enumerate(all_lines) if " ratchet starting: " in line]
    if starts:
        all_lines = all_lines[starts[-1] :]
    for index, line in enumerate(all_lines):
        if line.startswith(("panic:", "fatal error:")):
            errors = [ln for ln in all_lines[:index] if "level=ERROR" in ln][-5:]
            return "\n".join(
                [*errors, *all_lines[index : index + 2], f"(stack trace omitted; it is in {path})"]
            )
    return "\n".join(all_lines[-lines:])


def _indent(text: str) -> str:
    return "\n".join("    " + line for line in text.splitlines()) or "    (log is empty)"


class ManagedProcess:
    """A detached server process writing to a log file, with a readiness check.

    Subclasses provide the command line (:meth:`command`) and readiness check
    (:meth:`_is_ready`); this class handles spawning, waiting, stopping and the
    context-manager protocol.
    """

    #: Human-readable service name used in messages.
    service_name = "service"

    def __init__(self, *, log_path: Path, env: Mapping[str, str] | None = None) -> None:
        self.log_path = Path(log_path)
        self._extra_env = dict(env or {})
        self._popen: subprocess.Popen[bytes] | None = None

    # -- to override -------------------------------------------------------

    def command(self) -> list[str]:
        """Return the argv used to start the process."""
        raise NotImplementedError

    def _is_ready(self) -> bool:
        raise NotImplementedError

    def _preflight(self) -> None:
        """Raise :class:`LocalServiceError` if the process cannot start (e.g. port taken)."""

    def _exit_hint(self, returncode: int) -> str:
        """Return advice (with a leading space) for an exit during start-up, or ""."""
        return ""

    # -- lifecycle ----------------------------------------------------------

    @property
    def pid(self) -> int | None:
        """PID of the running process, or None if not started or already exited."""
        if self._popen is None or self._popen.poll() is not None:
            return None
        return self._popen.pid

    @property
    def running(self) -> bool:
        """True while the started process has not exited."""
        return self.pid is not None

    def start(self, timeout: float = 30.0) -> None:
        """Start the process and block until it is ready.

        Args:
            timeout: Seconds to wait for readiness before killing the process.

        Raises:
            LocalServiceError: If the process cannot be spawned, exits early or
                is not ready within ``timeout``; the message includes the log tail.
        """
        if self.running:
            return
        self._preflight()
        cmd = self.command()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **self._extra_env}
        with self.log_path.open("ab") as log:
            stamp = datetime.now(UTC).isoformat(timespec="seconds")
            log.write(f"--- {stamp} ratchet starting: {' '.join(cmd)}\n".encode())
            log.flush()
            try:
                # Own session: the server survives the terminal/CLI that started
                # it and does not receive the terminal's Ctrl-C.
                self._popen = subprocess.Popen(
                    cmd,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=env,
                    start_new_session=True,
                    close_fds=True,
                )
            except OSError as exc:
                raise LocalServiceError(
                    f"Could not start the {self.service_name} ({cmd[0]}): {exc}. "
                    "Check that the binary exists and is executable."
                ) from exc
        self._wait_ready(timeout)

    def _wait_ready(self, timeout: float) -> None:
        assert self._popen is not None
        deadline = time.monotonic() + timeout
        while True:
            code = self._popen.poll()
            if code is not None:
                raise LocalServiceError(
                    f"The {self.service_name} exited with code {code} while starting."
                    f"{self._exit_hint(code)} "
                    f"From {self.log_path}:\n{_indent(startup_failure_excerpt(self.log_path))}"
                )
            if self._is_ready():
                return
            if time.monotonic() > deadline:
                self.kill()
                raise LocalServiceError(
                    f"The {self.service_name} did not become ready within {timeout:.0f} s "
                    f"and was killed. Last lines of {self.log_path}:\n"
                    f"{_indent(log_tail(self.log_path))}"
                )
            time.sleep(0.1)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the process: SIGTERM, then SIGKILL after ``timeout`` seconds. Idempotent."""
        if self._popen is not None:
            _stop_popen(self._popen, timeout)

    def kill(self) -> None:
        """Kill the process with SIGKILL (no cleanup; used to simulate crashes)."""
        if self._popen is not None and self._popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self._popen.kill()
            self._popen.wait()

    def detach(self) -> int:
        """Leave the process running beyond this object's lifetime and return its PID.

        Raises:
            LocalServiceError: If the process is not running.
        """
        if self._popen is None or self._popen.poll() is not None:
            raise LocalServiceError(f"The {self.service_name} is not running; nothing to detach.")
        _DETACHED[self._popen.pid] = self._popen
        return self._popen.pid

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def venv_bin(name: str) -> Path:
    """Return the path ``name`` would have next to the running interpreter."""
    return Path(sys.executable).parent / name
