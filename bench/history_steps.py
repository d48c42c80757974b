"""One run's event history cut into the workload's steps, for ``python -m bench.breakdown``.

The workload is 3 model calls and 2 tool calls. A history is cut where each of those
steps begins (its ``ActivityTaskScheduled``, or the marker of a local activity that is
a model or tool call), so that every event belongs to exactly one group:

- **start**: ``WorkflowExecutionStarted``, the first workflow task and whatever the run
  records before its first step (ratchet: the marker of its snapshot local activity);
- **model call N / tool call N**: the step's activity events and everything up to the
  next step's scheduling, i.e. the workflow task that the step's completion triggers and
  the commands that task records besides the next step (markers, upserts);
- **end**: everything after the last step completed (the final workflow task, upserts,
  ``WorkflowExecutionCompleted``).

The same cut splits the run's time on the server (event timestamps, the server's clock):
each group's milliseconds end where the next group's begin, so they add up to the time
from ``WorkflowExecutionStarted`` to ``WorkflowExecutionCompleted``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from temporalio.api.common.v1 import Payload
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent

from .workload import TOOL_NAMES

__all__ = [
    "MODEL_ACTIVITIES",
    "TOOL_ACTIVITIES",
    "Group",
    "Timing",
    "cut",
    "describe",
    "payload_bytes",
    "timings",
]

MODEL_ACTIVITIES = frozenset({"bare.call_model", "ratchet.call_model", "invoke_model_activity"})
"""The activity types of a model call: (b), ratchet, the OpenAI Agents contrib (d)."""
TOOL_ACTIVITIES = frozenset({"bare.run_tool", "ratchet.run_tool", *(f"oa.{t}" for t in TOOL_NAMES)})
LOCAL_ACTIVITY_MARKER = "core_local_activity"
TIMES = "\u00d7"
"""The multiplication sign of the counts (``WFT`` times 3), escaped: ruff flags it."""
_MERGED = ("wft", "activity")

_E = EventType
_CLOSES = {
    _E.EVENT_TYPE_ACTIVITY_TASK_COMPLETED: "completed",
    _E.EVENT_TYPE_ACTIVITY_TASK_FAILED: "failed",
    _E.EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT: "timed out",
    _E.EVENT_TYPE_ACTIVITY_TASK_CANCELED: "canceled",
}
_ACTIVITY_PARTS = {
    _E.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED: "sched",
    _E.EVENT_TYPE_ACTIVITY_TASK_STARTED: "started",
    **_CLOSES,
}
_WFT = (
    _E.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED,
    _E.EVENT_TYPE_WORKFLOW_TASK_STARTED,
    _E.EVENT_TYPE_WORKFLOW_TASK_COMPLETED,
)
_NAMED = {
    _E.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED: "run started",
    _E.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED: "run completed",
    _E.EVENT_TYPE_WORKFLOW_PROPERTIES_MODIFIED: "memo upsert",
}


def _ms(event: HistoryEvent) -> float:
    return event.event_time.ToNanoseconds() / 1e6


def local_activity_type(event: HistoryEvent) -> str | None:
    """The activity type a local-activity marker records, or None for another event."""
    if event.event_type != _E.EVENT_TYPE_MARKER_RECORDED:
        return None
    marker = event.marker_recorded_event_attributes
    if marker.marker_name != LOCAL_ACTIVITY_MARKER or "data" not in marker.details:
        return None
    for payload in marker.details["data"].payloads:
        try:
            data = json.loads(payload.data)
        except ValueError:
            continue
        if isinstance(data, dict) and isinstance(data.get("activity_type"), str):
            return str(data["activity_type"])
    return None


def _step_type(event: HistoryEvent) -> str | None:
    """The activity type if ``event`` begins a model or tool call, else None."""
    if event.event_type == _E.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
        name: str | None = event.activity_task_scheduled_event_attributes.activity_type.name
    else:
        name = local_activity_type(event)
    return name if name in MODEL_ACTIVITIES or name in TOOL_ACTIVITIES else None


@dataclass(frozen=True)
class Group:
    label: str
    """``start``, ``model call 1``, ``tool call 1 (lookup_order)``..., ``end``."""
    kind: str
    """``start``, ``model``, ``tool`` or ``end``."""
    events: Sequence[HistoryEvent]
    activity: str | None = None
    """The step's activity type (model and tool calls)."""

    @property
    def size(self) -> int:
        """Protobuf bytes of the group's events."""
        return sum(e.ByteSize() for e in self.events)

    @property
    def payload_size(self) -> int:
        """Bytes of the ``data`` of every ``Payload`` in the group's events."""
        return sum(payload_bytes(e) for e in self.events)

    @property
    def local(self) -> bool:
        """The step ran as a local activity (a marker, no activity task)."""
        return bool(self.events) and self.events[0].event_type == _E.EVENT_TYPE_MARKER_RECORDED


