"""Worker logs without tracebacks for failures ratchet expects.

The Temporal SDK logs every failed activity attempt with its full traceback. A
429 that Temporal retries, a model timeout or a run naming an agent nobody hosts
are part of normal operation: their traceback only shows ratchet's own raise
site, and thirty of them buried the one traceback that mattered. This filter
turns such typed failures into one line (which activity of which run, the error
type and message); every other exception keeps its traceback.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from temporalio.exceptions import ApplicationError

from .errors import MODEL_ERRORS

__all__ = ["EXPECTED_FAILURE_TYPES", "ExpectedFailureFilter", "install_expected_failure_filter"]

EXPECTED_FAILURE_TYPES = frozenset(
    {
        *MODEL_ERRORS,
        "ApprovalError",
        "BudgetExceeded",
        "ConfigError",
        "GuardrailTripped",
        "OutputValidationError",
        "PayloadTooLarge",
        "RepairLimitExceeded",
        "RetryableToolError",
        "TranscriptEntryMissing",
        "UnknownAgent",
    }
)
"""ApplicationError types logged as one line. ``ToolFailed`` is not among them: a
fatal tool raised something its author did not expect, and the traceback is the
way to find out where."""

# The SDK logs activity failures here (temporalio.activity.logger's logger).
_LOGGERS = ("temporalio.activity",)


class ExpectedFailureFilter(logging.Filter):
    """Rewrites records of expected, typed failures to one line without traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, ApplicationError) and error.type in EXPECTED_FAILURE_TYPES:
            where = _activity_of(getattr(record, "temporal_activity", None))
            what = " ".join(f"{error.type}: {error.message}".split())
            record.msg = f"{where}: {what}" if where else f"{record.getMessage()}: {what}"
            record.args = ()
            record.exc_info = None
            record.exc_text = None
        return True


def _activity_of(details: Mapping[str, Any] | None) -> str | None:
    if not details:
        return None
    return (
        f"activity {details.get('activity_type')} of run {details.get('workflow_id')} "
        f"failed (attempt {details.get('attempt')})"
    )


_FILTER = ExpectedFailureFilter()


def install_expected_failure_filter() -> None:
    """Install the filter on the SDK's loggers, once per process."""
    for name in _LOGGERS:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
