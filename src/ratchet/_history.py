"""Where run events come from: a run's history pages, across its executions.

A run is one workflow id with one execution per continue-as-new. Reading it means
finding its executions (walking back through each start event's
``continued_execution_run_id``) and reading their histories in order; following it
means long-polling the latest one (``wait_new_event``) and going on with the next
execution when it continues as new.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.api.workflowservice.v1 import GetWorkflowExecutionHistoryRequest
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from . import events as ev
from ._protocol import RunInput
from ._reader import HistoryReader
from .errors import RunNotFound
from .streaming import DeltaStore
from .transcripts import TranscriptStore

__all__ = ["execution_ids", "executions", "history_events", "read_run", "run_input"]


async def executions(client: Client, run_id: str) -> list[list[HistoryEvent]]:
    """The event histories of every execution of run ``run_id``, the first one first."""
    ids = await execution_ids(client, run_id)
    out = []
    for execution_id in ids:
        handle = client.get_workflow_handle(run_id, run_id=execution_id)
        out.append([e async for e in handle.fetch_history_events()])
    return out


async def execution_ids(client: Client, run_id: str) -> list[str]:
    """The Temporal run ids of every execution of a run, the first one first.

    Walks back from the latest execution through each start event's
    ``continued_execution_run_id``, reading one event per execution.
    """
    out: list[str] = []
    execution_id = ""
    while True:
        page = await _history_page(client, run_id, execution_id, b"", page_size=1)
        if not page.history.events:
            break
        first = page.history.events[0]
        attrs = first.workflow_execution_started_event_attributes
        if not execution_id:
            # The latest execution: its run id is in the start event of a CAN chain only
            # indirectly, so describe it.
            execution_id = (await client.get_workflow_handle(run_id).describe()).run_id
        out.append(execution_id)
        previous = attrs.continued_execution_run_id
        if not previous:
            break
        execution_id = previous
    out.reverse()
    return out


async def run_input(client: Client, run_id: str) -> RunInput:
    """The input the run was started with, read from its latest execution's first event
    (a continued execution carries the same agent and prompt)."""
    page = await _history_page(client, run_id, "", b"", page_size=1)
    [first] = page.history.events[:1] or [None]
    if first is None:
        raise RunNotFound(f"run {run_id!r} has no start event")
    payloads = first.workflow_execution_started_event_attributes.input.payloads
    [inp] = await client.data_converter.decode(payloads, [RunInput])
    assert isinstance(inp, RunInput)
    return inp


async def _history_page(
    client: Client,
    run_id: str,
    execution_id: str,
    token: bytes,
    *,
    page_size: int = 0,
    wait: bool = False,
) -> Any:
    try:
        return await client.workflow_service.get_workflow_execution_history(
            GetWorkflowExecutionHistoryRequest(
                namespace=client.namespace,
                execution=WorkflowExecution(workflow_id=run_id, run_id=execution_id),
                maximum_page_size=page_size,
                next_page_token=token,
                wait_new_event=wait,
            ),
            retry=True,
        )
    except RPCError as e:
        if e.status == RPCStatusCode.NOT_FOUND:
            raise RunNotFound(f"no run with id {run_id!r}; list runs with `ratchet ls`") from e
        raise


async def read_run(
    client: Client,
    run_id: str,
    *,
    store: TranscriptStore | None = None,
    follow: bool = False,
    after: int | str = 0,
    deltas: DeltaStore | None = None,
) -> AsyncIterator[ev.RunEvent]:
    """Run events of ``run_id`` from its history; with ``follow``, then live until it ends.

    Following uses the server's long poll (``wait_new_event``): one request waits
    until the history grows, so a follower costs one call per batch of new events,
    not a poll loop. Events at or before the cursor ``after`` (see
    :func:`ratchet.events.cursor`) are read but not yielded. With ``follow`` and
    ``deltas``, the live ``token`` events of running model calls are merged in
    (``_live``).
    """
    seq_after, token_after = ev.parse_cursor(after)
    recorded = history_events(client, run_id, store=store, follow=follow)
    if not follow or deltas is None:
        async for _, event in recorded:
            if event.seq > seq_after:
                yield event
        return
    from ._live import with_tokens

    async for event in with_tokens(recorded, deltas, seq_after, token_after):
        yield event


async def history_events(
    client: Client, run_id: str, *, store: TranscriptStore | None = None, follow: bool = False
) -> AsyncIterator[tuple[str, ev.RunEvent]]:
    """Every run event of ``run_id``'s history with the Temporal run id of the execution
    that recorded it; with ``follow``, then live until the run ends."""
    reader = HistoryReader(client.data_converter, run_id, store=store)
    ids = await execution_ids(client, run_id)
    index = 0
    execution_id: str | None = ids[0] if ids else ""
    while execution_id is not None:
        index += 1
        token = b""
        next_id: str | None = None
        while True:
            page = await _history_page(client, run_id, execution_id, token, wait=follow)
            for event in page.history.events:
                for out in await reader.feed(index, event):
                    yield execution_id, out
                if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW:
                    attrs = event.workflow_execution_continued_as_new_event_attributes
                    next_id = attrs.new_execution_run_id
            token = page.next_page_token
            if not token:
                break
        if next_id is None and not follow and index < len(ids):
            next_id = ids[index]
        execution_id = next_id
