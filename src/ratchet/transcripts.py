"""Transcript stores: where model calls rebuild their prompts from.

With linear history, a model call's input holds a *reference* to the transcript
(the head of a content-addressed hash chain) plus the messages that are new
since the previous call; the model activity rebuilds the full prompt from a
transcript store. Each message is stored once, keyed by its SHA-256; each chain
node is keyed by the hash of its parent node and its message, so a head names
one exact sequence of messages and writes are idempotent (a retried activity
writes the same keys again).

Backends implement the four methods of :class:`TranscriptStore`:

- :class:`SQLiteTranscriptStore`: the embedded default, one SQLite file (one machine);
- :class:`PostgresTranscriptStore`: shared by workers on many machines
  (``pip install 'psycopg[binary]'``).

A store that lost an entry never yields a silently different prompt:
:func:`load_prompt` raises :class:`~ratchet.errors.TranscriptEntryMissing`
naming the missing hash.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import sqlite3
import sys
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ConfigError, TranscriptEntryMissing, TranscriptStoreUnavailable
from .messages import Message, chain_hash, message_hash
from .tools import ToolSpec

__all__ = [
    "ChainNode",
    "PostgresTranscriptStore",
    "SQLiteTranscriptStore",
    "StoreStats",
    "TranscriptStore",
    "default_transcript_store",
    "load_prompt",
    "save_messages",
    "store_from_url",
]


@dataclass(frozen=True)
class ChainNode:
    """One link of a transcript chain: ``hash = chain_hash(parent, message)``."""

    hash: str
    parent: str | None
    message: str
    """The SHA-256 of the message's JSON."""


@dataclass(frozen=True)
class StoreStats:
    """What a store holds."""

    messages: int
    nodes: int
    bytes: int
    """Bytes of message JSON stored (each distinct message counted once)."""


class TranscriptStore(ABC):
    """A content-addressed store of transcript messages and chain nodes.

    Implementations must make :meth:`put` idempotent (the same key written twice
    holds the same content) and safe to call from several workers at once.
    """

    @abstractmethod
    async def put(self, messages: Mapping[str, str], nodes: Sequence[ChainNode]) -> None:
        """Store messages (hash → JSON) and chain nodes; existing keys are kept."""

    @abstractmethod
    async def messages(self, hashes: Sequence[str]) -> dict[str, str]:
        """The JSON of the messages with these hashes; missing ones are left out."""

    @abstractmethod
    async def chain(self, head: str) -> list[ChainNode]:
        """The nodes from the root to ``head``, root first.

        When a node is missing, the list starts at the first node whose parent is
        missing (or is empty when ``head`` itself is missing): callers check that
        the first node has no parent.
        """

    @abstractmethod
    async def stats(self) -> StoreStats:
        """Counts and bytes held (for benchmarks and ``ratchet`` diagnostics)."""

    async def close(self) -> None:  # noqa: B027 (optional for backends without resources)
        """Release connections."""


async def load_prompt(
    store: TranscriptStore,
    head: str | None,
    appended: Sequence[Message | str],
    *,
    run_id: str,
    known: Mapping[str, Message] | None = None,
) -> list[Message]:
    """The full message list a reference names: the chain up to ``head``, then ``appended``.

    ``appended`` holds new messages inline, or the hash of a message an activity
    already stored (e.g. a tool result).

    Raises:
        TranscriptEntryMissing: a chain node or message is not in the store.
    """
    nodes: list[ChainNode] = []
    if head is not None:
        nodes = await store.chain(head)
        if not nodes:
            raise TranscriptEntryMissing(run_id, head, "chain node")
        if nodes[0].parent is not None:
            raise TranscriptEntryMissing(run_id, nodes[0].parent, "chain node")
    wanted = [n.message for n in nodes] + [e for e in appended if isinstance(e, str)]
    found: dict[str, Message] = dict(known or {})
    missing_bodies = [h for h in dict.fromkeys(wanted) if h not in found]
    if missing_bodies:
        for h, body in (await store.messages(missing_bodies)).items():
            message = _intact(h, body)
            if message is None:
                raise TranscriptEntryMissing(run_id, h, "intact message")
            found[h] = message
    out: list[Message] = []
    for h in (n.message for n in nodes):
        if h not in found:
            raise TranscriptEntryMissing(run_id, h, "message")
        out.append(found[h])
    for entry in appended:
        if isinstance(entry, Message):
            out.append(entry)
        elif entry in found:
            out.append(found[entry])
        else:
            raise TranscriptEntryMissing(run_id, entry, "message")
    return out


