"""``ratchet up`` / ``ratchet down``: long-lived embedded services tracked in a state file.

:func:`up` starts (or reuses) the Temporal dev server, the codec endpoint its
Web UI calls (to show the exact prompts) and the local LLM server as detached
processes and records them in ``data_dir()/services.json``;
:func:`down` stops what is recorded there. Any later process (a worker, the
CLI, a test) discovers the services through that file, e.g. with
:func:`local_llm_base_url`.

State file layout (version 1)::

    {"version": 1,
     "services": {
       "temporal": {"pid": 123, "port": 7233, "ui_port": 8233,
                    "address": "127.0.0.1:7233", "ui_url": "http://127.0.0.1:8233",
                    "codec_url": "http://127.0.0.1:8234",
                    "log_path": "...", "command": [...], "started_at": "...",
                    "external": false},
       "codec": {"pid": 125, "port": 8234, "url": "http://127.0.0.1:8234",
                 "log_path": "...", "command": [...], "started_at": "..."},
       "llm": {"pid": 124, "port": 8677, "base_url": "http://127.0.0.1:8677/v1",
               "model": "SmolLM2-135M-Instruct", "log_path": "...",
               "command": [...], "started_at": "..."}}}

``"external": true`` marks a Temporal server that was already listening and
that ratchet only uses; :func:`down` never stops it. ``codec_url`` is absent for
a dev server started without a codec endpoint (by an older ratchet, or with
``codec=False``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ._codec import DEFAULT_CODEC_PORT, CodecEndpoint, ui_origins
from ._errors import LocalServiceError
from ._llm import (
    LOCAL_MODEL_NAME,
    LlamaServer,
    ensure_llama_server,
    llm_healthy,
    smollm2_model_path,
)
from ._paths import data_dir
from ._proc import LOCALHOST, free_port, pid_matches, port_open, terminate_pid
from ._temporal import DEFAULT_TEMPORAL_PORT, DEFAULT_TEMPORAL_UI_PORT, TemporalDevServer

__all__ = [
    "DEFAULT_LLM_PORT",
    "LOCAL_LLM_URL_ENV",
    "LocalServices",
    "ServiceStatus",
    "down",
    "local_llm_base_url",
    "services_status",
    "state_file_path",
    "status",
    "up",
]

#: Default port of the local LLM server. Chosen to be unlikely to collide with
#: common dev servers (8000, 8080, 8888, Ollama's 11434); if something else
#: holds it, :func:`up` falls back to a free port and records that one.
DEFAULT_LLM_PORT = 8677
#: Environment variable that overrides the discovered local LLM base URL.
LOCAL_LLM_URL_ENV = "RATCHET_LOCAL_LLM_URL"

_STATE_VERSION = 1
_SERVICE_NAMES = ("temporal", "llm", "codec")
_LABELS = {
    "temporal": "Temporal dev server",
    "llm": "local LLM server (llama-server)",
    "codec": "codec endpoint",
}

ProgressCallback = Callable[[str], None]
_Entry = dict[str, Any]


@dataclass(frozen=True)
class LocalServices:
    """Where the embedded services started or reused by :func:`up` can be reached.

    Attributes:
        temporal_address: gRPC target for ``Client.connect`` (None if not requested).
        ui_url: Temporal Web UI URL (None if not requested or unknown).
        llm_base_url: OpenAI-compatible base URL of the local LLM (None if not requested).
        llm_model: Model name to send in requests to ``llm_base_url``.
        codec_url: The codec endpoint the Web UI calls to show the exact prompts
            (None if not running).
    """

    temporal_address: str | None = None
    ui_url: str | None = None
    llm_base_url: str | None = None
    llm_model: str | None = None
    codec_url: str | None = None


@dataclass(frozen=True)
class ServiceStatus:
    """State of one embedded service, as reported by :func:`status`.

    Attributes:
        name: ``"temporal"``, ``"llm"`` or ``"codec"``.
        running: True if the process (or, for an external server, the port) answers.
        managed: True if ratchet started the process and :func:`down` will stop it.
        pid: PID of the recorded process, if ratchet started it.
        address: Temporal gRPC target, LLM base URL or codec endpoint URL.
        ui_url: Temporal Web UI URL (None for the LLM).
        log_path: The service's log file, if ratchet started it.
    """

    name: str
    running: bool
    managed: bool
    pid: int | None = None
    address: str | None = None
    ui_url: str | None = None
    log_path: Path | None = None


# --------------------------------------------------------------------------- state file


def state_file_path() -> Path:
    """Return the path of the services state file (``data_dir()/services.json``)."""
    return data_dir() / "services.json"


@contextlib.contextmanager
def _state_lock() -> Iterator[None]:
    # Serialises concurrent `up`/`down` calls (two terminals, parallel tests
    # sharing a data dir) so they do not both start a server on the same port.
    with (data_dir() / "services.lock").open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _load_state() -> dict[str, _Entry]:
    try:
        raw = json.loads(state_file_path().read_text())
    except (OSError, ValueError):
        # Missing or unreadable: nothing is recorded. Writes are atomic, so a
        # corrupt file only comes from manual edits.
        return {}
    services = raw.get("services") if isinstance(raw, dict) else None
    if not isinstance(services, dict):
        return {}
    return {k: v for k, v in services.items() if k in _SERVICE_NAMES and isinstance(v, dict)}


def _save_state(services: dict[str, _Entry]) -> None:
    path = state_file_path()
    if not services:
        path.unlink(missing_ok=True)
        return
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"version": _STATE_VERSION, "services": services}, indent=2))
    os.replace(tmp, path)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _entry_pid(entry: _Entry) -> int:
    pid = entry.get("pid")
    return pid if isinstance(pid, int) else -1


def _entry_alive(entry: _Entry) -> bool:
    """True if the recorded process still runs the recorded command (PID-reuse safe)."""
    command = entry.get("command")
    if entry.get("external") or not isinstance(command, list):
        return False
    return pid_matches(_entry_pid(entry), [str(part) for part in command])


def _wait_until(check: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if check():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)


# --------------------------------------------------------------------------- up


def up(
    *,
    temporal: bool = True,
    llm: bool = True,
    on_progress: ProgressCallback | None = None,
    temporal_port: int = DEFAULT_TEMPORAL_PORT,
    temporal_ui_port: int = DEFAULT_TEMPORAL_UI_PORT,
    llm_port: int = DEFAULT_LLM_PORT,
    codec: bool = True,
    codec_port: int = DEFAULT_CODEC_PORT,
) -> LocalServices:
    """Start the embedded services, or reuse them if they are already running.

    A recorded service is reused when its PID still runs the recorded command
    and its port answers. For Temporal, a server already listening on
    ``127.0.0.1:temporal_port`` that ratchet did not start is used as is (and
    never stopped by :func:`down`). The local LLM falls back to a free port if
    ``llm_port`` is taken by something else. The first LLM start builds
    ``llama-server`` (several minutes, reported through ``on_progress``).

    With ``codec``, a dev server ratchet starts gets a codec endpoint
    (``--ui-codec-endpoint``): its Web UI then shows each model call's input with
    the messages and tools it sent, and decrypts payloads when
    ``RATCHET_ENCRYPTION_KEYS`` is set. The endpoint reads the transcript store of
    this process's environment (``RATCHET_TRANSCRIPT_STORE``, else the default),
    which the workers must share. If it cannot start, the dev server starts
    without it (reported through ``on_progress``).

    Args:
        temporal: Start/reuse the Temporal dev server (SQLite file
            ``data_dir()/temporal.sqlite``).
        llm: Start/reuse the local LLM server (SmolLM2-135M-Instruct).
        on_progress: Called with short human-readable status lines.
        temporal_port: gRPC port of the Temporal server.
        temporal_ui_port: Preferred Web UI port (a free one is used if taken).
        llm_port: Preferred port of the local LLM server.
        codec: Start (or keep alive) the Web UI's codec endpoint.
        codec_port: Preferred port of the codec endpoint.

    Returns:
        Where the requested services can be reached.

    Raises:
        LocalServiceError: If a service cannot be built or started.
    """
    progress = on_progress or (lambda _message: None)
    binary: Path | None = None
    model: Path | None = None
    if llm and not _llm_reusable(_load_state().get("llm")):
        # Fail on missing weights before a possibly long build, and build
        # outside the state lock so `ratchet down` is not blocked for minutes.
        model = smollm2_model_path()
        binary = ensure_llama_server(progress)

    result = LocalServices()
    with _state_lock():
        services = _load_state()
        if temporal:
            entry = _ensure_temporal(
                services, temporal_port, temporal_ui_port, progress, codec_port if codec else None
            )
            services["temporal"] = entry
            _save_state(services)
            codec_entry = services.get("codec")
            codec_alive = codec_entry is not None and _entry_alive(codec_entry)
            result = LocalServices(
                temporal_address=entry["address"],
                ui_url=entry.get("ui_url"),
                codec_url=entry.get("codec_url") if codec_alive else None,
            )
        if llm:
            entry = _ensure_llm(services.get("llm"), llm_port, binary, model, progress)
            services["llm"] = entry
            _save_state(services)
            result = dataclasses.replace(
                result,
                llm_base_url=entry["base_url"],
                llm_model=entry.get("model", LOCAL_MODEL_NAME),
            )
    return result


def _ensure_temporal(
    services: dict[str, _Entry],
    port: int,
    ui_port: int,
    progress: ProgressCallback,
    codec_port: int | None,
) -> _Entry:
    """The dev server's entry, started or reused; ``services["codec"]`` follows it.

    ``codec_port`` None: no codec endpoint is started (a running one is left alone).
    """
    label = _LABELS["temporal"]
    entry = services.get("temporal")
    if entry is not None:
        recorded_port = int(entry.get("port", 0))
        if entry.get("external"):
            if port_open(recorded_port):
                progress(f"using the Temporal server already listening at {entry['address']}")
                return entry
        elif _entry_alive(entry):
            # It may have been started a moment ago and still be coming up.
            if _wait_until(lambda: port_open(recorded_port), 10.0):
                progress(f"{label} already running (pid {entry['pid']}) at {entry['address']}")
                if codec_port is not None:
                    _keep_codec(services, entry, progress)
                return entry
            progress(f"{label} (pid {entry['pid']}) is not answering; restarting it")
            terminate_pid(_entry_pid(entry))

    if port_open(port):
        address = f"{LOCALHOST}:{port}"
        progress(
            f"using the Temporal server already listening at {address} (not started "
            "by ratchet; `ratchet down` will leave it running)"
        )
        if codec_port is not None:
            progress(
                "its Web UI shows model calls' prompts as transcript references; for the "
                "exact prompts, run `ratchet codec-server --no-auth` and set it as the "
                "UI's codec endpoint"
            )
        return {
            "external": True,
            "port": port,
            "address": address,
            "ui_url": f"http://{LOCALHOST}:{ui_port}" if port_open(ui_port) else None,
        }

    if port_open(ui_port):
        ui_port = free_port()
    codec_url: str | None = None
    if codec_port is not None:
        codec_entry = _start_codec(services.get("codec"), codec_port, ui_port, progress)
        if codec_entry is None:
            services.pop("codec", None)
        else:
            services["codec"] = codec_entry
            codec_url = codec_entry["url"]
    root = data_dir()
    server = TemporalDevServer(
        db_path=root / "temporal.sqlite",
        log_path=root / "logs" / "temporal.log",
        port=port,
        ui_port=ui_port,
        ui_codec_endpoint=codec_url,
    )
    progress(f"starting {label} at {server.address}")
    try:
        server.start()
    except LocalServiceError:
        if codec_url is not None:  # not recorded yet: nothing else would stop it
            terminate_pid(_entry_pid(services.pop("codec")))
        raise
    pid = server.detach()
    progress(f"{label} running (pid {pid}); Web UI at {server.ui_url}")
    started = {
        "pid": pid,
        "port": port,
        "ui_port": ui_port,
        "address": server.address,
        "ui_url": server.ui_url,
        "log_path": str(server.log_path),
        "command": server.command(),
        "started_at": _now(),
        "external": False,
    }
    if codec_url is not None:
        started["codec_url"] = codec_url
    return started


def _start_codec(
    entry: _Entry | None, port: int, ui_port: int, progress: ProgressCallback
) -> _Entry | None:
    """Start the codec endpoint for a dev server about to start; None if it cannot."""
    if entry is not None and _entry_alive(entry):
        # Its allowed origin may be another UI port: a fresh one costs a second.
        terminate_pid(_entry_pid(entry))
        _wait_port_closed(int(entry.get("port", 0)))
    if port_open(port):
        port = free_port()
    try:
        return _run_codec(port, ui_port, progress)
    except LocalServiceError as e:
        progress(f"the Web UI will show prompts as transcript references: {e}")
        return None


def _keep_codec(services: dict[str, _Entry], temporal: _Entry, progress: ProgressCallback) -> None:
    """Restart the running dev server's codec endpoint if it died (same URL)."""
    url = temporal.get("codec_url")
    if not isinstance(url, str):
        progress(
            "its Web UI shows model calls' prompts as transcript references (it was started "
            "without a codec endpoint); `ratchet down` then `ratchet up` adds one"
        )
        return
    entry = services.get("codec")
    if entry is not None and _entry_alive(entry):
        progress(f"{_LABELS['codec']} already running (pid {entry['pid']}) at {entry['url']}")
        return
    port = int(url.rsplit(":", 1)[1])
    _wait_port_closed(port)
    try:
        services["codec"] = _run_codec(port, int(temporal.get("ui_port", 0)), progress)
    except LocalServiceError as e:
        services.pop("codec", None)
        progress(f"the Web UI will show prompts as transcript references: {e}")


