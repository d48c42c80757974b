"""When a workflow's history is long enough to continue as new (every workflow here)."""

from __future__ import annotations

from temporalio import workflow

__all__ = ["history_full"]


def history_full(max_events: int, max_bytes: int | None = None) -> bool:
    """The server suggests continue-as-new, or the history holds ``max_events`` events
    (or ``max_bytes`` bytes)."""
    info = workflow.info()
    return (
        info.is_continue_as_new_suggested()
        or info.get_current_history_length() >= max_events
        or (max_bytes is not None and info.get_current_history_size() >= max_bytes)
    )
