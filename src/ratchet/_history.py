"""Reading a run's event history across its executions (continue-as-new keeps the id)."""

from __future__ import annotations

from typing import Any

from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client

from ._protocol import (
    MODEL_ACTIVITY,
    SNAPSHOT_ACTIVITY,
    TOOL_ACTIVITY,
    AgentSpec,
    ModelRequest,
    ModelResponse,
    RunInput,
    ToolRequest,
)
from ._protocol import ToolResult as ToolResultModel
from .messages import Message, message_hash, opening_messages

__all__ = ["executions", "recorded_opening", "transcript_of"]


async def executions(client: Client, run_id: str) -> list[list[HistoryEvent]]:
    """The event histories of every execution of run ``run_id``, the first one first.

    Follows the chain backwards from the latest execution through each start event's
    ``continued_execution_run_id``.
    """
    out: list[list[HistoryEvent]] = []
    execution_id: str | None = None
    while True:
        handle = client.get_workflow_handle(run_id, run_id=execution_id)
        events = [e async for e in handle.fetch_history_events()]
        out.append(events)
        first = events[0] if events else None
        if first is None or first.event_type != EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED:
            break
        previous = first.workflow_execution_started_event_attributes.continued_execution_run_id
        if not previous:
            break
        execution_id = previous
    out.reverse()
    return out


async def recorded_opening(client: Client, events: list[HistoryEvent]) -> list[Message]:
    """The messages a linear-history run opens with (instructions and prompt), which its
    model calls refer to by hash: rebuilt from the run's input and its agent snapshot."""
    decode = client.data_converter.decode
    inp: RunInput | None = None
    spec: AgentSpec | None = None
    for event in events:
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED:
            payloads = event.workflow_execution_started_event_attributes.input.payloads
            [inp] = await decode(payloads, [RunInput])
            spec = inp.carried.spec if inp.carried else None
        elif event.event_type == EventType.EVENT_TYPE_MARKER_RECORDED and spec is None:
            details = event.marker_recorded_event_attributes.details
            if (
                "result" in details
                and SNAPSHOT_ACTIVITY.encode() in details["data"].SerializeToString()
            ):
                [spec] = await decode(details["result"].payloads, [AgentSpec])
        if inp is not None and spec is not None:
            return opening_messages(spec.instructions, inp.prompt)
    return []


async def transcript_of(client: Client, histories: list[list[HistoryEvent]]) -> list[Message]:
    """The run's transcript as recorded: every message once, in order.

    Runs with linear history record each message once (inline in a model request, as a
    tool result or as a model response) with its index in the transcript; runs recorded
    before carry the whole transcript in every model request.
    """
    decode = client.data_converter.decode
    by_index: dict[int, Message] = {}
    by_hash: dict[str, Message] = {}
    legacy: list[Message] = []
    tail: list[Message] = []
    for opening in await recorded_opening(client, histories[0]) if histories else []:
        by_hash[message_hash(opening)] = opening
    for events in histories:
        scheduled: dict[int, tuple[str, Any]] = {}
        for event in events:
            if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
                attrs = event.activity_task_scheduled_event_attributes
                kind = attrs.activity_type.name
                if kind == MODEL_ACTIVITY:
                    [request] = await decode(attrs.input.payloads, [ModelRequest])
                    scheduled[event.event_id] = (kind, request)
                    if request.linear:
                        for i, entry in enumerate(request.appended):
                            m = entry if isinstance(entry, Message) else by_hash.get(entry)
                            if m is not None:
                                by_index[request.offset + i] = m
                        tail = []
                elif kind == TOOL_ACTIVITY:
                    [trequest] = await decode(attrs.input.payloads, [ToolRequest])
                    scheduled[event.event_id] = (kind, trequest)
            elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
                done = event.activity_task_completed_event_attributes
                if done.scheduled_event_id not in scheduled:
                    continue
                kind, req = scheduled[done.scheduled_event_id]
                if kind == MODEL_ACTIVITY:
                    [response] = await decode(done.result.payloads, [ModelResponse])
                    if req.linear:
                        by_index[req.offset + len(req.appended)] = response.message
                    else:
                        legacy = [*req.messages, response.message]
                else:
                    [result] = await decode(done.result.payloads, [ToolResultModel])
                    message = Message.tool(req.call, result.content, is_error=result.is_error)
                    by_hash[message_hash(message)] = message
                    if req.store:
                        tail.append(message)
                    else:
                        legacy.append(message)
    if not by_index:
        return legacy
    return [by_index[i] for i in sorted(by_index)] + tail
