"""Which recorded behaviour a run replays: ``workflow.patched``, or the run's version.

Every ``workflow.patched`` call of a new run costs two history events (a marker and
an upsert of Temporal's ``TemporalChangeVersion`` search attribute). Runs started at
``RunInput.version`` 2 or later take every path introduced before version 2 without
asking, so their histories carry neither; runs recorded earlier say ``version: 1`` in
their input and ask ``workflow.patched`` as they did when they ran.

A patch added after version 2 is asked with ``workflow.patched`` as usual (or with a
version 3 here).
"""

from __future__ import annotations

from temporalio import workflow

__all__ = ["BEFORE_VERSION_2", "LEAN_VERSION", "patched"]

LEAN_VERSION = 2
"""The first ``RunInput.version`` whose runs take the patches below without markers."""

BEFORE_VERSION_2 = frozenset(
    {
        "ratchet.local-snapshot",
        "ratchet.linear-history",
        "ratchet.concurrency-cap",
        "ratchet.approval-proof",
        "ratchet.budget-ask-memo",
    }
)
"""The patches every version-2 run takes."""


def patched(patch_id: str, run_version: int) -> bool:
    """Whether a run of ``run_version`` takes the path ``patch_id`` introduced."""
    if run_version >= LEAN_VERSION and patch_id in BEFORE_VERSION_2:
        return True
    return workflow.patched(patch_id)
