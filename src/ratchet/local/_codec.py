"""The codec endpoint of the embedded Web UI (``ratchet codec-server`` as a service).

The Temporal Web UI shows a model call's input as recorded: with linear history,
hashes of the transcript. Given ``--ui-codec-endpoint``, the UI has the browser
post each payload to this endpoint's ``/decode``, which answers with the messages
and tools the call sent (and decrypts, when ``RATCHET_ENCRYPTION_KEYS`` is set).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from ._errors import LocalServiceError
from ._proc import LOCALHOST, ManagedProcess, port_open

__all__ = ["DEFAULT_CODEC_PORT", "CodecEndpoint", "ui_origins"]

DEFAULT_CODEC_PORT = 8234
"""Next to the Web UI's 8233; a free port is used when it is taken."""


def ui_origins(ui_port: int) -> list[str]:
    """The origins the embedded Web UI's pages have (the browser sends one of them)."""
    return [f"http://{LOCALHOST}:{ui_port}", f"http://localhost:{ui_port}"]


class CodecEndpoint(ManagedProcess):
    """A decode endpoint for the embedded Web UI, bound to 127.0.0.1.

    It runs ``ratchet codec-server --no-auth`` with this interpreter and inherits the
    environment, so it reads the transcript store workers use by default (or
    ``RATCHET_TRANSCRIPT_STORE``) and decrypts with ``RATCHET_ENCRYPTION_KEYS`` when
    set. No token: the embedded UI cannot send one, so the endpoint relies on what
    the codec server enforces without one: loopback only, browser calls from
    ``origins`` only, requests addressed to a loopback name only.

    Args:
        port: the port to listen on.
        origins: the Web UI origins allowed to call it (see :func:`ui_origins`).
        log_path: file receiving its output (appended).
    """

    service_name = "codec endpoint"

    def __init__(self, *, port: int, origins: Sequence[str], log_path: Path) -> None:
        # A token in the environment is for a codec server people call with it; the
        # embedded UI sends none, so this one must not ask for it.
        super().__init__(log_path=log_path, env={"RATCHET_CODEC_TOKEN": ""})
        self.port = port
        self.origins = list(origins)

    @property
    def url(self) -> str:
        """The endpoint's URL, e.g. ``http://127.0.0.1:8234``."""
        return f"http://{LOCALHOST}:{self.port}"

    def command(self) -> list[str]:
        """Return the ``ratchet codec-server`` argv for this configuration."""
        cmd = [sys.executable, "-m", "ratchet.cli", "codec-server", "--no-auth"]
        cmd += ["--host", LOCALHOST, "--port", str(self.port)]
        for origin in self.origins:
            cmd += ["--origin", origin]
        return cmd

    def _preflight(self) -> None:
        if port_open(self.port):
            raise LocalServiceError(
                f"Cannot start the codec endpoint: {self.url} is already in use. "
                "Stop whatever listens there or choose another port."
            )

    def _is_ready(self) -> bool:
        return port_open(self.port)