def _wait_port_closed(port: int) -> None:
    # A killed multi-threaded process looks dead (its main thread is a zombie) a moment
    # before its last thread exits and its listening socket closes.
    _wait_until(lambda: not port_open(port), 5.0)


def _run_codec(port: int, ui_port: int, progress: ProgressCallback) -> _Entry:
    label = _LABELS["codec"]
    endpoint = CodecEndpoint(
        port=port, origins=ui_origins(ui_port), log_path=data_dir() / "logs" / "codec.log"
    )
    progress(f"starting {label} at {endpoint.url} (the Web UI shows the exact prompts)")
    endpoint.start()
    pid = endpoint.detach()
    return {
        "pid": pid,
        "port": port,
        "url": endpoint.url,
        "log_path": str(endpoint.log_path),
        "command": endpoint.command(),
        "started_at": _now(),
    }


def _llm_reusable(entry: _Entry | None) -> bool:
    return entry is not None and _entry_alive(entry) and llm_healthy(int(entry.get("port", 0)))


def _ensure_llm(
    entry: _Entry | None,
    port: int,
    binary: Path | None,
    model: Path | None,
    progress: ProgressCallback,
) -> _Entry:
    label = _LABELS["llm"]
    if entry is not None and _entry_alive(entry):
        recorded_port = int(entry.get("port", 0))
        if _wait_until(lambda: llm_healthy(recorded_port), 15.0):
            progress(f"{label} already running (pid {entry['pid']}) at {entry['base_url']}")
            return entry
        progress(f"{label} (pid {entry['pid']}) is not healthy; restarting it")
        terminate_pid(_entry_pid(entry))

    # The state may have changed between the unlocked check in up() and now.
    if model is None:
        model = smollm2_model_path()
    if binary is None:
        binary = ensure_llama_server(progress)
    if port_open(port):
        taken = port
        port = free_port()
        progress(f"port {taken} is in use by another program; using port {port} instead")
    root = data_dir()
    server = LlamaServer(binary, model, port, root / "logs" / "llm.log")
    progress(f"starting {label} ({server.model_name}) at {server.base_url}")
    # Loading takes well under a second here; the margin is for slow disks.
    server.start(timeout=120.0)
    pid = server.detach()
    progress(f"{label} running (pid {pid})")
    return {
        "pid": pid,
        "port": port,
        "base_url": server.base_url,
        "model": server.model_name,
        "log_path": str(server.log_path),
        "command": server.command(),
        "started_at": _now(),
    }


