"""SlotsWorkflow: at most N concurrent runs of an agent (or of an agent for one tenant).

One long-lived workflow per cap, ``ratchet-slots-<agent>[-<tenant>]``. A run that
needs a slot signals ``request`` (through a local activity doing signal-with-start,
so the first run starts it); the slots workflow grants slots in arrival order (FIFO)
and tells the run by signalling it back; the run signals ``release`` when it ends,
however it ends. A run that is terminated never releases: while runs wait, the
slots workflow checks its holders every ``sweep_seconds`` with an activity and
frees the slots of runs that are no longer running. State survives restarts and is
carried over continue-as-new.
"""

from __future__ import annotations

import contextlib
from datetime import timedelta

from temporalio import activity, workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "CHECK_RUNS_ACTIVITY",
    "REQUEST_SLOT_ACTIVITY",
    "SLOTS_RELEASE_SIGNAL",
    "SLOTS_REQUEST_SIGNAL",
    "SLOTS_STATUS_QUERY",
    "SLOTS_WORKFLOW_TYPE",
    "SLOT_GRANTED_SIGNAL",
    "SlotRequest",
    "SlotsInput",
    "SlotsStatus",
    "SlotsWorkflow",
    "check_runs",
    "request_slot",
    "slots_id",
]

SLOTS_WORKFLOW_TYPE = "ratchet.Slots"
SLOTS_REQUEST_SIGNAL = "ratchet.slots.request"
SLOTS_RELEASE_SIGNAL = "ratchet.slots.release"
SLOTS_STATUS_QUERY = "ratchet.slots.status"
SLOT_GRANTED_SIGNAL = "ratchet.slot_granted"
"""Sent by the slots workflow to the run it grants a slot to."""
REQUEST_SLOT_ACTIVITY = "ratchet.request_slot"
CHECK_RUNS_ACTIVITY = "ratchet.check_runs"


def slots_id(agent: str, tenant: str | None = None) -> str:
    """The workflow id of a concurrency cap."""
    return f"ratchet-slots-{agent}" + (f"-{tenant}" if tenant else "")


class SlotRequest(BaseModel):
    """A run asks for a slot (local activity input, then the request signal)."""

    model_config = ConfigDict(frozen=True)

    key: str
    """The slots workflow id."""
    run_id: str
    limit: int = Field(gt=0)
    """The cap, from the agent snapshot of the asking run."""
    task_queue: str = ""


class SlotsStatus(BaseModel):
    key: str
    limit: int
    running: list[str] = []
    queued: list[str] = []


class SlotsInput(BaseModel):
    key: str
    limit: int
    running: list[str] = []
    queued: list[str] = []
    sweep_seconds: float = 30.0
    max_history_events: int = 2_000


@workflow.defn(name=SLOTS_WORKFLOW_TYPE)
class SlotsWorkflow:
    """Grants at most ``limit`` slots at a time, in arrival order."""

    @workflow.init
    def __init__(self, inp: SlotsInput) -> None:
        self._s = inp.model_copy(deep=True)
        self._changed = False

    @workflow.run
    async def run(self, inp: SlotsInput) -> None:
        workflow.set_current_details(f"concurrency cap **{inp.key}**")
        while not self._history_full():
            await self._grant()
            self._changed = False
            sweep = timedelta(seconds=self._s.sweep_seconds) if self._s.queued else None
            try:
                await workflow.wait_condition(
                    lambda: self._changed or self._history_full(), timeout=sweep
                )
            except TimeoutError:
                await self._sweep()
        await workflow.wait_condition(workflow.all_handlers_finished)
        workflow.continue_as_new(self._s)

    def _history_full(self) -> bool:
        info = workflow.info()
        return (
            info.get_current_history_length() >= self._s.max_history_events
            or info.is_continue_as_new_suggested()
        )

    @workflow.signal(name=SLOTS_REQUEST_SIGNAL)
    def request(self, request: SlotRequest) -> None:
        self._changed = True
        # The newest run's snapshot carries the agent's current cap.
        self._s.limit = request.limit
        if request.run_id not in self._s.running and request.run_id not in self._s.queued:
            self._s.queued.append(request.run_id)

    @workflow.signal(name=SLOTS_RELEASE_SIGNAL)
    def release(self, run_id: str) -> None:
        self._changed = True
        for holders in (self._s.running, self._s.queued):
            with contextlib.suppress(ValueError):
                holders.remove(run_id)

    @workflow.query(name=SLOTS_STATUS_QUERY)
    def status(self) -> SlotsStatus:
        return SlotsStatus(
            key=self._s.key,
            limit=self._s.limit,
            running=list(self._s.running),
            queued=list(self._s.queued),
        )

    async def _grant(self) -> None:
        while self._s.queued and len(self._s.running) < self._s.limit:
            run_id = self._s.queued.pop(0)
            self._s.running.append(run_id)
            try:
                await workflow.get_external_workflow_handle(run_id).signal(
                    SLOT_GRANTED_SIGNAL, self._s.key
                )
            except Exception:  # the run is gone: free its slot again
                self._s.running.remove(run_id)

    async def _sweep(self) -> None:
        """Free the slots of runs that ended without releasing them (terminated)."""
        try:
            alive: list[str] = await workflow.execute_activity(
                CHECK_RUNS_ACTIVITY,
                list(self._s.running),
                result_type=list[str],
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=RetryPolicy(maximum_attempts=3),
            )
        except ActivityError:
            # The server could not say (yet): keep every holder and ask at the next sweep.
            # Failing here would lose the holders and let too many runs in.
            return
        self._s.running = [r for r in self._s.running if r in alive]


@activity.defn(name=REQUEST_SLOT_ACTIVITY)
async def request_slot(request: SlotRequest) -> None:
    """Signal-with-start the slots workflow (started by the first run that needs it)."""
    from temporalio.common import WorkflowIDConflictPolicy

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
    from temporalio.client import WorkflowExecutionStatus
    from temporalio.service import RPCError, RPCStatusCode

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
