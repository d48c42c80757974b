"""The timeline of a run, built from its run events (``ratchet.events``).

Everything here is read from Temporal's event history, not from worker logs, so it
works for any run, running or closed, on any worker, after any crash: a retried
call shows as one step with several attempts, never as extra steps.

The JSON form (``ratchet trace RUN --json``, :meth:`Trace.model_dump_json`) is the
schema of the pydantic models below; ``Trace.model_json_schema()`` prints it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field
from temporalio.api.enums.v1 import PendingActivityState
from temporalio.client import Client, WorkflowExecutionDescription
from temporalio.service import RPCError, RPCStatusCode

from . import events as ev
from ._history import read_run
from ._protocol import ApprovalRecord
from ._reader import turn_of
from .errors import RunNotFound
from .messages import Message, ToolCall
from .policy import PolicyDecision
from .transcripts import TranscriptStore

__all__ = [
    "GuardrailStep",
    "HandoffStep",
    "ModelStep",
    "OutputCheckStep",
    "ToolStep",
    "Totals",
    "Trace",
    "build_trace",
    "render_trace",
    "trace_of",
]

StepStatus = Literal[
    "scheduled",
    "running",
    "waiting",
    "completed",
    "failed",
    "timed_out",
    "cancelled",
    "rejected",
    "replayed",
]
"""``replayed``: an eval case's run answered the call from a recorded result (no tool ran)."""


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
    tools: list[str] = Field(default_factory=list)
    """The names of the tools offered."""
    request_body: dict[str, Any] | None = None
    """The exact JSON body sent to the provider, after any tool-mode transformation
    (see ``ratchet.events.ModelCallFinished.request_body``)."""
    response: Message | None = None
    tool_calls: list[ToolCall] = Field(default_factory=list)
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float | None = None
    finish_reason: str | None = None
    warnings: list[str] = Field(default_factory=list)
    """What the provider did differently than asked (e.g. it could not stream)."""
    streamed: bool = False
    """The reply was streamed to subscribers as it was written."""


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
    child_run_id: str | None = None
    """A sub-agent's call: the child run it started (``Agent.as_tool``)."""
    agent: str | None = None
    """A sub-agent's call: the agent its child run runs."""
    input_tokens: int = 0
    """A sub-agent's call: the tokens its run tree used (in the run's totals too)."""
    output_tokens: int = 0
    cost_usd: float | None = None
    child: Trace | None = None
    """A sub-agent's call: the child run's own timeline (``build_trace`` reads the tree)."""


class HandoffStep(BaseModel):
    """The model handed the conversation to another agent (``ratchet.events.HandedOff``)."""

    turn: int
    from_agent: str
    to_agent: str
    at: datetime | None = None


class OutputCheckStep(BaseModel):
    """One check of a final answer (``ratchet.events.OutputChecked``)."""

    turn: int
    check: str
    """``schema`` (the workflow's, against the recorded schema), the output type's name,
    or an output validator's name."""
    accepted: bool
    message: str = ""
    at: datetime | None = None


class GuardrailStep(BaseModel):
    """One input guardrail's verdict on a user message (``ratchet.events.GuardrailChecked``)."""

    turn: int
    """The model turn the message would start."""
    guardrail: str
    passed: bool
    message: str = ""
    duration_seconds: float = 0.0
    at: datetime | None = None


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
    subagent_runs: int = 0
    """Sub-agent runs this run called; their tokens and cost are in the totals above."""


class Trace(BaseModel):
    """A run's timeline."""

    run_id: str
    agent: str
    prompt: str
    status: str
    """Temporal's status: running, completed, failed, cancelled, terminated, timed_out."""
    started_at: datetime | None
    closed_at: datetime | None
    started_by: ev.NexusCaller | None = None
    """The workflow whose Nexus operation started the run (:mod:`ratchet.nexus`)."""
    forked_from: ev.ForkOrigin | None = None
    """For a fork (``ratchet fork``): the run and step it branched off, and its changes."""
    steps: list[ModelStep | ToolStep]
    output: str | None = None
    error: str | None = None
    """How the run failed: ``failed: <ErrorType>: <message>``, ``cancelled``, ..."""
    warnings: list[str] = Field(default_factory=list)
    """Answers that completed the run but may not be whole (``RunResult.warnings``)."""
    approvals: list[ApprovalRecord] = Field(default_factory=list)
    """Answers given by people (approve/deny updates) and deadlines that passed, in order."""
    output_checks: list[OutputCheckStep] = Field(default_factory=list)
    """Checks of final answers (output type, output validators), in order."""
    guardrail_checks: list[GuardrailStep] = Field(default_factory=list)
    """Input guardrails' verdicts on user messages, in order."""
    handoffs: list[HandoffStep] = Field(default_factory=list)
    """Handoffs to other agents, in order."""
    totals: Totals


