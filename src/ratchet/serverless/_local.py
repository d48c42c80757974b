"""Invoking a Lambda handler on your own machine, with a deadline as Lambda would give it."""

from __future__ import annotations

import time
import uuid

__all__ = ["LocalContext"]


class LocalContext:
    """The parts of AWS Lambda's context object Temporal's Lambda worker reads.

    ``handler({}, LocalContext(60))`` runs one invocation against the Temporal server
    of ``TEMPORAL_ADDRESS`` (or the handler's settings) that must end within 60 s, as a
    function with a 60 s timeout would.
    """

    def __init__(self, seconds: float, *, function_name: str = "ratchet-local") -> None:
        self.deadline = time.monotonic() + seconds
        self.aws_request_id = uuid.uuid4().hex
        self.function_name = function_name
        self.invoked_function_arn = f"arn:aws:lambda:local:000000000000:function:{function_name}"

    def get_remaining_time_in_millis(self) -> int:
        """Milliseconds left before the deadline (0 once passed)."""
        return max(0, int((self.deadline - time.monotonic()) * 1000))
