"""Delta stores: where live deltas travel from the model activity to subscribers.

Deltas are a live view of a model call. They never enter the event history (only the
call's final message does, once), so they need a place of their own that a worker
writes and every subscriber reads: a table beside the transcripts, in the same
database (``bench/STREAMING.md`` has the measurements behind this choice).

A store keeps a delta for at most its ``retention`` after writing it; then only the
history remains. Writers prune expired rows as they go (:meth:`DeltaStore.prune_if_due`).
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from datetime import timedelta

from ._delta import CallKey, Delta, StoredDelta

__all__ = ["DEFAULT_RETENTION", "DeltaStore"]

DEFAULT_RETENTION = timedelta(hours=1)
"""How long deltas are kept after they are written, by default."""

_PRUNE_EVERY_SECONDS = 60.0


class DeltaStore(ABC):
    """A table of live deltas, keyed by (execution, call id, attempt, offset).

    Every method is safe to call from several tasks; a store is shared by the model
    activities of a worker, and by the subscribers of a client process.

    Args:
        retention: how long a delta is kept after it was written.
    """

    def __init__(self, retention: timedelta = DEFAULT_RETENTION) -> None:
        if retention <= timedelta(0):
            raise ValueError(f"retention must be positive, got {retention}")
        self.retention = retention
        self._last_prune = 0.0

    @abstractmethod
    async def append(
        self, run_id: str, key: CallKey, attempt: int, deltas: Sequence[tuple[int, Delta]]
    ) -> None:
        """Write ``(offset, delta)`` pairs of one attempt, in one transaction, and wake the
        subscribers. Writing an offset again keeps the first write (a retry is idempotent)."""

    @abstractmethod
    async def read(
        self, key: CallKey, after: tuple[int, int] = (0, -1), limit: int = 1000
    ) -> list[StoredDelta]:
        """The deltas of a call after ``(attempt, offset)``, in order: attempt, then offset."""

    @abstractmethod
    async def version(self) -> int:
        """A number that changes when anything is written (by any process).

        Read it *before* :meth:`read`, then pass it to :meth:`wait_changed`: a write in
        between makes the wait return at once, so nothing is missed."""

    @abstractmethod
    async def wait_changed(self, since: int, seconds: float) -> int:
        """Wait until :meth:`version` differs from ``since``, or ``seconds`` pass;
        return the version then."""

    @abstractmethod
    async def delete_older_than(self, cutoff: float) -> int:
        """Delete the deltas written before ``cutoff`` (seconds since the epoch); return how
        many."""

    @abstractmethod
    async def delete_run(self, run_id: str) -> int:
        """Delete every delta of a run (all its executions); return how many."""

    async def prune_if_due(self) -> int:
        """Delete expired deltas, at most once a minute per store: called by writers, so
        the table never keeps more than the retention window (plus a minute)."""
        now = time.time()
        if now - self._last_prune < _PRUNE_EVERY_SECONDS:
            return 0
        self._last_prune = now
        return await self.delete_older_than(now - self.retention.total_seconds())

    async def close(self) -> None:  # noqa: B027 (optional for backends without resources)
        """Release connections."""