async def build_trace(
    client: Client,
    run_id: str,
    *,
    store: TranscriptStore | None = None,
    depth: int = 5,
) -> Trace:
    """Build the timeline of run ``run_id`` from its event history.

    A run that continued as new is one timeline: the histories of all its executions
    are read in order. The exact prompt of each linear-history model call is rebuilt
    from the messages recorded earlier in the history and, for a reference the history
    cannot resolve, from ``store`` when one is given.

    Sub-agents' runs are read too, ``depth`` levels down (0: not at all), into their
    tool steps' ``child``: the trace is the run's tree.

    Raises:
        RunNotFound: no run has that id.
    """
    events = [e async for e in read_run(client, run_id, store=store)]
    try:
        description = await client.get_workflow_handle(run_id).describe()
    except RPCError as e:
        if e.status == RPCStatusCode.NOT_FOUND:
            raise RunNotFound(f"no run with id {run_id!r}; list runs with `ratchet ls`") from e
        raise
    trace = await trace_of(events, run_id=run_id, description=description, client=client)
    if depth > 0:
        for step in trace.steps:
            if isinstance(step, ToolStep) and step.child_run_id is not None:
                # Not found: not started yet, or removed by the namespace's retention.
                with contextlib.suppress(RunNotFound):
                    step.child = await build_trace(
                        client, step.child_run_id, store=store, depth=depth - 1
                    )
    return trace