def cut(events: Sequence[HistoryEvent]) -> list[Group]:
    """The history's groups, in order: start, one per step, end."""
    starts = [i for i, e in enumerate(events) if _step_type(e) is not None]
    if not starts:
        return [Group("start", "start", events), Group("end", "end", [])]
    groups = [Group("start", "start", events[: starts[0]])]
    counts = {"model": 0, "tool": 0}
    bounds = [*starts[1:], _last_step_end(events, starts[-1])]
    for begin, end in zip(starts, bounds, strict=True):
        activity = _step_type(events[begin])
        assert activity is not None
        kind = "model" if activity in MODEL_ACTIVITIES else "tool"
        counts[kind] += 1
        n = counts[kind]
        label = f"{kind} call {n}"
        if kind == "tool" and n <= len(TOOL_NAMES):
            label += f" ({TOOL_NAMES[n - 1]})"
        groups.append(Group(label, kind, events[begin:end], activity))
    groups.append(Group("end", "end", events[bounds[-1] :]))
    return groups


def _last_step_end(events: Sequence[HistoryEvent], begin: int) -> int:
    """Index just past the last step's closing event (the marker, for a local activity)."""
    first = events[begin]
    if first.event_type == _E.EVENT_TYPE_MARKER_RECORDED:
        return begin + 1
    for i in range(begin + 1, len(events)):
        e = events[i]
        if e.event_type in _CLOSES and _scheduled_id(e) == first.event_id:
            return i + 1
    return len(events)


def _scheduled_id(event: HistoryEvent) -> int:
    field = {
        _E.EVENT_TYPE_ACTIVITY_TASK_STARTED: "activity_task_started_event_attributes",
        _E.EVENT_TYPE_ACTIVITY_TASK_COMPLETED: "activity_task_completed_event_attributes",
        _E.EVENT_TYPE_ACTIVITY_TASK_FAILED: "activity_task_failed_event_attributes",
        _E.EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT: "activity_task_timed_out_event_attributes",
        _E.EVENT_TYPE_ACTIVITY_TASK_CANCELED: "activity_task_canceled_event_attributes",
    }.get(event.event_type)
    if field is None:
        return -1
    return int(getattr(event, field).scheduled_event_id)


# -- what the events are -----------------------------------------------------------------


def describe(group: Group) -> str:
    """The group's event types, compactly: ``ratchet.call_model sched/started/completed +
    WFT(times)3 + upsert (RatchetStatus)``: an activity's events joined, workflow-task
    events counted."""
    parts: list[list[str]] = []  # [kind, text, ...]
    for e in group.events:
        kind, text = _token(e, group)
        if parts and parts[-1][0] == kind and (kind in _MERGED or parts[-1][1] == text):
            parts[-1].append(text)
        else:
            parts.append([kind, text])
    out = []
    for kind, *texts in parts:
        if kind == "wft":
            out.append(f"WFT{TIMES}{len(texts)}")
        elif kind == "activity":
            out.append("/".join(texts))
        else:
            out.append(texts[0] + (f" {TIMES}{len(texts)}" if len(texts) > 1 else ""))
    return " + ".join(out)


def _token(event: HistoryEvent, group: Group) -> tuple[str, str]:
    t = event.event_type
    if t in _WFT:
        return "wft", ""
    if t in _ACTIVITY_PARTS:
        part = _ACTIVITY_PARTS[t]
        if t == _E.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            name = event.activity_task_scheduled_event_attributes.activity_type.name
            return "activity", f"{name} {part}"
        return "activity", part
    if t == _E.EVENT_TYPE_MARKER_RECORDED:
        local = local_activity_type(event)
        if local is not None:
            return "marker", f"local activity {local} (marker)"
        return "marker", f"marker {event.marker_recorded_event_attributes.marker_name}"
    if t == _E.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES:
        fields = event.upsert_workflow_search_attributes_event_attributes.search_attributes
        return "upsert", f"upsert ({', '.join(sorted(fields.indexed_fields))})"
    if t in _NAMED:
        return "named", _NAMED[t]
    name = EventType.Name(t).removeprefix("EVENT_TYPE_")
    return "other", "".join(w.capitalize() for w in name.split("_"))


