"""A run's events as the messages of MCP progress notifications.

The lines are the ones ``ratchet run`` prints while it follows a run (one
describer serves both), without the terminal's column padding.
"""

from __future__ import annotations

from .. import events as ev
from .._render import describe_event, describe_tool_start, shorten
from ._resources import run_pending_uri

__all__ = ["progress_line"]

_MAX_LENGTH = 300


def progress_line(event: ev.RunEvent, run_id: str) -> str | None:
    """What a progress notification says about ``event``; None for the events a
    follower does not report (token pieces, snapshots, bookkeeping)."""
    match event:
        case ev.RunStarted():
            line: str | None = f"run {run_id} started"
        case ev.ModelCallStarted():
            line = f"model turn {event.turn}: asking {event.model}"
        case ev.ToolCallStarted():
            line = describe_tool_start(event)
        case ev.HandedOff():
            line = f"handoff from {event.from_agent} to {event.to_agent}"
        case ev.ApprovalRequested():
            described = describe_event(event, run_id) or ""
            # Shortened first: the way to answer must survive at the end of the line.
            line = f"{shorten(described, _MAX_LENGTH - 80)} (see {run_pending_uri(run_id)})"
            return line
        case ev.RunFinished():
            line = f"run {run_id} {event.outcome.replace('_', ' ')}"
        case _:
            line = describe_event(event, run_id)
    return shorten(line, _MAX_LENGTH) if line else None
