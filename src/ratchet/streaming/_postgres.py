"""The delta store shared across machines: a table in PostgreSQL, with LISTEN/NOTIFY.

The table sits in the transcript store's database. A writer commits a batch and
``pg_notify`` in one transaction; subscribers ``LISTEN`` on one connection per store
and read the rows from another. The notification only says "look": the table is the
truth, so a missed notification loses nothing, and a subscriber that reconnects
re-reads from its offset (about 1.6 ms p50 delivery, measured in
``bench/STREAMING.md``).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from ..errors import ConfigError
from ._delta import CallKey, Delta, StoredDelta, row_of, stored_of
from ._store import DEFAULT_RETENTION, DeltaStore

__all__ = ["PostgresDeltaStore"]

CHANNEL = "ratchet_deltas"
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS ratchet_deltas ("
    " execution TEXT NOT NULL, call_id TEXT NOT NULL, attempt INTEGER NOT NULL,"
    " pos INTEGER NOT NULL, run_id TEXT NOT NULL, kind TEXT NOT NULL, body TEXT NOT NULL,"
    " tool_index INTEGER, tool_id TEXT, tool_name TEXT, created DOUBLE PRECISION NOT NULL,"
    " PRIMARY KEY (execution, call_id, attempt, pos))",
    "CREATE INDEX IF NOT EXISTS ratchet_deltas_created ON ratchet_deltas (created)",
    "CREATE INDEX IF NOT EXISTS ratchet_deltas_run ON ratchet_deltas (run_id)",
)
_INSERT = (
    "INSERT INTO ratchet_deltas VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
    "ON CONFLICT DO NOTHING"
)
_READ = (
    "SELECT attempt, pos, kind, body, tool_index, tool_id, tool_name, created "
    "FROM ratchet_deltas WHERE execution = %s AND call_id = %s AND (attempt, pos) > (%s, %s) "
    "ORDER BY attempt, pos LIMIT %s"
)


async def _connect(dsn: str) -> Any:
    try:
        import psycopg
    except ImportError as e:  # pragma: no cover - depends on the install
        raise ConfigError("PostgresDeltaStore needs psycopg: pip install 'psycopg[binary]'") from e
    return await psycopg.AsyncConnection.connect(dsn, autocommit=True)


class PostgresDeltaStore(DeltaStore):
    """Deltas in PostgreSQL, for workers and subscribers on many machines (psycopg 3).

    Args:
        dsn: a libpq connection string, e.g. ``postgresql://user:pw@host/db``.
        retention: how long a delta is kept after it was written.
    """

    def __init__(self, dsn: str, *, retention: timedelta = DEFAULT_RETENTION) -> None:
        super().__init__(retention)
        self.dsn = dsn
        self._conn: Any = None
        self._lock = asyncio.Lock()
        self._schema_ready = False
        # The listener: one LISTEN connection and a task counting notifications.
        self._listener: Any = None
        self._listen_task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._version = 0
        self._changed: asyncio.Event | None = None

    async def _connection(self) -> Any:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            # A connection belongs to the loop that opened it (tests run several loops).
            self._loop, self._conn, self._lock = loop, None, asyncio.Lock()
            self._listener, self._listen_task, self._changed = None, None, None
        if self._conn is None or self._conn.closed:
            self._conn = await _connect(self.dsn)
            if not self._schema_ready:
                for statement in _SCHEMA:
                    await self._conn.execute(statement)
                self._schema_ready = True
        return self._conn

    async def append(
        self, run_id: str, key: CallKey, attempt: int, deltas: Sequence[tuple[int, Delta]]
    ) -> None:
        now = time.time()
        rows = [row_of(run_id, key, attempt, offset, d, now) for offset, d in deltas]
        async with self._lock:
            conn = await self._connection()
            async with conn.transaction(), conn.cursor() as cur:
                await cur.executemany(_INSERT, rows)
                # Delivered at commit, with the rows: a subscriber woken by it sees them.
                await cur.execute("SELECT pg_notify(%s, %s)", (CHANNEL, key.execution))

    async def read(
        self, key: CallKey, after: tuple[int, int] = (0, -1), limit: int = 1000
    ) -> list[StoredDelta]:
        async with self._lock:
            conn = await self._connection()
            cur = await conn.execute(_READ, (key.execution, key.call_id, after[0], after[1], limit))
            rows = await cur.fetchall()
        return [stored_of(key, row) for row in rows]

    async def _listen(self) -> None:
        """Start the listener once per loop: LISTEN before the first read, so a write
        after that read always wakes the subscriber."""
        await self._connection()
        if self._listen_task is not None and not self._listen_task.done():
            return
        self._listener = await _connect(self.dsn)
        await self._listener.execute(f"LISTEN {CHANNEL}")
        self._changed = asyncio.Event()
        self._listen_task = asyncio.get_running_loop().create_task(self._count_notifications())

    async def _count_notifications(self) -> None:
        async for _ in self._listener.notifies():
            self._version += 1
            assert self._changed is not None
            self._changed.set()
            self._changed = asyncio.Event()

    async def version(self) -> int:
        await self._listen()
        return self._version

    async def wait_changed(self, since: int, seconds: float) -> int:
        await self._listen()
        if self._version == since:
            changed = self._changed
            assert changed is not None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), seconds)
        return self._version

    async def _delete(self, sql: str, params: Sequence[Any]) -> int:
        async with self._lock:
            conn = await self._connection()
            cur = await conn.execute(sql, params)
            return int(cur.rowcount)

    async def delete_older_than(self, cutoff: float) -> int:
        return await self._delete("DELETE FROM ratchet_deltas WHERE created < %s", (cutoff,))

    async def delete_run(self, run_id: str) -> int:
        return await self._delete("DELETE FROM ratchet_deltas WHERE run_id = %s", (run_id,))

    async def close(self) -> None:
        if self._listen_task is not None:
            self._listen_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._listen_task
        for conn in (self._listener, self._conn):
            if conn is not None and not conn.closed:
                await conn.close()

    def __repr__(self) -> str:
        return "PostgresDeltaStore(...)"  # the DSN may hold a password