async def save_tools(store: TranscriptStore, tools: Sequence[ToolSpec]) -> str:
    """Store a run's tool specs by content; return the reference model calls carry."""
    body = json.dumps([t.model_dump(mode="json") for t in tools], sort_keys=True)
    ref = "tools-" + hashlib.sha256(body.encode()).hexdigest()
    await store.put({ref: body}, [])
    return ref


async def load_tools(store: TranscriptStore, ref: str, *, run_id: str) -> list[ToolSpec]:
    """The tool specs ``ref`` names.

    Raises:
        TranscriptEntryMissing: the store does not have them.
    """
    found = await store.messages([ref])
    if ref not in found:
        raise TranscriptEntryMissing(run_id, ref, "tool list")
    body = found[ref]
    try:
        if "tools-" + hashlib.sha256(body.encode()).hexdigest() != ref:
            raise ValueError("its body does not hash to its key")
        return [ToolSpec.model_validate(t) for t in json.loads(body)]
    except (ValueError, TypeError, RecursionError):
        raise TranscriptEntryMissing(run_id, ref, "intact tool list") from None


def _intact(h: str, body: str) -> Message | None:
    """The message a stored body holds, if it is the one its hash names.

    A row changed on disk (a bad sector, a hand edit, a broken migration) would
    otherwise send the model another prompt than the run's, or fail the activity
    with a parse error: it counts as lost.
    """
    try:
        message = Message.model_validate_json(body)
        # The body as stored, or as this ratchet writes it (a store may reformat JSON).
        if hashlib.sha256(body.encode()).hexdigest() != h and message_hash(message) != h:
            return None
    except (ValueError, UnicodeEncodeError):
        return None
    return message


async def save_messages(
    store: TranscriptStore, head: str | None, messages: Sequence[Message]
) -> str | None:
    """Append ``messages`` to the chain at ``head``; return the new head (idempotent)."""
    bodies: dict[str, str] = {}
    nodes: list[ChainNode] = []
    for m in messages:
        h = message_hash(m)
        bodies[h] = m.model_dump_json()
        node = chain_hash(head, h)
        nodes.append(ChainNode(node, head, h))
        head = node
    if bodies:
        await store.put(bodies, nodes)
    return head


_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS ratchet_messages (hash TEXT PRIMARY KEY, body TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS ratchet_nodes "
    "(hash TEXT PRIMARY KEY, parent TEXT, message TEXT NOT NULL)",
)
# Walks parent links from the head in one query; the recursion stops where a parent
# is missing, which load_prompt reports.
_CHAIN_SQL = """
WITH RECURSIVE chain(hash, parent, message, depth) AS (
    SELECT hash, parent, message, 0 FROM ratchet_nodes WHERE hash = {p}
    UNION ALL
    SELECT n.hash, n.parent, n.message, chain.depth + 1
    FROM ratchet_nodes n JOIN chain ON n.hash = chain.parent
)
SELECT hash, parent, message FROM chain ORDER BY depth DESC
"""


def _retry_busy(statement: Callable[[], object], seconds: float = 10.0) -> None:
    """Run ``statement``, retrying while another process holds the file.

    Switching to WAL can fail with "database is locked" at once, without waiting for
    the busy timeout, when another process opens the same new file at that moment.
    """
    deadline = time.monotonic() + seconds
    while True:
        try:
            statement()
            return
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