# --------------------------------------------------------------------------- down


def down(timeout: float = 10.0) -> list[str]:
    """Stop the services recorded by :func:`up` and clear the state file.

    A recorded process is signalled only if its PID still runs the recorded
    command line, so a reused PID is never killed. Each process gets SIGTERM,
    then SIGKILL after ``timeout`` seconds.

    Args:
        timeout: Seconds to wait after SIGTERM before SIGKILL.

    Returns:
        Human-readable lines describing what was stopped or left alone.
    """
    lines: list[str] = []
    with _state_lock():
        services = _load_state()
        # LLM first: it is the one that nothing else depends on. The codec endpoint
        # last: the Web UI calls it while it runs.
        for name in ("llm", "temporal", "codec"):
            entry = services.get(name)
            if entry is None:
                continue
            label = _LABELS[name]
            where = entry.get("address") or entry.get("base_url") or entry.get("url") or "?"
            if entry.get("external"):
                lines.append(
                    f"left the Temporal server at {where} running (not started by ratchet)"
                )
                continue
            pid = _entry_pid(entry)
            if not _entry_alive(entry):
                lines.append(f"{label} (pid {pid}) was not running")
                continue
            killed = terminate_pid(pid, timeout)
            suffix = f" (SIGKILL after {timeout:.0f} s)" if killed else ""
            lines.append(f"stopped {label} (pid {pid}) at {where}{suffix}")
        _save_state({})
    if not lines:
        lines.append("no ratchet services are recorded; nothing to stop")
    return lines


