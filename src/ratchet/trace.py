"""The timeline of a run, built from its event history.

Everything here is read from Temporal's event history, not from worker logs, so it
works for any run, running or closed, on any worker, after any crash: a retried
call shows as one step with several attempts, never as extra steps.

The JSON form (``ratchet trace RUN --json``, :meth:`Trace.model_dump_json`) is the
schema of the pydantic models below; ``Trace.model_json_schema()`` prints it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field
from temporalio.api.enums.v1 import EventType, PendingActivityState
from temporalio.api.failure.v1 import Failure
from temporalio.client import Client, WorkflowHandle
from temporalio.service import RPCError, RPCStatusCode

from ._history import executions, recorded_opening
from ._protocol import (
    APPROVE_UPDATE,
    COMPACT_ACTIVITY,
    MODEL_ACTIVITY,
    TOOL_ACTIVITY,
    ApprovalRecord,
    CompactResult,
    ModelRequest,
    ModelResponse,
    RunInput,
    RunResult,
    ToolRequest,
    ToolResult,
)
from .errors import RunNotFound, TranscriptEntryMissing
from .messages import Message, ToolCall, chain_hash, message_hash
from .policy import PolicyDecision
from .transcripts import TranscriptStore, load_prompt

__all__ = ["ModelStep", "ToolStep", "Totals", "Trace", "build_trace"]

StepStatus = Literal[
    "scheduled", "running", "waiting", "completed", "failed", "timed_out", "cancelled", "rejected"
]


class _Step(BaseModel):
    turn: int
    activity_id: str | None = None
    status: StepStatus
    scheduled_at: datetime | None = None
    closed_at: datetime | None = None
    duration_seconds: float | None = None
    """From scheduling to the end of the last attempt: includes retries and backoff."""
    last_attempt_seconds: float | None = None
    """The final attempt alone."""
    attempts: int = 1
    last_retry_error: str | None = None
    """Why the attempt before the last one failed (Temporal keeps the latest)."""
    error: str | None = None
    """Why the step failed, when it did."""


class ModelStep(_Step):
    """One model call."""

    kind: Literal["model"] = "model"
    model: str
    messages: list[Message] = Field(default_factory=list)
    """Exactly what was sent, the system instructions included."""
    response: Message | None = None
    tool_calls: list[ToolCall] = Field(default_factory=list)
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float | None = None
    finish_reason: str | None = None


class ToolStep(_Step):
    """One tool call (``rejected``: invalid, answered by the workflow without running)."""

    kind: Literal["tool"] = "tool"
    tool: str
    call_id: str
    arguments: dict[str, Any] | str
    result: str | None = None
    is_error: bool = False
    policy: PolicyDecision | None = None
    """The policy rule that decided this call, when one did."""
    approval: ApprovalRecord | None = None
    """Who approved the call, when, and why."""


class Totals(BaseModel):
    wall_seconds: float | None
    model_seconds: float
    tool_seconds: float
    """Tool time per turn counts parallel calls once (first start to last end)."""
    waiting_seconds: float | None
    """The rest: scheduling, workflow tasks, waits."""
    input_tokens: int
    output_tokens: int
    cost_usd: float
    unpriced_calls: int
    model_calls: int
    tool_calls: int
    attempts: int
    slowest_step: str | None


class Trace(BaseModel):
    """A run's timeline."""

    run_id: str
    agent: str
    prompt: str
    status: str
    """Temporal's status: running, completed, failed, canceled, terminated, timed_out."""
    started_at: datetime | None
    closed_at: datetime | None
    steps: list[ModelStep | ToolStep]
    output: str | None = None
    error: str | None = None
    approvals: list[ApprovalRecord] = Field(default_factory=list)
    """Answers given by people (approve/deny updates), in order."""
    totals: Totals