async def trace_of(
    events: Sequence[ev.RunEvent],
    *,
    run_id: str,
    description: WorkflowExecutionDescription | None = None,
    client: Client | None = None,
) -> Trace:
    """The timeline of a run from its events (``description`` adds live attempt counts)."""
    steps: dict[str, ModelStep | ToolStep] = {}
    started: ev.RunStarted | None = None
    finished: ev.RunFinished | None = None
    approvals: list[ApprovalRecord] = []
    checks: list[OutputCheckStep] = []
    guardrails: list[GuardrailStep] = []
    handoffs: list[HandoffStep] = []
    waiting: dict[str, ev.ApprovalRequested] = {}
    for e in events:
        match e:
            case ev.RunStarted():
                started = e
            case ev.ModelCallStarted():
                steps[e.call_id] = ModelStep(
                    turn=e.turn,
                    activity_id=e.call_id,
                    status="scheduled",
                    scheduled_at=e.at,
                    model=e.model,
                    messages=e.messages,
                    tools=[t.name for t in e.tools],
                )
            case ev.ModelCallAttemptFailed():
                step = steps[e.call_id]
                step.attempts = e.attempt + 1
                step.last_retry_error = _typed(e.error_type, e.error)
            case ev.ModelCallFinished():
                m = steps[e.call_id]
                assert isinstance(m, ModelStep)
                _close(m, e)
                if e.response is not None:
                    m.response = e.response
                    m.tool_calls = list(e.response.tool_calls or [])
                m.input_tokens = e.usage.input_tokens
                m.output_tokens = e.usage.output_tokens
                m.cost_usd = e.cost_usd
                m.finish_reason = e.finish_reason
                m.request_body = e.request_body
                m.warnings = list(e.warnings)
                m.streamed = e.wire is not None and e.wire.stream
            case ev.ToolCallStarted():
                request = waiting.pop(e.call_id, None)
                steps[e.call_id] = ToolStep(
                    turn=e.turn,
                    activity_id=e.activity_id,
                    status="scheduled",
                    scheduled_at=request.at if request else e.at,
                    tool=e.tool,
                    call_id=e.call_id,
                    arguments=e.arguments,
                    policy=e.policy,
                    approval=e.approval,
                    child_run_id=e.child_run_id,
                    agent=e.agent,
                )
            case ev.ToolCallFinished():
                t = steps[e.call_id]
                assert isinstance(t, ToolStep)
                _close(t, e)
                if e.replayed:
                    t.status = "replayed"
                t.result = e.result
                t.is_error = e.is_error
                t.last_retry_error = e.last_retry_error
                if e.usage is not None:
                    t.input_tokens = e.usage.input_tokens
                    t.output_tokens = e.usage.output_tokens
                    t.cost_usd = e.cost_usd
            case ev.HandedOff():
                handoffs.append(
                    HandoffStep(turn=e.turn, from_agent=e.from_agent, to_agent=e.to_agent, at=e.at)
                )
            case ev.ToolCallRejected():
                waiting.pop(e.call_id, None)
                steps[e.call_id] = ToolStep(
                    turn=e.turn,
                    status="rejected",
                    scheduled_at=e.at,
                    tool=e.tool,
                    call_id=e.call_id,
                    arguments=e.arguments,
                    result=e.reason,
                    is_error=True,
                )
            case ev.PolicyDecided() if e.decision == "require_approval":
                pass
            case ev.ApprovalRequested():
                calls = [
                    s for s in steps.values() if isinstance(s, ModelStep) and s.response is not None
                ]
                call = _call_of(calls, e.approval.call_id)
                if call is not None:
                    waiting[call.id] = e
            case ev.ApprovalAnswered():
                approvals.append(e.record)
            case ev.OutputChecked():
                checks.append(
                    OutputCheckStep(
                        turn=e.turn, check=e.check, accepted=e.accepted, message=e.message, at=e.at
                    )
                )
            case ev.GuardrailChecked():
                guardrails.append(
                    GuardrailStep(
                        turn=e.turn,
                        guardrail=e.guardrail,
                        passed=e.passed,
                        message=e.message,
                        duration_seconds=e.duration_seconds,
                        at=e.at,
                    )
                )
            case ev.RunFinished():
                finished = e
            case _:
                pass
    closed = finished is not None
    for call_id, request in waiting.items():
        a = request.approval
        steps[call_id] = ToolStep(
            turn=turn_of(a.call_id),
            # Still waiting for a person, or cut off by the run's end.
            status="cancelled" if closed else "waiting",
            scheduled_at=request.at,
            tool=a.tool,
            call_id=call_id,
            arguments=a.arguments,
        )
    if description is not None:
        await _live_attempts(steps, description, client)
    for step in steps.values():
        if closed and step.closed_at is None and step.status != "rejected":
            # Cancelled runs do not wait for their activities to confirm.
            step.status = "cancelled"
    ordered = sorted(
        steps.values(),
        key=lambda s: (s.turn, s.kind != "model", s.activity_id is None, s.activity_id or ""),
    )
    if started is None:
        raise RunNotFound(f"run {run_id!r} has no start event")
    status = description.status.name.lower() if description and description.status else "unknown"
    status = {"canceled": "cancelled"}.get(status, status)
    started_at = started.at
    closed_at = finished.at if finished else None
    return Trace(
        run_id=run_id,
        agent=started.agent,
        prompt=started.prompt,
        status=status,
        started_at=started_at,
        closed_at=closed_at,
        started_by=started.started_by,
        forked_from=started.forked_from,
        steps=ordered,
        output=finished.output if finished else None,
        error=_run_error(finished),
        warnings=finished.warnings if finished else [],
        approvals=approvals,
        output_checks=checks,
        guardrail_checks=guardrails,
        handoffs=handoffs,
        totals=_totals(ordered, started_at, closed_at),
    )


def _typed(error_type: str | None, message: str | None) -> str | None:
    if message is None:
        return None
    return (
        f"{error_type}: {message}" if error_type and not message.startswith(error_type) else message
    )