_SQLITE_OUTAGES = ("locked", "busy", "disk i/o", "unable to open", "readonly", "full")
"""SQLite errors of a file that exists but cannot be used right now."""


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def open_wal(path: Path) -> sqlite3.Connection:
    """A connection to a SQLite file shared by several processes, in WAL mode.

    The busy timeout comes first: worker processes starting together open the same
    file, and switching it to WAL (or creating the schema) must wait for the other.
    WAL: readers never wait for the writer.
    """
    db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=10.0)
    db.execute("PRAGMA busy_timeout=10000")
    _retry_busy(lambda: db.execute("PRAGMA journal_mode=WAL"))
    db.execute("PRAGMA synchronous=NORMAL")
    return db


class SQLiteTranscriptStore(TranscriptStore):
    """The embedded default: one SQLite file, for workers on one machine.

    Args:
        path: the database file (created with its directory when missing).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = open_wal(self.path)
        for statement in _SCHEMA:
            self._db.execute(statement)

    def _run(self, sql: str, params: Sequence[Any] = (), many: bool = False) -> list[Any]:
        with self._lock, self._outages():
            if many:
                with self._db:
                    self._db.executemany(sql, params)
                return []
            return self._db.execute(sql, params).fetchall()

    @contextlib.contextmanager
    def _outages(self) -> Iterator[None]:
        """SQLite's errors of a store that is there but cannot be used now, typed."""
        try:
            yield
        except sqlite3.OperationalError as e:
            reason = str(e)
            if not any(mark in reason.lower() for mark in _SQLITE_OUTAGES):
                raise
            full = "full" in reason.lower()
            raise TranscriptStoreUnavailable(repr(self), reason, full=full) from e

    async def put(self, messages: Mapping[str, str], nodes: Sequence[ChainNode]) -> None:
        def write() -> None:
            # A failed write rolls back whole: nothing half-written, nothing lost.
            with self._lock, self._outages(), self._db:
                self._db.execute("BEGIN")
                self._db.executemany(
                    "INSERT OR IGNORE INTO ratchet_messages VALUES (?, ?)", list(messages.items())
                )
                self._db.executemany(
                    "INSERT OR IGNORE INTO ratchet_nodes VALUES (?, ?, ?)",
                    [(n.hash, n.parent, n.message) for n in nodes],
                )

        await asyncio.to_thread(write)

    async def messages(self, hashes: Sequence[str]) -> dict[str, str]:
        out: dict[str, str] = {}
        for start in range(0, len(hashes), 500):
            part = list(hashes[start : start + 500])
            marks = ",".join("?" * len(part))
            rows = await asyncio.to_thread(
                self._run, f"SELECT hash, body FROM ratchet_messages WHERE hash IN ({marks})", part
            )
            out.update(dict(rows))
        return out

    async def chain(self, head: str) -> list[ChainNode]:
        rows = await asyncio.to_thread(self._run, _CHAIN_SQL.format(p="?"), [head])
        return [ChainNode(*row) for row in rows]

    async def stats(self) -> StoreStats:
        [(messages, size)] = await asyncio.to_thread(
            self._run, "SELECT count(*), coalesce(sum(length(body)), 0) FROM ratchet_messages"
        )
        [(nodes,)] = await asyncio.to_thread(self._run, "SELECT count(*) FROM ratchet_nodes")
        return StoreStats(messages=messages, nodes=nodes, bytes=size)

    async def delete_message(self, message: str) -> None:
        """Remove one message (for tests of what a lost entry does)."""
        await asyncio.to_thread(self._run, "DELETE FROM ratchet_messages WHERE hash = ?", [message])

    async def close(self) -> None:
        with self._lock:
            self._db.close()

    def __repr__(self) -> str:
        return f"SQLiteTranscriptStore({str(self.path)!r})"