async def build_trace(
    client: Client, run_id: str, *, store: TranscriptStore | None = None
) -> Trace:
    """Build the timeline of run ``run_id`` from its event history.

    A run that continued as new is one timeline: the histories of all its executions
    are read in order. Model calls with linear history carry a transcript reference
    and the new messages; the exact prompt of each call is rebuilt from the messages
    recorded earlier in the history (by their content hashes) and, for a reference the
    history cannot resolve, from ``store`` when one is given.

    Raises:
        RunNotFound: no run has that id.
    """
    handle: WorkflowHandle[Any, Any] = client.get_workflow_handle(run_id)
    prompts = _Prompts(store, run_id)
    decode = client.data_converter.decode

    async def readable(failure: Failure) -> Failure:
        # With payload encryption, failure messages are encrypted too.
        if client.data_converter.payload_codec is None:
            return failure
        from .codec import decrypt_failure

        return await decrypt_failure(client.data_converter, failure)

    steps: dict[tuple[int, int], ModelStep | ToolStep] = {}
    inp: RunInput | None = None
    started_at = closed_at = None
    output = error = None
    approvals: list[ApprovalRecord] = []
    approve_updates: set[str] = set()
    compactions: dict[tuple[int, int], str] = {}
    steps_calls: dict[tuple[int, int], ToolCall] = {}
    try:
        histories = await executions(client, run_id)
        stitched = [(n, event) for n, events in enumerate(histories) for event in events]
        prompts.learn(await recorded_opening(client, histories[0]))
        for n, event in stitched:
            t = event.event_time.ToDatetime().replace(tzinfo=None)
            kind = event.event_type
            key = (n, event.event_id)
            if kind == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED:
                if inp is None:
                    started_at = t
                    [inp] = await decode(
                        event.workflow_execution_started_event_attributes.input.payloads,
                        [RunInput],
                    )
            elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
                a = event.activity_task_scheduled_event_attributes
                if a.activity_type.name == MODEL_ACTIVITY:
                    [req] = await decode(a.input.payloads, [ModelRequest])
                    steps[key] = ModelStep(
                        turn=req.turn,
                        activity_id=a.activity_id,
                        status="scheduled",
                        scheduled_at=t,
                        model=req.model,
                        messages=await prompts.of(req) if req.linear else req.messages,
                    )
                elif a.activity_type.name == COMPACT_ACTIVITY:
                    compactions[key] = a.activity_id
                elif a.activity_type.name == TOOL_ACTIVITY:
                    [treq] = await decode(a.input.payloads, [ToolRequest])
                    steps[key] = ToolStep(
                        turn=_turn_of(a.activity_id),
                        activity_id=a.activity_id,
                        status="scheduled",
                        scheduled_at=t,
                        tool=treq.call.name,
                        call_id=treq.call.id,
                        arguments=treq.arguments,
                        policy=treq.policy,
                        approval=treq.approval,
                    )
                    steps_calls[key] = treq.call
            elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
                s = event.activity_task_started_event_attributes
                if (step := steps.get((n, s.scheduled_event_id))) is not None:
                    step.status = "running"
                    step.attempts = s.attempt
                    last = await readable(s.last_failure)
                    step.last_retry_error = last.message or None
                    step.last_attempt_seconds = -t.timestamp()  # completed below
            elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
                c = event.activity_task_completed_event_attributes
                if (n, c.scheduled_event_id) in compactions:
                    [compacted] = await decode(c.result.payloads, [CompactResult])
                    prompts.compacted(compacted)
                if (step := steps.get((n, c.scheduled_event_id))) is not None:
                    _close(step, t, "completed")
                    if isinstance(step, ModelStep):
                        [resp] = await decode(c.result.payloads, [ModelResponse])
                        prompts.responded(step.messages, resp)
                        step.response = resp.message
                        step.tool_calls = list(resp.message.tool_calls or [])
                        step.input_tokens = resp.usage.input_tokens
                        step.output_tokens = resp.usage.output_tokens
                        step.cost_usd = resp.cost_usd
                        step.finish_reason = resp.finish_reason
                    else:
                        [res] = await decode(c.result.payloads, [ToolResult])
                        prompts.tool_result(steps_calls[(n, c.scheduled_event_id)], res)
                        step.result = res.content
                        step.is_error = res.is_error
            elif kind in _ACTIVITY_END:
                status, attrs = _ACTIVITY_END[kind]
                a_end = getattr(event, attrs)
                if (step := steps.get((n, a_end.scheduled_event_id))) is not None:
                    _close(step, t, status)
                    failure = getattr(a_end, "failure", None)
                    if failure is not None:
                        failure = await readable(failure)
                    if failure is not None and failure.message:
                        cause = failure.cause.message if failure.HasField("cause") else ""
                        step.error = f"{failure.message}{f': {cause}' if cause else ''}"
            elif kind == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED:
                acc = event.workflow_execution_update_accepted_event_attributes
                if acc.accepted_request.input.name == APPROVE_UPDATE:
                    approve_updates.add(acc.accepted_request.meta.update_id)
            elif kind == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_COMPLETED:
                u = event.workflow_execution_update_completed_event_attributes
                if u.meta.update_id in approve_updates and u.outcome.HasField("success"):
                    [record] = await decode(u.outcome.success.payloads, [ApprovalRecord])
                    approvals.append(record)
            elif kind == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED:
                closed_at = t
                payloads = event.workflow_execution_completed_event_attributes.result.payloads
                [result] = await decode(payloads, [RunResult])
                output = result.output
            elif kind in _WORKFLOW_END:
                closed_at = t
                what, attrs_name = _WORKFLOW_END[kind]
                end = getattr(event, attrs_name)
                failure = getattr(end, "failure", None)
                if failure is not None:
                    failure = await readable(failure)
                detail = failure.message if failure is not None else getattr(end, "reason", "")
                error = f"{what}: {detail}" if detail else what
        description = await handle.describe()
    except RPCError as e:
        if e.status == RPCStatusCode.NOT_FOUND:
            raise RunNotFound(f"no run with id {run_id!r}; list runs with `ratchet ls`") from e
        raise
    for pending in description.raw_description.pending_activities:
        for step in steps.values():
            if step.activity_id == pending.activity_id and step.closed_at is None:
                step.attempts = pending.attempt
                last = await readable(pending.last_failure)
                step.last_retry_error = last.message or step.last_retry_error
                started = pending.state == PendingActivityState.PENDING_ACTIVITY_STATE_STARTED
                step.status = "running" if started else "scheduled"
    closed = closed_at is not None
    for step in steps.values():
        if closed and step.closed_at is None:
            # Cancelled runs do not wait for their activities to confirm.
            step.status = "cancelled"
    ordered = sorted(steps.values(), key=lambda s: (s.turn, s.kind != "model", s.activity_id or ""))
    ordered = _with_rejected_calls(ordered, closed=closed)
    if inp is None:
        raise RunNotFound(f"run {run_id!r} has no start event")
    run_status = description.status.name.lower() if description.status else "unknown"
    return Trace(
        run_id=run_id,
        agent=inp.agent,
        prompt=inp.prompt,
        status=run_status,
        started_at=started_at,
        closed_at=closed_at,
        steps=ordered,
        output=output,
        error=error,
        approvals=approvals,
        totals=_totals(ordered, started_at, closed_at),
    )


