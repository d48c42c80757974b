"""Who started a run through Nexus, read from the run's start event.

A run started by a Nexus operation (:mod:`ratchet.nexus`) carries the caller's
completion callback on its ``WorkflowExecutionStarted`` event, and the callback links
to the caller's ``NexusOperationScheduled`` event, in the caller's namespace.
"""

from __future__ import annotations

from collections.abc import Iterable

from temporalio.api.common.v1 import Callback

from .events import NexusCaller

__all__ = ["nexus_caller"]


def nexus_caller(callbacks: Iterable[Callback]) -> NexusCaller | None:
    """The workflow whose Nexus operation started the run; None: a client started it."""
    for callback in callbacks:
        if not callback.HasField("nexus"):
            continue
        for link in callback.links:
            if link.HasField("workflow_event"):
                caller = link.workflow_event
                return NexusCaller(
                    namespace=caller.namespace,
                    workflow_id=caller.workflow_id,
                    run_id=caller.run_id,
                    event_id=caller.event_ref.event_id if caller.HasField("event_ref") else None,
                )
    return None
