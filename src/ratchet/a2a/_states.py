"""How a run's state reads as an A2A task state: one table, the contract.

=================  ==================  ================================================
run state          A2A task state      when
=================  ==================  ================================================
starting, queued   ``submitted``       started; no model call yet (or waiting for a
                                       concurrency slot)
running            ``working``         a model or tool call is under way
waiting-approval   ``input-required``  a tool call (or a spent budget) waits for a
                                       person: answer with an approval message
waiting-input      ``input-required``  a chat run answered and waits for the next
                                       message
completed          ``completed``       the answer is the task's artifact
failed             ``failed``          the status message names the error
cancelled          ``canceled``        ``tasks/cancel`` (or any other cancellation)
terminated,        ``failed``          Temporal closed the run itself
timed_out
=================  ==================  ================================================
"""

from __future__ import annotations

from a2a.types import TaskState

__all__ = ["FINAL", "INTERRUPTED", "TASK_STATE_OF", "state_name"]

TASK_STATE_OF: dict[str, TaskState] = {
    "starting": TaskState.TASK_STATE_SUBMITTED,
    "queued": TaskState.TASK_STATE_SUBMITTED,
    "running": TaskState.TASK_STATE_WORKING,
    "waiting-approval": TaskState.TASK_STATE_INPUT_REQUIRED,
    "waiting-input": TaskState.TASK_STATE_INPUT_REQUIRED,
    "completed": TaskState.TASK_STATE_COMPLETED,
    "failed": TaskState.TASK_STATE_FAILED,
    "cancelled": TaskState.TASK_STATE_CANCELED,
    "terminated": TaskState.TASK_STATE_FAILED,
    "timed_out": TaskState.TASK_STATE_FAILED,
}
"""The A2A task state of each run state (every one of ``ratchet.RUN_STATES``)."""

FINAL = frozenset(
    {
        TaskState.TASK_STATE_COMPLETED,
        TaskState.TASK_STATE_FAILED,
        TaskState.TASK_STATE_CANCELED,
        TaskState.TASK_STATE_REJECTED,
    }
)
"""Terminal task states: the run has ended; the task takes no more messages."""

INTERRUPTED = frozenset({TaskState.TASK_STATE_INPUT_REQUIRED, TaskState.TASK_STATE_AUTH_REQUIRED})
"""The run waits for the client: a stream of the task ends here until it answers."""


def state_name(state: TaskState) -> str:
    """``input-required`` for ``TASK_STATE_INPUT_REQUIRED``: how people write it."""
    return TaskState.Name(state).removeprefix("TASK_STATE_").lower().replace("_", "-")