_ACTIVITY_END: dict[EventType.ValueType, tuple[StepStatus, str]] = {
    EventType.EVENT_TYPE_ACTIVITY_TASK_FAILED: ("failed", "activity_task_failed_event_attributes"),
    EventType.EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT: (
        "timed_out",
        "activity_task_timed_out_event_attributes",
    ),
    EventType.EVENT_TYPE_ACTIVITY_TASK_CANCELED: (
        "cancelled",
        "activity_task_canceled_event_attributes",
    ),
}
_WORKFLOW_END: dict[EventType.ValueType, tuple[str, str]] = {
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED: (
        "failed",
        "workflow_execution_failed_event_attributes",
    ),
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CANCELED: (
        "cancelled",
        "workflow_execution_canceled_event_attributes",
    ),
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED: (
        "terminated",
        "workflow_execution_terminated_event_attributes",
    ),
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TIMED_OUT: (
        "timed out",
        "workflow_execution_timed_out_event_attributes",
    ),
}


class _Prompts:
    """Rebuilds the exact prompt of each linear-history model call.

    Every message the history records is indexed by its content hash, and every chain
    head by the prompt it names, so a reference resolves without the store unless the
    history cannot name it (then ``store`` is asked, when given).
    """

    def __init__(self, store: TranscriptStore | None, run_id: str) -> None:
        self.store = store
        self.run_id = run_id
        self.by_hash: dict[str, Message] = {}
        self.heads: dict[str, list[Message]] = {}

    def learn(self, messages: list[Message]) -> None:
        for m in messages:
            self.by_hash.setdefault(message_hash(m), m)

    async def of(self, req: ModelRequest) -> list[Message]:
        base: list[Message] = []
        if req.transcript_ref is not None:
            known = self.heads.get(req.transcript_ref)
            if known is None and self.store is not None:
                try:
                    known = await load_prompt(
                        self.store, req.transcript_ref, [], run_id=self.run_id
                    )
                except TranscriptEntryMissing as e:
                    known = [Message.system(f"[ratchet: earlier messages unavailable: {e}]")]
            base = known or [
                Message.system(
                    f"[ratchet: earlier messages are in the transcript store under "
                    f"{req.transcript_ref}; pass a store to build_trace to show them]"
                )
            ]
        new: list[Message] = []
        for entry in req.appended:
            if isinstance(entry, Message):
                new.append(entry)
            elif entry in self.by_hash:
                new.append(self.by_hash[entry])
            else:
                new.append(Message.system(f"[ratchet: message {entry} not in the history]"))
        prompt = base + new
        self.learn(prompt)
        head = req.transcript_ref
        for m in new:
            head = chain_hash(head, message_hash(m))
        if head is not None:
            self.heads[head] = prompt
        return prompt

    def responded(self, prompt: list[Message], resp: ModelResponse) -> None:
        self.learn([resp.message])
        if resp.transcript_ref is not None:
            self.heads[resp.transcript_ref] = [*prompt, resp.message]

    def tool_result(self, call: ToolCall, res: ToolResult) -> None:
        self.learn([Message.tool(call, res.content, is_error=res.is_error)])

    def compacted(self, result: CompactResult) -> None:
        if result.summary is not None:
            self.learn([result.summary])
        if all(h in self.by_hash for h in result.kept):
            self.heads[result.head] = [self.by_hash[h] for h in result.kept]