def payload_bytes(message: Message) -> int:
    """Bytes of the ``data`` of every ``Payload`` anywhere in ``message``: inputs, results,
    headers, marker details, search-attribute values. Their metadata (encoding, type) is
    not counted, nor is anything else (identities, task-queue names, ids, timeouts)."""
    if isinstance(message, Payload):
        return len(message.data)
    total = 0
    for field, value in message.ListFields():
        if field.type != FieldDescriptor.TYPE_MESSAGE:
            continue
        entry = field.message_type
        assert entry is not None
        if entry.GetOptions().map_entry:
            if entry.fields_by_name["value"].type == FieldDescriptor.TYPE_MESSAGE:
                total += sum(payload_bytes(v) for v in value.values())
        elif field.is_repeated:
            total += sum(payload_bytes(v) for v in value)
        else:
            total += payload_bytes(value)
    return total


# -- where the milliseconds go -------------------------------------------------------------


@dataclass(frozen=True)
class Timing:
    """One group's milliseconds in one run, from the events' timestamps.

    ``gap`` runs from the group's completion (the step's activity completed; for the start,
    the run started) to the next command's scheduling (the next step's; for the end, the
    run's completion): the workflow task in between (``wft_wait`` + ``wft_run``) and the
    rest (the server's bookkeeping around it). The last step's gap is the end's.
    """

    label: str
    activity_wait: float | None = None
    """Scheduled -> started (None for start, end and local activities)."""
    activity_run: float | None = None
    """Started -> completed."""
    wft_wait: float | None = None
    """Workflow task scheduled -> started, summed over the group's workflow tasks."""
    wft_run: float | None = None
    """Workflow task started -> completed, summed."""
    gap: float | None = None
    total: float = 0.0
    """The group's share of the run: the step's activity and its gap; for start and end,
    the gap."""


def timings(groups: Sequence[Group]) -> list[Timing]:
    """Each group's :class:`Timing`; their totals add up to the run's time on the server."""
    events = [e for g in groups for e in g.events]
    if not events:
        return []
    run_start, run_end = _ms(events[0]), _ms(events[-1])
    steps = [g for g in groups if g.kind in ("model", "tool")]
    out = []
    for i, group in enumerate(groups):
        wait, run = _workflow_tasks(group.events)
        if group.kind == "start":
            nxt = _ms(steps[0].events[0]) if steps else run_end
            gap = nxt - run_start
            out.append(Timing(group.label, None, None, wait, run, gap, gap))
            continue
        if group.kind == "end":
            anchor = _completed(steps[-1]) if steps else run_start
            gap = run_end - anchor
            out.append(Timing(group.label, None, None, wait, run, gap, gap))
            continue
        scheduled, completed = _ms(group.events[0]), _completed(group)
        started = _first(group, _E.EVENT_TYPE_ACTIVITY_TASK_STARTED)
        last = group is steps[-1]
        nxt_group = groups[i + 1] if i + 1 < len(groups) else None
        step_gap = None
        if not last and nxt_group is not None and nxt_group.events:
            step_gap = _ms(nxt_group.events[0]) - completed
        out.append(
            Timing(
                group.label,
                None if started is None else started - scheduled,
                None if started is None else completed - started,
                None if last else wait,
                None if last else run,
                step_gap,
                completed - scheduled + (step_gap or 0.0),
            )
        )
    return out


def _first(group: Group, event_type: int) -> float | None:
    for e in group.events:
        if e.event_type == event_type:
            return _ms(e)
    return None


def _completed(step: Group) -> float:
    """When the step's activity closed (a local activity: when its marker was recorded)."""
    for e in step.events:
        if e.event_type in _CLOSES:
            return _ms(e)
    return _ms(step.events[0])


def _workflow_tasks(events: Sequence[HistoryEvent]) -> tuple[float | None, float | None]:
    """(scheduled -> started, started -> completed) of the workflow tasks among ``events``,
    summed; None when there is none."""
    wait = run = 0.0
    scheduled = started = None
    seen = False
    for e in events:
        if e.event_type == _E.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED:
            scheduled = _ms(e)
        elif e.event_type == _E.EVENT_TYPE_WORKFLOW_TASK_STARTED and scheduled is not None:
            started = _ms(e)
            wait += started - scheduled
        elif e.event_type == _E.EVENT_TYPE_WORKFLOW_TASK_COMPLETED and started is not None:
            run += _ms(e) - started
            seen = True
            scheduled = started = None
    return (wait, run) if seen else (None, None)
