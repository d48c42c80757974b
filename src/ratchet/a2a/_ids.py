"""Task ids are run ids.

A task's id, and its context id, are the id of the run behind it: ``tasks/get``,
``tasks/cancel`` and a follow-up message name the run directly, and any run of the
agent (started over A2A, the CLI or the HTTP API) can be read as a task.

A new task's run id is derived from the message that starts it:
``<agent>-a2a-<the first 20 hex digits of sha256(tenant, contextId, messageId)>``.
Sending the same message again (same ``messageId``), e.g. a retry after a dropped
connection, therefore returns the task it started instead of starting a second run.
"""

from __future__ import annotations

import hashlib
import json

__all__ = ["new_task_id"]


def new_task_id(agent: str, message_id: str, *, tenant: str | None, context_id: str) -> str:
    """The run id of the task a message with ``message_id`` starts."""
    # As a JSON list, no two different triples can give the same key.
    key = json.dumps([tenant, context_id, message_id])
    return f"{agent}-a2a-{hashlib.sha256(key.encode()).hexdigest()[:20]}"