def _turn_of(activity_id: str) -> int:
    # Activity ids are contracts: "turn{N}-model", "turn{N}-tool{I}".
    head = activity_id.split("-", 1)[0]
    return int(head[4:]) if head.startswith("turn") and head[4:].isdigit() else 0


def _close(step: _Step, t: datetime, status: StepStatus) -> None:
    step.status = status
    step.closed_at = t
    if step.scheduled_at is not None:
        step.duration_seconds = (t - step.scheduled_at).total_seconds()
    if step.last_attempt_seconds is not None and step.last_attempt_seconds < 0:
        step.last_attempt_seconds = t.timestamp() + step.last_attempt_seconds


def _with_rejected_calls(
    steps: list[ModelStep | ToolStep], *, closed: bool
) -> list[ModelStep | ToolStep]:
    """Add the calls the workflow answered itself (bad JSON, unknown tool, bad arguments).

    They ran no activity; the next model call's messages hold the error the model saw.
    """
    ran = {s.call_id for s in steps if isinstance(s, ToolStep)}
    out: list[ModelStep | ToolStep] = []
    models = [s for s in steps if isinstance(s, ModelStep)]
    for step in steps:
        out.append(step)
        if not isinstance(step, ModelStep) or not step.tool_calls:
            continue
        later = next((m for m in models if m.turn == step.turn + 1), None)
        answers = {m.tool_call_id: m for m in (later.messages if later else []) if m.role == "tool"}
        for c in step.tool_calls:
            if c.id in ran:
                continue
            answer = answers.get(c.id)
            # No answer yet: the call waits (for approval) or was cut off by the run's end.
            unanswered: StepStatus = "cancelled" if closed else "waiting"
            out.append(
                ToolStep(
                    turn=step.turn,
                    status="rejected" if answer is not None else unanswered,
                    tool=c.name,
                    call_id=c.id,
                    arguments=c.arguments,
                    result=answer.content if answer else None,
                    is_error=answer is not None,
                )
            )
    # Per turn: the model call, the calls that ran, then the rejected ones.
    return sorted(out, key=lambda s: (s.turn, s.kind != "model", s.activity_id is None))


def _totals(
    steps: list[ModelStep | ToolStep], started: datetime | None, closed: datetime | None
) -> Totals:
    models = [s for s in steps if isinstance(s, ModelStep)]
    tools = [s for s in steps if isinstance(s, ToolStep) and s.status != "rejected"]
    model_seconds = sum(s.duration_seconds or 0.0 for s in models)
    tool_seconds = 0.0
    for turn in {s.turn for s in tools}:
        spans = [s for s in tools if s.turn == turn and s.scheduled_at and s.closed_at]
        if spans:
            first = min(s.scheduled_at for s in spans if s.scheduled_at)
            last = max(s.closed_at for s in spans if s.closed_at)
            tool_seconds += (last - first).total_seconds()
    wall = (closed - started).total_seconds() if started and closed else None
    timed = [s for s in steps if s.duration_seconds is not None]
    slowest = max(timed, key=lambda s: s.duration_seconds or 0.0, default=None)
    return Totals(
        wall_seconds=wall,
        model_seconds=model_seconds,
        tool_seconds=tool_seconds,
        waiting_seconds=None if wall is None else max(wall - model_seconds - tool_seconds, 0.0),
        input_tokens=sum(s.input_tokens for s in models),
        output_tokens=sum(s.output_tokens for s in models),
        cost_usd=sum(s.cost_usd or 0.0 for s in models),
        unpriced_calls=sum(1 for s in models if s.cost_usd is None and s.status == "completed"),
        model_calls=len(models),
        tool_calls=len([s for s in steps if isinstance(s, ToolStep)]),
        attempts=sum(s.attempts for s in steps if s.activity_id),
        slowest_step=(
            f"{_label(slowest)} ({slowest.duration_seconds:.2f} s)" if slowest is not None else None
        ),
    )


