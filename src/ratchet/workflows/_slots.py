"""Concurrency caps: at most N concurrent runs of an agent (or of an agent for one tenant).

``SlotsWorkflow`` grants the slots of one cap; ``RunSlots`` is a run's side: it
asks for its slots, waits for them and gives them back. The protocol is in
``ratchet._slots_protocol``. A run that is terminated never
releases its slot: while runs wait, the slots workflow checks its holders every
``sweep_seconds`` with an activity and frees the slots of runs that are no longer
running. State survives restarts and is carried over continue-as-new.
"""

from __future__ import annotations

import contextlib
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from .._protocol import AgentSpec, Carried
    from .._slots_protocol import (
        CHECK_RUNS_ACTIVITY,
        REQUEST_SLOT_ACTIVITY,
        SLOT_GRANTED_SIGNAL,
        SLOTS_RELEASE_SIGNAL,
        SLOTS_REQUEST_SIGNAL,
        SLOTS_STATUS_QUERY,
        SLOTS_WORKFLOW_TYPE,
        SlotRequest,
        SlotsInput,
        SlotsStatus,
        slots_id,
    )

from ._history_size import history_full
from ._status import Status

__all__ = ["RunSlots", "SlotsWorkflow", "caps_of"]


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
        return history_full(self._s.max_history_events)

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


def caps_of(spec: AgentSpec, tenant: str | None) -> list[tuple[str, int]]:
    """The concurrency caps (slots workflow id, limit) a run of ``spec`` must pass."""
    caps = []
    if spec.max_concurrent_runs is not None:
        caps.append((slots_id(spec.name), spec.max_concurrent_runs))
    if tenant and spec.max_concurrent_runs_per_tenant is not None:
        caps.append((slots_id(spec.name, tenant), spec.max_concurrent_runs_per_tenant))
    return caps


class RunSlots:
    """The slots a run holds, of the caps its agent has."""

    def __init__(self, status: Status, carried: Carried | None) -> None:
        self._status = status
        # A continued run keeps the slots it was granted (it is the same workflow id,
        # which is what the slots workflow tracks) and never asks again.
        self.held: list[str] = list(carried.slots) if carried else []
        self._granted: set[str] = set(self.held)

    def granted(self, key: str) -> None:
        """A cap let this run start (the slot-granted signal)."""
        self._granted.add(key)

    async def take(self, caps: list[tuple[str, int]]) -> None:
        """Wait, queued, until every concurrency cap of the run grants it a slot."""
        info = workflow.info()
        self._status.queued()
        for key, limit in caps:
            self._status.set_step(f"queued: waiting for a slot of {key} (at most {limit} at once)")
            self._status.publish()
            self.held.append(key)  # released at the end even if never granted
            await workflow.execute_local_activity(
                REQUEST_SLOT_ACTIVITY,
                SlotRequest(
                    key=key, run_id=info.workflow_id, limit=limit, task_queue=info.task_queue
                ),
                start_to_close_timeout=timedelta(seconds=30),
                summary=f"request a slot of {key}",
            )
            await self._slot(key)

    async def _slot(self, key: str) -> None:
        await workflow.wait_condition(lambda: key in self._granted)

    async def release(self) -> None:
        """However the run ends, its concurrency slots go to the next runs.

        Not in a ``finally``: that would also run when the worker evicts the workflow
        from its cache, where it must not issue commands.
        """
        me = workflow.info().workflow_id
        for key in self.held:
            with contextlib.suppress(ActivityError, ApplicationError):
                await workflow.get_external_workflow_handle(key).signal(SLOTS_RELEASE_SIGNAL, me)
