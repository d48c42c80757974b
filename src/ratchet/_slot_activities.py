"""The activities of concurrency caps: they reach the slots workflow from outside it."""

from __future__ import annotations

from temporalio import activity
from temporalio.client import WorkflowExecutionStatus
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.service import RPCError, RPCStatusCode

from ._slots_protocol import (
    CHECK_RUNS_ACTIVITY,
    REQUEST_SLOT_ACTIVITY,
    SLOTS_REQUEST_SIGNAL,
    SLOTS_WORKFLOW_TYPE,
    SlotRequest,
    SlotsInput,
)

__all__ = ["check_runs", "request_slot"]


@activity.defn(name=REQUEST_SLOT_ACTIVITY)
async def request_slot(request: SlotRequest) -> None:
    """Signal-with-start the slots workflow (started by the first run that needs it)."""
    await activity.client().start_workflow(
        SLOTS_WORKFLOW_TYPE,
        SlotsInput(key=request.key, limit=request.limit),
        id=request.key,
        task_queue=request.task_queue or activity.info().task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        start_signal=SLOTS_REQUEST_SIGNAL,
        start_signal_args=[request],
        static_summary=f"concurrency cap {request.key}",
    )


@activity.defn(name=CHECK_RUNS_ACTIVITY)
async def check_runs(run_ids: list[str]) -> list[str]:
    """The runs among ``run_ids`` that are still running."""
    client = activity.client()
    alive: list[str] = []
    for run_id in run_ids:
        try:
            desc = await client.get_workflow_handle(run_id).describe()
        except RPCError as e:
            if e.status == RPCStatusCode.NOT_FOUND:
                continue
            raise
        if desc.status == WorkflowExecutionStatus.RUNNING:
            alive.append(run_id)
    return alive