class PostgresTranscriptStore(TranscriptStore):
    """A store shared by workers on many machines, in PostgreSQL (psycopg 3).

    Args:
        dsn: a libpq connection string, e.g. ``postgresql://user:pw@host/db``.
    """

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self._conn: Any = None
        self._lock = asyncio.Lock()

    async def _connection(self) -> Any:
        if self._conn is None or self._conn.closed:
            try:
                import psycopg
            except ImportError as e:  # pragma: no cover - depends on the install
                raise ConfigError(
                    "PostgresTranscriptStore needs psycopg: pip install 'psycopg[binary]'"
                ) from e
            self._conn = await psycopg.AsyncConnection.connect(self.dsn, autocommit=True)
            for statement in _SCHEMA:
                await self._conn.execute(statement)
        return self._conn

    async def _fetch(self, sql: str, params: Sequence[Any]) -> list[Any]:
        async with self._lock, self._outages():
            conn = await self._connection()
            cur = await conn.execute(sql, params)
            rows: list[Any] = await cur.fetchall()
            return rows

    @contextlib.asynccontextmanager
    async def _outages(self) -> AsyncIterator[None]:
        """A server that is down, restarting or unreachable, typed; the connection it
        broke is dropped, so the next call connects again."""
        try:
            yield
        except Exception as e:
            psycopg = sys.modules.get("psycopg")
            lost = isinstance(e, OSError) or (
                psycopg is not None and isinstance(e, psycopg.OperationalError)
            )
            if not lost:
                raise
            conn, self._conn = self._conn, None
            if conn is not None:
                with contextlib.suppress(Exception):
                    await conn.close()
            raise TranscriptStoreUnavailable(repr(self), _first_line(e)) from e

    async def put(self, messages: Mapping[str, str], nodes: Sequence[ChainNode]) -> None:
        async with self._lock, self._outages():
            conn = await self._connection()
            async with conn.transaction(), conn.cursor() as cur:
                await cur.executemany(
                    "INSERT INTO ratchet_messages VALUES (%s, %s) ON CONFLICT DO NOTHING",
                    list(messages.items()),
                )
                await cur.executemany(
                    "INSERT INTO ratchet_nodes VALUES (%s, %s, %s) ON CONFLICT DO NOTHING",
                    [(n.hash, n.parent, n.message) for n in nodes],
                )

    async def messages(self, hashes: Sequence[str]) -> dict[str, str]:
        rows = await self._fetch(
            "SELECT hash, body FROM ratchet_messages WHERE hash = ANY(%s)", [list(hashes)]
        )
        return dict(rows)

    async def chain(self, head: str) -> list[ChainNode]:
        rows = await self._fetch(_CHAIN_SQL.format(p="%s"), [head])
        return [ChainNode(*row) for row in rows]

    async def stats(self) -> StoreStats:
        [(messages, size)] = await self._fetch(
            "SELECT count(*), coalesce(sum(octet_length(body)), 0) FROM ratchet_messages", []
        )
        [(nodes,)] = await self._fetch("SELECT count(*) FROM ratchet_nodes", [])
        return StoreStats(messages=int(messages), nodes=int(nodes), bytes=int(size))

    async def close(self) -> None:
        if self._conn is not None:
            await self._conn.close()

    def __repr__(self) -> str:
        return "PostgresTranscriptStore(...)"  # the DSN may hold a password


def default_transcript_store() -> SQLiteTranscriptStore:
    """The embedded default: ``transcripts.sqlite`` in ratchet's data directory."""
    from .local._paths import data_dir

    return SQLiteTranscriptStore(data_dir() / "transcripts.sqlite")


def store_from_url(url: str | None) -> TranscriptStore:
    """A store from a URL: ``sqlite:///relative.sqlite``, ``sqlite:////absolute/path.sqlite``
    (as SQLAlchemy spells them) or ``postgresql://...``.

    None or empty: :func:`default_transcript_store`.

    Raises:
        ConfigError: the URL names no supported backend.
    """
    if not url:
        return default_transcript_store()
    if url.startswith("sqlite:///"):
        return SQLiteTranscriptStore(url[len("sqlite:///") :])
    if url.startswith(("postgresql://", "postgres://")):
        return PostgresTranscriptStore(url)
    raise ConfigError(
        f"bad transcript store URL {url!r}: use sqlite:////absolute/path.sqlite "
        "or postgresql://user:password@host/db"
    )