def _run_error(finished: ev.RunFinished | None) -> str | None:
    if finished is None or finished.outcome == "completed":
        return None
    what = finished.outcome.replace("_", " ")
    detail = _typed(finished.error_type, finished.error) if finished.error else None
    return f"{what}: {detail}" if detail else what


def _close(step: _Step, e: ev.ModelCallFinished | ev.ToolCallFinished) -> None:
    step.status = e.outcome
    step.closed_at = e.at
    step.duration_seconds = e.duration_seconds
    step.last_attempt_seconds = e.last_attempt_seconds
    step.attempts = max(step.attempts, e.attempts)
    step.error = _typed(e.error_type, e.error)


def _call_of(models: list[ModelStep], approval_id: str) -> ToolCall | None:
    """The tool call an approval id (``turn{N}-tool{I}``) names."""
    turn = turn_of(approval_id)
    index = approval_id.rsplit("tool", 1)[-1]
    for m in models:
        if m.turn == turn and index.isdigit() and int(index) < len(m.tool_calls):
            return m.tool_calls[int(index)]
    return None


async def _live_attempts(
    steps: dict[str, ModelStep | ToolStep],
    description: WorkflowExecutionDescription,
    client: Client | None,
) -> None:
    """Attempts of calls in flight: only the server's description has them yet."""
    for pending in description.raw_description.pending_activities:
        for step in steps.values():
            if step.activity_id == pending.activity_id and step.closed_at is None:
                step.attempts = pending.attempt
                if pending.HasField("last_failure") and client is not None:
                    from ._failures import failure_text, readable

                    failure = await readable(client.data_converter, pending.last_failure)
                    error_type, message = failure_text(failure)
                    step.last_retry_error = _typed(error_type, message) or step.last_retry_error
                started = pending.state == PendingActivityState.PENDING_ACTIVITY_STATE_STARTED
                step.status = "running" if started else "scheduled"


def _totals(
    steps: list[ModelStep | ToolStep], started: datetime | None, closed: datetime | None
) -> Totals:
    models = [s for s in steps if isinstance(s, ModelStep)]
    tools = [s for s in steps if isinstance(s, ToolStep) and s.status != "rejected"]
    # Sub-agents' tokens and cost count too: the run's totals are over its tree.
    priced: list[ModelStep | ToolStep] = [*models, *(s for s in tools if s.child_run_id)]
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
        input_tokens=sum(s.input_tokens for s in priced),
        output_tokens=sum(s.output_tokens for s in priced),
        cost_usd=sum(s.cost_usd or 0.0 for s in priced),
        unpriced_calls=sum(1 for s in models if s.cost_usd is None and s.status == "completed"),
        model_calls=len(models),
        tool_calls=len([s for s in steps if isinstance(s, ToolStep)]),
        attempts=sum(s.attempts for s in steps if s.activity_id),
        slowest_step=(
            f"{_label(slowest)} ({slowest.duration_seconds:.2f} s)" if slowest is not None else None
        ),
        subagent_runs=sum(1 for s in tools if s.child_run_id),
    )


def _label(step: ModelStep | ToolStep) -> str:
    if isinstance(step, ModelStep):
        return f"model {step.model} · turn {step.turn}"
    return f"tool {step.tool} · turn {step.turn}"


# --- rendering: the timeline as `ratchet trace` prints it ------------------------------------


