"""The PostgreSQL server that (f)'s worker keeps its transcripts in, from PyPI's pgserver.

One server per invocation, started only when (f) is measured: a throwaway data
directory under /tmp (its Unix socket lives there, and socket paths must stay short),
deleted when the server stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from . import procstat

if TYPE_CHECKING:
    from pgserver.postgres_server import PostgresServer


class Postgres:
    """A running server: its URL (for ``ratchet.transcripts.store_from_url``) and CPU."""

    def __init__(self, server: PostgresServer, directory: Path) -> None:
        self._server = server
        self._directory = directory
        self.url = server.get_uri()
        self.pid = server.get_pid()

    @classmethod
    async def start(cls) -> Postgres:
        from pgserver.postgres_server import get_server

        directory = Path(tempfile.mkdtemp(prefix="bench-pg-"))
        # initdb and pg_ctl block for a few seconds: not on the event loop.
        server = await asyncio.to_thread(get_server, directory, cleanup_mode="delete")
        return cls(server, directory)

    def cpu_seconds(self) -> float | None:
        """CPU of the postmaster and its backends (one per connection) so far."""
        if self.pid is None:
            return None
        try:
            return procstat.tree_cpu_seconds(self.pid)
        except OSError:
            return None

    async def stop(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.to_thread(self._server.cleanup)
        shutil.rmtree(self._directory, ignore_errors=True)