def _label(step: ModelStep | ToolStep) -> str:
    if isinstance(step, ModelStep):
        return f"model {step.model} · turn {step.turn}"
    return f"tool {step.tool} · turn {step.turn}"


# --- rendering: the timeline as `ratchet trace` prints it ------------------------------------

__all__ += ["render_trace"]


def render_trace(t: Trace, *, full: bool = False) -> list[str]:
    """The human-readable timeline of a :class:`Trace`, as ``ratchet trace`` prints it."""
    import json

    from ._render import shorten

    def text(s: str | None, limit: int = 200) -> str:
        return (s or "") if full else shorten(s or "", limit)

    lines = [f"run {t.run_id} · agent {t.agent} · {t.status}", f"prompt: {text(t.prompt)}"]
    turn = 0
    for step in t.steps:
        if step.turn != turn:
            turn = step.turn
            lines.append(f"── turn {turn}")
        took = "…" if step.duration_seconds is None else f"{step.duration_seconds:.2f} s"
        retry = f", {step.attempts} attempts" if step.attempts > 1 else ""
        if isinstance(step, ModelStep):
            cost = "" if step.cost_usd is None else f", ${step.cost_usd:.6f}"
            lines.append(
                f"  model {step.model} [{step.status}] {took}{retry}, "
                f"{step.input_tokens} in / {step.output_tokens} out tokens{cost}"
            )
            if step.last_retry_error:
                lines.append(f"    last retry error: {text(step.last_retry_error)}")
            for m in step.messages if full else step.messages[-2:]:
                lines.append(f"    sent {m.role}: {text(m.content or _calls(m))}")
            if not full and len(step.messages) > 2:
                lines[-2:-2] = [
                    f"    ({len(step.messages) - 2} earlier messages; --full shows all)"
                ]
            if step.response is not None:
                lines.append(f"    reply: {text(step.response.content or _calls(step.response))}")
        else:
            args = step.arguments if isinstance(step.arguments, str) else json.dumps(step.arguments)
            lines.append(f"  tool {step.tool}({text(args, 120)}) [{step.status}] {took}{retry}")
            if step.last_retry_error:
                lines.append(f"    last retry error: {text(step.last_retry_error)}")
            if step.policy is not None:
                lines.append(f"    policy: {step.policy.decision} by rule {step.policy.rule!r}")
            if step.approval is not None:
                a = step.approval
                lines.append(
                    f"    approved by {a.approver} at {a.at:%Y-%m-%d %H:%M:%S}"
                    + (f": {text(a.reason)}" if a.reason else "")
                )
            marker = "error" if step.is_error else "result"
            lines.append(f"    {marker}: {text(step.result)}")
        if step.error:
            lines.append(f"    failed: {text(step.error, 400)}")
    for a in t.approvals:
        verdict = "approved" if a.approved else "denied"
        why = f": {text(a.reason)}" if a.reason else ""
        rule = f" (rule {a.rule!r})" if a.rule else ""
        raised = f", raised to {a.raise_to:g}" if a.raise_to is not None else ""
        lines.append(
            f"approval {a.call_id} ({a.tool}){rule} {verdict} by {a.approver} "
            f"at {a.at:%Y-%m-%d %H:%M:%S}{raised}{why}"
        )
    tt = t.totals
    wall = "running" if tt.wall_seconds is None else f"{tt.wall_seconds:.2f} s"
    waiting = "" if tt.waiting_seconds is None else f", waiting {tt.waiting_seconds:.2f} s"
    lines += [
        "── totals",
        f"  wall {wall}: model {tt.model_seconds:.2f} s, tools {tt.tool_seconds:.2f} s{waiting}",
        f"  {tt.model_calls} model calls, {tt.tool_calls} tool calls, {tt.attempts} attempts",
        f"  tokens {tt.input_tokens} in / {tt.output_tokens} out, cost ${tt.cost_usd:.6f}"
        + (f" ({tt.unpriced_calls} unpriced calls)" if tt.unpriced_calls else ""),
        f"  slowest: {tt.slowest_step or '-'}",
    ]
    if t.output is not None:
        lines.append(f"answer: {text(t.output, 400)}")
    if t.error is not None:
        lines.append(f"error: {text(t.error, 400)}")
    return lines


def _calls(m: Message) -> str:
    return ", ".join(f"{c.name}({c.arguments})" for c in (m.tool_calls or [])) or ""
