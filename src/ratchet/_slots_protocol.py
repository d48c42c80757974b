"""The contract of concurrency caps: names, messages and the workflow ids of caps.

One long-lived slots workflow per cap, ``ratchet-slots-<agent>[-<tenant>]``
(``ratchet.workflows._slots``). A run that needs a slot signals ``request``
(through a local activity doing signal-with-start, so the first run starts it);
the slots workflow grants slots in arrival order (FIFO) and tells the run by
signalling it back; the run signals ``release`` when it ends, however it ends.
"""

from __future__ import annotations

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