# --------------------------------------------------------------------------- discovery


def local_llm_base_url() -> str | None:
    """Return the base URL of the local LLM server, if one is available.

    Returns:
        ``$RATCHET_LOCAL_LLM_URL`` if set, else the base URL recorded by
        :func:`up` if that process is still alive, else None.
    """
    override = os.environ.get(LOCAL_LLM_URL_ENV)
    if override:
        return override
    entry = _load_state().get("llm")
    if entry is not None and _entry_alive(entry):
        base_url = entry.get("base_url")
        return base_url if isinstance(base_url, str) else None
    return None


def status() -> dict[str, ServiceStatus]:
    """Report the recorded embedded services (for ``ratchet status``).

    Returns:
        One :class:`ServiceStatus` per service name (``"temporal"``, ``"llm"``,
        ``"codec"``);
        services never started are reported as not running and not managed.
    """
    services = _load_state()
    report: dict[str, ServiceStatus] = {}
    for name in _SERVICE_NAMES:
        entry = services.get(name)
        if entry is None:
            report[name] = ServiceStatus(name=name, running=False, managed=False)
            continue
        address = entry.get({"temporal": "address", "llm": "base_url"}.get(name, "url"))
        log_path = entry.get("log_path")
        if entry.get("external"):
            running = port_open(int(entry.get("port", 0)))
        else:
            running = _entry_alive(entry)
        report[name] = ServiceStatus(
            name=name,
            running=running,
            managed=not entry.get("external", False),
            pid=entry.get("pid") if isinstance(entry.get("pid"), int) else None,
            address=address if isinstance(address, str) else None,
            ui_url=entry.get("ui_url") if isinstance(entry.get("ui_url"), str) else None,
            log_path=Path(log_path) if isinstance(log_path, str) else None,
        )
    return report


def services_status() -> dict[str, dict[str, Any]]:
    """Return :func:`status` as plain JSON-serialisable dicts (e.g. for ``--json`` output).

    Returns:
        ``{"temporal": {...}, "llm": {...}, "codec": {...}}`` with the :class:`ServiceStatus`
        fields; ``log_path`` is a string.
    """
    report: dict[str, dict[str, Any]] = {}
    for name, service in status().items():
        fields = dataclasses.asdict(service)
        fields["log_path"] = str(service.log_path) if service.log_path is not None else None
        report[name] = fields
    return report
