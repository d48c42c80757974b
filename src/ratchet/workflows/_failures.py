"""What an activity failure means for the run: its taxonomy name and its message."""

from __future__ import annotations

import asyncio
from typing import NamedTuple

from temporalio import workflow
from temporalio.exceptions import (
    ActivityError,
    ApplicationError,
    TimeoutError,
    is_cancelled_exception,
)

with workflow.unsafe.imports_passed_through():
    from .._protocol import MODEL_ACTIVITY
    from ..errors import RunErrorType

__all__ = ["ActivityFailure", "failure_of"]


class ActivityFailure(NamedTuple):
    type: str
    """A ``RunErrorType`` name, or whatever type the activity's own code failed with."""
    message: str


def failure_of(e: ActivityError) -> ActivityFailure:
    """The taxonomy name and message of an activity failure.

    Raises:
        asyncio.CancelledError: the activity failed because the run is being
            cancelled, so the run is cancelled too.
    """
    if is_cancelled_exception(e):
        raise asyncio.CancelledError() from e
    cause = e.cause
    if isinstance(cause, ApplicationError):
        return ActivityFailure(cause.type or "ApplicationError", cause.message)
    if isinstance(cause, TimeoutError):
        timeout: RunErrorType = (
            "ModelTimeout" if e.activity_type == MODEL_ACTIVITY else "ToolTimeout"
        )
        return ActivityFailure(
            timeout, f"{e.activity_type} timed out ({cause.type.name if cause.type else 'timeout'})"
        )
    return ActivityFailure(type(cause).__name__ if cause else "ActivityError", str(cause or e))
