"""The embedded delta store: a SQLite file beside the transcript store's.

The file is separate from the transcripts so the churn of deltas (written, then pruned)
stays out of the transcript file. Subscribers in any process on the machine notice
writes by polling ``PRAGMA data_version`` every few milliseconds: it changes when
another connection commits and reads no table page (about 3.5 ms p50 delivery at a
5 ms poll, measured in ``bench/STREAMING.md``).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

from ..transcripts import open_wal
from ._delta import CallKey, Delta, StoredDelta, row_of, stored_of
from ._store import DEFAULT_RETENTION, DeltaStore

__all__ = ["SQLiteDeltaStore"]

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS ratchet_deltas ("
    " execution TEXT NOT NULL, call_id TEXT NOT NULL, attempt INTEGER NOT NULL,"
    " pos INTEGER NOT NULL, run_id TEXT NOT NULL, kind TEXT NOT NULL, body TEXT NOT NULL,"
    " tool_index INTEGER, tool_id TEXT, tool_name TEXT, created REAL NOT NULL,"
    " PRIMARY KEY (execution, call_id, attempt, pos))",
    "CREATE INDEX IF NOT EXISTS ratchet_deltas_created ON ratchet_deltas (created)",
    "CREATE INDEX IF NOT EXISTS ratchet_deltas_run ON ratchet_deltas (run_id)",
)
_INSERT = "INSERT OR IGNORE INTO ratchet_deltas VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
_READ = (
    "SELECT attempt, pos, kind, body, tool_index, tool_id, tool_name, created "
    "FROM ratchet_deltas WHERE execution = ? AND call_id = ? AND (attempt, pos) > (?, ?) "
    "ORDER BY attempt, pos LIMIT ?"
)


class SQLiteDeltaStore(DeltaStore):
    """Deltas in a SQLite file, for a worker and subscribers on one machine.

    Args:
        path: the database file (created with its directory when missing).
        retention: how long a delta is kept after it was written.
        poll_seconds: how often a waiting subscriber checks for writes (5 ms costs
            about 6 % of a core per waiting process, measured).
    """

    def __init__(
        self,
        path: str | Path,
        *,
        retention: timedelta = DEFAULT_RETENTION,
        poll_seconds: float = 0.005,
    ) -> None:
        super().__init__(retention)
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.poll_seconds = poll_seconds
        # Two connections: data_version only changes for commits of *other* connections,
        # so the reader sees this process's own writes too.
        self._writer = open_wal(self.path)
        for statement in _SCHEMA:
            self._writer.execute(statement)
        self._reader = open_wal(self.path)
        self._write_lock = threading.Lock()
        self._read_lock = threading.Lock()

    async def append(
        self, run_id: str, key: CallKey, attempt: int, deltas: Sequence[tuple[int, Delta]]
    ) -> None:
        now = time.time()
        rows = [row_of(run_id, key, attempt, offset, d, now) for offset, d in deltas]

        def write() -> None:
            with self._write_lock, self._writer:
                self._writer.execute("BEGIN")
                self._writer.executemany(_INSERT, rows)

        await asyncio.to_thread(write)

    def _query(self, sql: str, params: Sequence[Any]) -> list[Any]:
        with self._read_lock:
            return self._reader.execute(sql, params).fetchall()

    async def read(
        self, key: CallKey, after: tuple[int, int] = (0, -1), limit: int = 1000
    ) -> list[StoredDelta]:
        rows = await asyncio.to_thread(
            self._query, _READ, (key.execution, key.call_id, after[0], after[1], limit)
        )
        return [stored_of(key, row) for row in rows]

    async def version(self) -> int:
        # Microseconds, and reads no table page: cheaper on the loop than a thread hop.
        with self._read_lock:
            (value,) = self._reader.execute("PRAGMA data_version").fetchone()
        return int(value)

    async def wait_changed(self, since: int, seconds: float) -> int:
        deadline = time.monotonic() + seconds
        while True:
            current = await self.version()
            if current != since or time.monotonic() >= deadline:
                return current
            await asyncio.sleep(min(self.poll_seconds, max(0.0, deadline - time.monotonic())))

    def _delete(self, sql: str, params: Sequence[Any]) -> int:
        with self._write_lock, self._writer:
            return self._writer.execute(sql, params).rowcount

    async def delete_older_than(self, cutoff: float) -> int:
        return await asyncio.to_thread(
            self._delete, "DELETE FROM ratchet_deltas WHERE created < ?", (cutoff,)
        )

    async def delete_run(self, run_id: str) -> int:
        return await asyncio.to_thread(
            self._delete, "DELETE FROM ratchet_deltas WHERE run_id = ?", (run_id,)
        )

    async def close(self) -> None:
        with self._write_lock:
            self._writer.close()
        with self._read_lock:
            self._reader.close()

    def __repr__(self) -> str:
        return f"SQLiteDeltaStore({str(self.path)!r})"