def render_trace(t: Trace, *, full: bool = False) -> list[str]:
    """The human-readable timeline of a :class:`Trace`, as ``ratchet trace`` prints it."""
    import json

    from ._render import plural, shorten, without_error_prefix

    def text(s: str | None, limit: int = 200) -> str:
        # Whole messages keep their lines, indented under the step they belong to.
        return (s or "").replace("\n", "\n      ") if full else shorten(s or "", limit)

    lines = [f"run {t.run_id} · agent {t.agent} · {t.status}", f"prompt: {text(t.prompt)}"]
    if (by := t.started_by) is not None:
        lines.append(
            f"started by Nexus operation of workflow {by.workflow_id} in namespace "
            f"{by.namespace} (its run {by.run_id})"
        )
    if (origin := t.forked_from) is not None:
        lines.append(f"forked from {origin.run_id} at {origin.step}{_changes(origin)}")
    checks: dict[int, list[OutputCheckStep]] = {}
    for c in t.output_checks:
        checks.setdefault(c.turn, []).append(c)

    def checked(turn: int) -> None:
        for c in checks.pop(turn, []):
            verdict = "accepted" if c.accepted else "rejected"
            lines.append(f"  output check {c.check} [{verdict}]")
            if c.message:
                lines.append(f"    {'note' if c.accepted else 'why'}: {text(c.message, 400)}")

    guarded: dict[int, list[GuardrailStep]] = {}
    for g in t.guardrail_checks:
        guarded.setdefault(g.turn, []).append(g)

    def guardrails(turn: int) -> None:
        for g in guarded.pop(turn, []):
            verdict = "passed" if g.passed else "tripped"
            lines.append(f"  input guardrail {g.guardrail} [{verdict}] {g.duration_seconds:.2f} s")
            if g.message:
                lines.append(f"    {'note' if g.passed else 'why'}: {text(g.message, 400)}")

    handed: dict[int, list[HandoffStep]] = {}
    for h in t.handoffs:
        handed.setdefault(h.turn, []).append(h)

    def handoffs(turn: int) -> None:
        for h in handed.pop(turn, []):
            lines.append(f"  handoff {h.from_agent} → {h.to_agent}")

    turn = 0
    for step in t.steps:
        if step.turn != turn:
            checked(turn)
            handoffs(turn)
            turn = step.turn
            lines.append(f"── turn {turn}")
            guardrails(turn)
        took = "…" if step.duration_seconds is None else f"{step.duration_seconds:.2f} s"
        retry = f", {step.attempts} attempts" if step.attempts > 1 else ""
        if isinstance(step, ModelStep):
            cost = "" if step.cost_usd is None else f", ${step.cost_usd:.6f}"
            streamed = ", streamed" if step.streamed else ""
            lines.append(
                f"  model {step.model} [{step.status}] {took}{retry}, "
                f"{step.input_tokens} in / {step.output_tokens} out tokens{cost}{streamed}"
            )
            if step.last_retry_error:
                lines.append(f"    last retry error: {text(step.last_retry_error)}")
            for warning in step.warnings:
                lines.append(f"    warning: {text(warning, 400)}")
            # What the model saw: the body sent on the wire when the provider said how it
            # rendered the prompt (a tool mode may rewrite it), else ratchet's messages.
            sent = _sent(step)
            for role, content in sent if full else sent[-2:]:
                lines.append(f"    sent {role}: {text(content)}")
            if not full and len(sent) > 2:
                lines[-2:-2] = [f"    ({len(sent) - 2} earlier messages; --full shows all)"]
            if full and step.request_body is not None:
                lines.append(f"    request: {_request_summary(step.request_body)}")
            if step.response is not None:
                lines.append(f"    reply: {text(step.response.content or _calls(step.response))}")
        else:
            args = step.arguments if isinstance(step.arguments, str) else json.dumps(step.arguments)
            what = "sub-agent" if step.child_run_id else "tool"
            lines.append(f"  {what} {step.tool}({text(args, 120)}) [{step.status}] {took}{retry}")
            if step.child_run_id is not None:
                tokens = f", {step.input_tokens} in / {step.output_tokens} out tokens"
                lines.append(f"    child run {step.child_run_id} · agent {step.agent}{tokens}")
                if step.child is not None:
                    # The child's own timeline, indented under the call that started it.
                    lines += [f"    │ {line}" for line in render_trace(step.child, full=full)]
            if step.last_retry_error:
                lines.append(f"    last retry error: {text(step.last_retry_error)}")
            if step.policy is not None:
                lines.append(f"    policy: {step.policy.decision} by rule {step.policy.rule!r}")
            if step.approval is not None:
                a = step.approval
                lines.append(
                    f"    approved by {a.approver} at {a.at:%Y-%m-%d %H:%M:%S %Z}"
                    + (f": {text(a.reason)}" if a.reason else "")
                )
            marker = "error" if step.is_error else "result"
            result = without_error_prefix(step.result) if step.is_error else step.result
            lines.append(f"    {marker}: {text(result)}")
        if step.error:
            lines.append(f"    failed: {text(step.error, 400)}")
    checked(turn)
    handoffs(turn)
    for turn in sorted(guarded):
        # Checks of a message no model call followed: the one that tripped.
        lines.append(f"── turn {turn}")
        guardrails(turn)
    for a in t.approvals:
        verdict = "approved" if a.approved else "denied"
        why = f": {text(a.reason)}" if a.reason else ""
        rule = f" (rule {a.rule!r})" if a.rule else ""
        raised = f", raised to {a.raise_to:g}" if a.raise_to is not None else ""
        lines.append(
            f"approval {a.call_id} ({a.tool}){rule} {verdict} by {a.approver} "
            f"at {a.at:%Y-%m-%d %H:%M:%S %Z}{raised}{why}"
        )
    tt = t.totals
    wall = "running" if tt.wall_seconds is None else f"{tt.wall_seconds:.2f} s"
    waiting = "" if tt.waiting_seconds is None else f", waiting {tt.waiting_seconds:.2f} s"
    lines += [
        "── totals",
        f"  wall {wall}: model {tt.model_seconds:.2f} s, tools {tt.tool_seconds:.2f} s{waiting}",
        f"  {plural(tt.model_calls, 'model call')}, {plural(tt.tool_calls, 'tool call')}, "
        f"{_retries(tt.attempts - sum(1 for s in t.steps if s.activity_id))}",
        f"  tokens {tt.input_tokens} in / {tt.output_tokens} out, cost ${tt.cost_usd:.6f}"
        + (f" ({tt.unpriced_calls} unpriced calls)" if tt.unpriced_calls else ""),
        f"  slowest: {tt.slowest_step or '-'}",
    ]
    if tt.subagent_runs:
        lines.insert(-3, f"  {plural(tt.subagent_runs, 'sub-agent run')} (in the tokens and cost)")
    if t.output is not None:
        lines.append(f"answer: {text(t.output, 400)}")
    for warning in t.warnings:
        lines.append(f"warning: {text(warning, 400)}")
    if t.error is not None:
        lines.append(f"error: {text(t.error, 400)}")
    return lines


def _changes(origin: ev.ForkOrigin) -> str:
    """What a fork changed, as ``ratchet trace`` says it after "forked from"."""
    from ._render import shorten

    changed = []
    if origin.edited_message is not None:
        changed.append(f"message edited to {shorten(origin.edited_message, 80)!r}")
    if origin.instructions is not None:
        changed.append(f"instructions {shorten(origin.instructions, 80)!r}")
    if origin.model is not None:
        changed.append(f"model {origin.model}")
    return f" with {', '.join(changed)}" if changed else ""


def _retries(n: int) -> str:
    return "no retries" if n <= 0 else "1 retry" if n == 1 else f"{n} retries"


def _calls(m: Message) -> str:
    return ", ".join(f"{c.name}({c.arguments})" for c in (m.tool_calls or [])) or ""


def _sent(step: ModelStep) -> list[tuple[str, str]]:
    """(role, text) of each message the model got: from the wire body when known."""
    body = step.request_body
    if body is not None and isinstance(body.get("messages"), list):
        out = []
        for m in body["messages"]:
            calls = m.get("tool_calls") or []
            named = ", ".join(
                f"{c['function']['name']}({c['function']['arguments']})" for c in calls
            )
            out.append((str(m.get("role")), str(m.get("content") or named)))
        return out
    return [(m.role, m.content or _calls(m)) for m in step.messages]


def _request_summary(body: dict[str, Any]) -> str:
    """The parameters of a request body besides its messages, on one line."""
    parts = [f"model {body.get('model')}"]
    tools = body.get("tools") or []
    if tools:
        parts.append("tools " + ", ".join(t["function"]["name"] for t in tools))
    response_format = body.get("response_format")
    if isinstance(response_format, dict):
        name = (response_format.get("json_schema") or {}).get("name", "")
        parts.append(f"response_format {response_format.get('type')} {name}".rstrip())
    for key in ("temperature", "max_tokens"):
        if key in body:
            parts.append(f"{key} {body[key]}")
    return ", ".join(parts)


ToolStep.model_rebuild()
