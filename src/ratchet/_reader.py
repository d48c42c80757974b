"""The one history reader: Temporal history events in, ``ratchet.events`` out.

Nothing else in ratchet decodes a run's history. The reader is incremental and
deterministic: it is fed the history events of every execution of a run in order
and emits run events, numbering them as it goes, so an event gets the same ``seq``
on every read and a follower resumes after any ``seq`` without gaps or repeats.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from temporalio.api.enums.v1 import EventType
from temporalio.api.failure.v1 import Failure
from temporalio.api.history.v1 import HistoryEvent
from temporalio.converter import DataConverter

from . import events as ev
from ._failures import failure_text, readable
from ._final_answer import answer_text, needs_worker_check, offered_answer
from ._nexus_links import nexus_caller
from ._prompts import Prompts
from ._protocol import (
    APPROVE_UPDATE,
    ASKED_MEMO,
    COMPACT_ACTIVITY,
    HAND_OFF_ACTIVITY,
    INPUT_CHECK_ACTIVITY,
    MODEL_ACTIVITY,
    OUTPUT_CHECK_ACTIVITY,
    SNAPSHOT_ACTIVITY,
    TOOL_ACTIVITY,
    ApprovalRecord,
    CompactResult,
    ForkStart,
    HandoffRequest,
    HandoffResult,
    InputCheckRequest,
    InputCheckResult,
    ModelRequest,
    ModelResponse,
    OutputCheckRequest,
    OutputCheckResult,
    PendingApproval,
    RunInput,
    RunResult,
    ToolRequest,
    ToolResult,
)
from ._schema import parse_call
from ._tool_fixtures import fixture_key
from .agent import AgentSpec
from .messages import Message, ToolCall, handed_over, opening_messages
from .models import render_wire_request
from .tools import ToolSpec
from .transcripts import TranscriptStore

__all__ = ["HistoryReader", "turn_of"]


@dataclass
class _Scheduled:
    """An activity of the run, from its scheduling on."""

    kind: str
    activity_id: str
    at: datetime
    request: Any = None
    prompt: list[Message] = field(default_factory=list)
    tools: list[ToolSpec] = field(default_factory=list)
    attempt: int = 1
    last_failure: str | None = None
    attempt_started: datetime | None = None

    def last_attempt_seconds(self, now: datetime) -> float | None:
        start = self.attempt_started
        return None if start is None else (now - start).total_seconds()


@dataclass
class _State:
    inp: RunInput | None = None
    spec: AgentSpec | None = None
    """The snapshot of the agent that has the conversation (a handoff changes it)."""
    root: AgentSpec | None = None
    """The run's own snapshot (its ``team`` holds the handoff targets)."""
    call_at: dict[tuple[int, int], ToolCall] = field(default_factory=dict)
    """Tool calls by (turn, index in the model's reply)."""
    children: dict[tuple[int, int], tuple[ToolCall, str, datetime]] = field(default_factory=dict)
    """Sub-agent runs started, by their initiated event: (call, child run id, started)."""
    handoffs: set[str] = field(default_factory=set)
    """Ids of handoff calls (their tool message is the workflow's own, not a rejection)."""
    scheduled: dict[tuple[int, int], _Scheduled] = field(default_factory=dict)
    indexed: set[int] = field(default_factory=set)
    next_index: int = 0
    ran: set[str] = field(default_factory=set)
    """Call ids a tool activity ran for."""
    rejected: set[str] = field(default_factory=set)
    final: set[str] = field(default_factory=set)
    """Ids of ``final_result`` calls: final answers, reported as output checks."""
    requested: dict[str, PendingApproval] = field(default_factory=dict)
    answered: set[str] = field(default_factory=set)
    approve_updates: set[str] = field(default_factory=set)
    unsent: list[Message] = field(default_factory=list)
    """Tool results recorded after the latest model call (not sent to a model yet)."""
    calls: dict[str, tuple[int, ToolCall]] = field(default_factory=dict)
    """Tool calls the model made, by id: (turn, call)."""
    approval_of: dict[str, str] = field(default_factory=dict)
    """The approval id of each call that needed one (``turn{N}-tool{I}``), by call id."""
    after_task: list[Callable[[datetime], ev.RunEvent]] = field(default_factory=list)
    """Events dated by the next workflow task (when the workflow acted on what it read)."""
    inherits: bool = False
    """A fork whose first model call is still to come: its prompt opens with messages of
    the parent's transcript."""


class HistoryReader:
    """Feeds on a run's history events, in order, and emits its run events."""

    def __init__(
        self, converter: DataConverter, run_id: str, *, store: TranscriptStore | None
    ) -> None:
        self._converter = converter
        self._run_id = run_id
        self._prompts = Prompts(store, run_id)
        self._store = store
        self._seq = 0
        self._s = _State()
        self._out: list[ev.RunEvent] = []
        self._execution = 1
        self._event_id = 0
        self._at = datetime.now(UTC)

    def _emit(self, cls: type[Any], **fields: Any) -> None:
        self._seq += 1
        fields.setdefault("at", self._at)
        self._out.append(
            cls(
                seq=self._seq,
                execution=self._execution,
                history_event_id=self._event_id,
                **fields,
            )
        )

    async def _decode(self, payloads: Any, kind: type[Any]) -> Any:
        [value] = await self._converter.decode(payloads, [kind])
        return value

    async def feed(self, execution: int, event: HistoryEvent) -> list[ev.RunEvent]:
        """The run events that ``event`` (of execution ``execution``) completes."""
        self._out = []
        self._execution = execution
        self._event_id = event.event_id
        self._at = event.event_time.ToDatetime(tzinfo=UTC)
        handler = _HANDLERS.get(event.event_type)
        if handler is not None:
            await handler(self, execution, event)
        return self._out

    # --- run lifecycle ---------------------------------------------------------------

    async def _started(self, execution: int, event: HistoryEvent) -> None:
        attrs = event.workflow_execution_started_event_attributes
        inp: RunInput = await self._decode(attrs.input.payloads, RunInput)
        s = self._s
        if inp.carried is not None:
            # A later execution: the snapshot and the unfinished turn come with it.
            s.root = s.root or inp.carried.spec
            if s.spec is None:
                agent = inp.carried.agent
                s.spec = s.root.member(agent) if agent else s.root
            for p in inp.carried.waiting:
                s.requested.setdefault(p.call_id, p)
            turn = inp.carried.status.turn
            for i, c in enumerate(inp.carried.calls):
                s.calls.setdefault(c.id, (turn, c))
                s.approval_of.setdefault(c.id, f"turn{turn}-tool{i}")
            if s.inp is None:
                s.inp = inp
            return
        s.inp = inp
        fork = inp.fork
        self._emit(
            ev.RunStarted,
            run_id=self._run_id,
            agent=inp.agent,
            prompt=inp.prompt,
            model=inp.model,
            chat=inp.chat,
            tenant=inp.tenant,
            started_by=nexus_caller(attrs.completion_callbacks),
            forked_from=None if fork is None else _origin(fork),
        )
        if fork is not None:
            # A fork records its parent's snapshot (with its overrides) in its input.
            s.root = fork.spec
            s.spec = fork.spec.member(fork.agent) if fork.agent else fork.spec
            s.inherits = True
            self._prompts.learn(fork.pending)
            self._emit(ev.AgentSnapshotted, spec=fork.spec)

    def _snapshotted(self, spec: AgentSpec) -> None:
        s = self._s
        s.spec = s.root = spec
        if s.inp is not None:
            self._prompts.learn(opening_messages(spec.instructions, s.inp.prompt))
        self._emit(ev.AgentSnapshotted, spec=spec)

    async def _marker(self, execution: int, event: HistoryEvent) -> None:
        details = event.marker_recorded_event_attributes.details
        if "result" not in details or self._s.spec is not None:
            return
        if SNAPSHOT_ACTIVITY.encode() in details["data"].SerializeToString():
            # The snapshot as a local activity (runs since the local-snapshot patch).
            self._snapshotted(await self._decode(details["result"].payloads, AgentSpec))

    async def _closed(self, execution: int, event: HistoryEvent) -> None:
        self._flush_unsent()
        kind = event.event_type
        if kind == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED:
            payloads = event.workflow_execution_completed_event_attributes.result.payloads
            result: RunResult = await self._decode(payloads, RunResult)
            self._emit(
                ev.RunFinished,
                outcome="completed",
                output=result.output,
                output_type=result.output_type,
                data=result.data,
                turns=result.turns,
                usage=result.usage,
                cost_usd=result.cost_usd,
                warnings=result.warnings,
            )
        elif kind == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED:
            failure = await self._readable(event.workflow_execution_failed_event_attributes.failure)
            error_type, message = failure_text(failure)
            details = await self._failure_details(failure)
            if error_type == "BudgetExceeded" and details:
                spender = details.get("run_id")
                self._emit(
                    ev.BudgetDecision,
                    budget=str(details.get("budget", "")),
                    decision="stopped",
                    used=details.get("used"),
                    limit=details.get("limit"),
                    run_id=spender if spender != self._run_id else None,
                )
            self._emit(ev.RunFinished, outcome="failed", error_type=error_type, error=message)
        elif kind == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CANCELED:
            self._emit(ev.RunFinished, outcome="cancelled", error_type="Cancelled")
        elif kind == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED:
            reason = event.workflow_execution_terminated_event_attributes.reason
            self._emit(ev.RunFinished, outcome="terminated", error=reason or None)
        elif kind == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TIMED_OUT:
            self._emit(ev.RunFinished, outcome="timed_out", error="the run timed out")
        elif kind == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW:
            self._emit(ev.ContinuedAsNew, next_execution=execution + 1)

    async def _task_started(self, execution: int, event: HistoryEvent) -> None:
        pending, self._s.after_task = self._s.after_task, []
        for make in pending:
            built = make(self._at)
            self._seq += 1
            self._out.append(built.model_copy(update={"seq": self._seq}))

    # --- activities --------------------------------------------------------------------

    async def _scheduled(self, execution: int, event: HistoryEvent) -> None:
        a = event.activity_task_scheduled_event_attributes
        name = a.activity_type.name
        key = (execution, event.event_id)
        if name == MODEL_ACTIVITY:
            req: ModelRequest = await self._decode(a.input.payloads, ModelRequest)
            step = _Scheduled(name, a.activity_id, self._at, req)
            self._s.scheduled[key] = step
            step.prompt, step.tools = await self._model_started(req, a.activity_id)
        elif name == TOOL_ACTIVITY:
            treq: ToolRequest = await self._decode(a.input.payloads, ToolRequest)
            self._s.scheduled[key] = _Scheduled(name, a.activity_id, self._at, treq)
            self._s.ran.add(treq.call.id)
            self._emit(
                ev.ToolCallStarted,
                call_id=treq.call.id,
                activity_id=a.activity_id,
                turn=turn_of(a.activity_id),
                tool=treq.call.name,
                arguments=treq.arguments,
                policy=treq.policy,
                approval=treq.approval,
            )
        elif name == OUTPUT_CHECK_ACTIVITY:
            oreq: OutputCheckRequest = await self._decode(a.input.payloads, OutputCheckRequest)
            self._s.scheduled[key] = _Scheduled(name, a.activity_id, self._at, oreq)
        elif name == INPUT_CHECK_ACTIVITY:
            ireq: InputCheckRequest = await self._decode(a.input.payloads, InputCheckRequest)
            self._s.scheduled[key] = _Scheduled(name, a.activity_id, self._at, ireq)
        elif name == HAND_OFF_ACTIVITY:
            hreq: HandoffRequest = await self._decode(a.input.payloads, HandoffRequest)
            step = _Scheduled(name, a.activity_id, self._at, hreq)
            self._s.scheduled[key] = step
            step.prompt = await self._handoff_started(hreq)
        elif name in (COMPACT_ACTIVITY, SNAPSHOT_ACTIVITY):
            self._s.scheduled[key] = _Scheduled(name, a.activity_id, self._at)

    async def _handoff_started(self, req: HandoffRequest) -> list[Message]:
        """The messages up to the handoff (its own tool message last); the prompt so far."""
        as_model_request = ModelRequest(
            agent=req.agent,
            model="",
            turn=req.turn,
            messages=[],
            transcript_ref=req.head,
            appended=req.appended,
            offset=req.offset,
            linear=True,
        )
        prompt = await self._prompts.of(as_model_request)
        new = prompt[len(prompt) - len(req.appended) :]
        self._answer_unsent(new)
        for i, m in enumerate(new):
            self._message(req.offset + i, m)
        self._s.unsent = []
        return prompt

    def _handed_off(self, step: _Scheduled, result: HandoffResult) -> None:
        s = self._s
        req: HandoffRequest = step.request
        self._prompts.known(result.head, handed_over(step.prompt, req.instructions))
        if s.root is not None and (req.target == s.root.name or req.target in s.root.team):
            s.spec = s.root.member(req.target)
        self._emit(
            ev.HandedOff,
            turn=req.turn,
            call_id=req.call_id,
            from_agent=req.agent,
            to_agent=req.target,
            instructions=req.instructions,
        )

    # --- sub-agents (child workflows) ----------------------------------------------------

    async def _child_initiated(self, execution: int, event: HistoryEvent) -> None:
        a = event.start_child_workflow_execution_initiated_event_attributes
        child: RunInput = await self._decode(a.input.payloads, RunInput)
        activity_id = a.workflow_id.rsplit(".", 1)[-1]
        turn, index = turn_of(activity_id), _index_of(activity_id)
        call = self._s.call_at.get((turn, index))
        if call is None:
            return
        self._s.ran.add(call.id)
        self._s.children[(execution, event.event_id)] = (call, a.workflow_id, self._at)
        self._emit(
            ev.ToolCallStarted,
            call_id=call.id,
            activity_id=activity_id,
            turn=turn,
            tool=call.name,
            arguments={"input": child.prompt},
            child_run_id=a.workflow_id,
            agent=child.agent,
        )

    async def _child_ended(self, execution: int, event: HistoryEvent) -> None:
        kind = event.event_type
        outcome, attrs_name = _CHILD_END[kind]
        attrs = getattr(event, attrs_name)
        started = self._s.children.get((execution, attrs.initiated_event_id))
        if started is None:
            return
        call, run_id, at = started
        activity_id = run_id.rsplit(".", 1)[-1]
        fields: dict[str, Any] = {}
        if kind == EventType.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_COMPLETED:
            result: RunResult = await self._decode(attrs.result.payloads, RunResult)
            message = Message.tool(call, result.output)
            self._prompts.learn([message])
            self._s.unsent.append(message)
            fields = {"result": result.output, "usage": result.usage, "cost_usd": result.cost_usd}
        elif kind == EventType.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_FAILED:
            failure = await self._readable(attrs.failure)
            cause = failure.cause if failure.HasField("cause") else failure
            error_type, error = failure_text(cause)
            fields = {"error_type": error_type, "error": error, "is_error": True}
        else:
            fields = {"error": f"the sub-agent's run was {outcome.replace('_', ' ')}"}
        self._emit(
            ev.ToolCallFinished,
            call_id=call.id,
            activity_id=activity_id,
            turn=turn_of(activity_id),
            tool=call.name,
            outcome=outcome,
            duration_seconds=(self._at - at).total_seconds(),
            child_run_id=run_id,
            **fields,
        )

    async def _model_started(
        self, req: ModelRequest, activity_id: str
    ) -> tuple[list[Message], list[ToolSpec]]:
        s = self._s
        inherited, s.inherits = s.inherits, False
        if req.linear:
            prompt = await self._prompts.of(req)
            new = prompt[len(prompt) - len(req.appended) :]
            first = req.offset
            if inherited and self._prompts.resolved and len(prompt) - len(new) == first:
                # A fork's first call: the messages it inherited from its parent's
                # transcript (resolved from the store) open its own.
                new, first = prompt, 0
        else:
            prompt = list(req.messages)
            first = s.next_index
            new = prompt[first:] if first <= len(prompt) else []
        if not inherited:
            # A fork's first prompt is its parent's: its tool results ran there.
            self._answer_unsent(new)
        for i, m in enumerate(new):
            self._message(first + i, m)
        s.unsent = []
        tools = req.tools
        if not tools and req.tools_ref:
            snapshot = s.spec
            if snapshot is not None and snapshot.tools_ref == req.tools_ref:
                tools = snapshot.tools
            else:
                tools = await self._prompts.tools(req.tools_ref)
        self._emit(
            ev.ModelCallStarted,
            call_id=activity_id,
            turn=req.turn,
            model=req.model,
            messages=prompt,
            tools=tools,
            tool_mode=req.tool_mode,
            temperature=req.temperature,
            max_tokens=req.max_tokens,
            transcript_ref=req.transcript_ref,
            output=req.output,
        )
        return prompt, list(tools)

    def _message(self, index: int, message: Message) -> None:
        s = self._s
        if index in s.indexed:
            return
        s.indexed.add(index)
        s.next_index = max(s.next_index, index + 1)
        self._emit(ev.MessageRecorded, index=index, message=message)

    def _answer_unsent(self, new: list[Message]) -> None:
        """Tool messages the workflow wrote itself (no tool ran): denials, timeouts."""
        s = self._s
        for m in new:
            if m.role != "tool" or not m.tool_call_id:
                continue
            call_id = m.tool_call_id
            if call_id in s.ran or call_id in s.rejected or call_id in s.final:
                continue
            if call_id in s.handoffs and not m.is_error:
                continue
            unknown = ToolCall(id=call_id, name=m.name or "", arguments="")
            turn, call = s.calls.get(call_id, (0, unknown))
            if self._replayed(turn, call, m):
                continue
            approval_id = s.approval_of.get(call_id)
            pending = s.requested.get(approval_id) if approval_id else None
            if approval_id is not None and pending is not None and approval_id not in s.answered:
                # Nobody answered before the deadline: the workflow denied it.
                s.answered.add(approval_id)
                self._emit(
                    ev.ApprovalAnswered,
                    record=ApprovalRecord(
                        call_id=approval_id,
                        tool=pending.tool,
                        rule=pending.rule,
                        approved=False,
                        approver="ratchet",
                        reason="nobody answered before the deadline",
                        at=pending.deadline,
                        timed_out=True,
                    ),
                )
            s.rejected.add(call_id)
            self._emit(
                ev.ToolCallRejected,
                call_id=call_id,
                turn=turn,
                tool=call.name,
                arguments=call.arguments,
                reason=m.content or "",
            )

    def _replayed(self, turn: int, call: ToolCall, message: Message) -> bool:
        """Report a call an eval case's run answered from its recorded results (no tool
        ran) as a replayed tool call; False for any other message the workflow wrote."""
        s = self._s
        fixtures = s.inp.fixtures if s.inp is not None else None
        if fixtures is None or s.spec is None:
            return False
        arguments, problem = parse_call(s.spec, call)
        recorded = fixtures.by_key().get(fixture_key(call.name, arguments), [])
        if problem is not None or not any(
            (r.content, r.is_error) == (message.content, message.is_error) for r in recorded
        ):
            return False
        index = next((i for (t, i), c in s.call_at.items() if t == turn and c.id == call.id), 0)
        activity_id = f"turn{turn}-tool{index}"
        s.ran.add(call.id)
        self._emit(
            ev.ToolCallStarted,
            call_id=call.id,
            activity_id=activity_id,
            turn=turn,
            tool=call.name,
            arguments=arguments,
            replayed=True,
        )
        self._emit(
            ev.ToolCallFinished,
            call_id=call.id,
            activity_id=activity_id,
            turn=turn,
            tool=call.name,
            outcome="completed",
            result=message.content,
            is_error=message.is_error,
            duration_seconds=0.0,
            replayed=True,
        )
        return True

    async def _activity_started(self, execution: int, event: HistoryEvent) -> None:
        a = event.activity_task_started_event_attributes
        step = self._s.scheduled.get((execution, a.scheduled_event_id))
        if step is None:
            return
        step.attempt = a.attempt
        step.attempt_started = self._at
        if a.attempt > 1 and a.HasField("last_failure"):
            failure = await self._readable(a.last_failure)
            error_type, message = failure_text(failure)
            step.last_failure = message
            if step.kind == MODEL_ACTIVITY:
                self._emit(
                    ev.ModelCallAttemptFailed,
                    call_id=step.activity_id,
                    turn=turn_of(step.activity_id),
                    attempt=a.attempt - 1,
                    error_type=error_type,
                    error=message,
                )

    async def _activity_completed(self, execution: int, event: HistoryEvent) -> None:
        c = event.activity_task_completed_event_attributes
        step = self._s.scheduled.get((execution, c.scheduled_event_id))
        if step is None:
            return
        took = (self._at - step.at).total_seconds()
        if step.kind == MODEL_ACTIVITY:
            resp: ModelResponse = await self._decode(c.result.payloads, ModelResponse)
            await self._model_finished(step, resp, took)
        elif step.kind == TOOL_ACTIVITY:
            res: ToolResult = await self._decode(c.result.payloads, ToolResult)
            req: ToolRequest = step.request
            message = Message.tool(req.call, res.content, is_error=res.is_error)
            self._prompts.learn([message])
            self._s.unsent.append(message)
            self._emit(
                ev.ToolCallFinished,
                call_id=req.call.id,
                activity_id=step.activity_id,
                turn=turn_of(step.activity_id),
                tool=req.call.name,
                outcome="completed",
                result=res.content,
                is_error=res.is_error,
                attempts=step.attempt,
                duration_seconds=took,
                last_attempt_seconds=step.last_attempt_seconds(self._at),
                last_retry_error=step.last_failure,
            )
        elif step.kind == COMPACT_ACTIVITY:
            done: CompactResult = await self._decode(c.result.payloads, CompactResult)
            self._prompts.compacted(done)
            self._emit(
                ev.PromptCompacted,
                turn=turn_of(step.activity_id),
                dropped=done.dropped,
                summarized=done.summary is not None,
            )
        elif step.kind == OUTPUT_CHECK_ACTIVITY:
            checked: OutputCheckResult = await self._decode(c.result.payloads, OutputCheckResult)
            oreq: OutputCheckRequest = step.request
            spec = self._s.spec
            accepted = checked.rejection is None and spec is not None
            for n, check in enumerate(checked.checks, start=1):
                last = n == len(checked.checks)
                self._emit(
                    ev.OutputChecked,
                    turn=oreq.turn,
                    check=check.check,
                    accepted=check.accepted,
                    message=check.message,
                    answer=answer_text(spec, checked.data) if accepted and last and spec else None,
                )
        elif step.kind == INPUT_CHECK_ACTIVITY:
            verdicts: InputCheckResult = await self._decode(c.result.payloads, InputCheckResult)
            ireq: InputCheckRequest = step.request
            for g in verdicts.checks:
                self._emit(
                    ev.GuardrailChecked,
                    turn=ireq.turn,
                    guardrail=g.guardrail,
                    passed=g.passed,
                    message=g.message,
                    duration_seconds=g.duration_seconds,
                )
        elif step.kind == HAND_OFF_ACTIVITY:
            self._handed_off(step, await self._decode(c.result.payloads, HandoffResult))
        elif step.kind == SNAPSHOT_ACTIVITY and self._s.spec is None:
            self._snapshotted(await self._decode(c.result.payloads, AgentSpec))

    async def _model_finished(self, step: _Scheduled, resp: ModelResponse, took: float) -> None:
        s = self._s
        req: ModelRequest = step.request
        self._prompts.responded(step.prompt, resp)
        index = req.offset + len(req.appended) if req.linear else len(req.messages)
        self._message(index, resp.message)
        self._emit(
            ev.ModelCallFinished,
            call_id=step.activity_id,
            turn=req.turn,
            model=req.model,
            outcome="completed",
            response=resp.message,
            usage=resp.usage,
            cost_usd=resp.cost_usd,
            finish_reason=resp.finish_reason,
            attempts=step.attempt,
            duration_seconds=took,
            last_attempt_seconds=step.last_attempt_seconds(self._at),
            wire=resp.wire,
            request_body=_body(step, resp),
            warnings=resp.warnings,
            transcript_ref=resp.transcript_ref,
        )
        for index, call in enumerate(resp.message.tool_calls or []):
            s.calls[call.id] = (req.turn, call)
            s.call_at[(req.turn, index)] = call
        if not self._final_answer(req.turn, resp):
            self._decide_calls(req.turn, resp.message.tool_calls or [])

    def _final_answer(self, turn: int, resp: ModelResponse) -> bool:
        """Report a structured final answer's schema check, as the workflow made it;
        whether the reply offered one (its other calls then never run)."""
        spec = self._s.spec
        if spec is None or spec.output is None:
            return False
        offered = offered_answer(spec, resp.message, resp.wire)
        if offered is None:
            return False
        if offered.call is not None:
            self._s.final.add(offered.call.id)
        # Accepted here when the worker has nothing to check (as the workflow decides).
        settled = offered.problem is None and not needs_worker_check(spec)
        self._emit(
            ev.OutputChecked,
            turn=turn,
            check="schema",
            accepted=offered.problem is None,
            message=offered.problem or "",
            answer=answer_text(spec, offered.value) if settled else None,
        )
        return True

    def _decide_calls(self, turn: int, calls: list[ToolCall]) -> None:
        """What the workflow does with the calls: the same pure checks it runs."""
        spec = self._s.spec
        if spec is None:
            return
        for index, call in enumerate(calls):
            arguments, problem = parse_call(spec, call)
            if problem is not None:
                self._s.rejected.add(call.id)
                self._emit(
                    ev.ToolCallRejected,
                    call_id=call.id,
                    turn=turn,
                    tool=call.name,
                    arguments=call.arguments,
                    reason=problem,
                )
                continue
            tool = spec.tool(call.name)
            assert tool is not None
            if tool.handoff is not None:
                self._s.handoffs.add(call.id)
            decision = spec.policy.decide(call.name, arguments, side_effects=tool.side_effects)
            self._emit(
                ev.PolicyDecided,
                call_id=call.id,
                turn=turn,
                tool=call.name,
                decision=decision.decision,
                rule=decision.rule,
                reason=decision.reason,
            )
            if decision.decision != "require_approval":
                continue
            approval_id = f"turn{turn}-tool{index}"
            self._s.approval_of[call.id] = approval_id
            if approval_id in self._s.requested:
                continue  # carried over from the previous execution: asked already
            # The workflow asks in the task that reads this reply: dated by that task.
            self._s.after_task.append(
                functools.partial(
                    self._approval_requested,
                    approval_id=approval_id,
                    call=call,
                    arguments=arguments,
                    rule=decision.rule,
                    reason=decision.reason,
                )
            )

    def _approval_requested(
        self,
        at: datetime,
        approval_id: str,
        call: ToolCall,
        arguments: dict[str, Any],
        rule: str,
        reason: str,
    ) -> ev.RunEvent:
        assert self._s.spec is not None
        timeout = timedelta(seconds=self._s.spec.limits.approval_timeout_seconds)
        pending = PendingApproval(
            call_id=approval_id,
            tool=call.name,
            arguments=arguments,
            rule=rule,
            reason=reason,
            requested_at=at,
            deadline=at + timeout,
        )
        self._s.requested[approval_id] = pending
        return ev.ApprovalRequested(
            seq=0,
            at=at,
            execution=self._execution,
            history_event_id=self._event_id,
            approval=pending,
        )

    async def _activity_ended(self, execution: int, event: HistoryEvent) -> None:
        kind = event.event_type
        status, attrs_name = _ACTIVITY_END[kind]
        attrs = getattr(event, attrs_name)
        step = self._s.scheduled.get((execution, attrs.scheduled_event_id))
        if step is None or step.kind not in (MODEL_ACTIVITY, TOOL_ACTIVITY):
            return
        error_type: str | None = None
        message: str | None = None
        if attrs.HasField("failure") if hasattr(attrs, "failure") else False:
            error_type, message = failure_text(await self._readable(attrs.failure))
        took = (self._at - step.at).total_seconds()
        if step.kind == MODEL_ACTIVITY:
            req: ModelRequest = step.request
            self._emit(
                ev.ModelCallFinished,
                call_id=step.activity_id,
                turn=req.turn,
                model=req.model,
                outcome=status,
                attempts=step.attempt,
                duration_seconds=took,
                last_attempt_seconds=step.last_attempt_seconds(self._at),
                error_type=error_type,
                error=message,
            )
        else:
            treq: ToolRequest = step.request
            self._emit(
                ev.ToolCallFinished,
                call_id=treq.call.id,
                activity_id=step.activity_id,
                turn=turn_of(step.activity_id),
                tool=treq.call.name,
                outcome=status,
                attempts=step.attempt,
                duration_seconds=took,
                last_attempt_seconds=step.last_attempt_seconds(self._at),
                error_type=error_type,
                error=message,
                last_retry_error=step.last_failure,
            )

    # --- people ------------------------------------------------------------------------

    async def _properties_modified(self, execution: int, event: HistoryEvent) -> None:
        memo = event.workflow_properties_modified_event_attributes.upserted_memo.fields
        if ASKED_MEMO not in memo:
            return
        asked: PendingApproval = await self._decode([memo[ASKED_MEMO]], PendingApproval)
        if asked.call_id not in self._s.requested:
            self._s.requested[asked.call_id] = asked
            self._emit(ev.ApprovalRequested, approval=asked)

    async def _update_accepted(self, execution: int, event: HistoryEvent) -> None:
        acc = event.workflow_execution_update_accepted_event_attributes
        if acc.accepted_request.input.name == APPROVE_UPDATE:
            self._s.approve_updates.add(acc.accepted_request.meta.update_id)

    async def _update_completed(self, execution: int, event: HistoryEvent) -> None:
        u = event.workflow_execution_update_completed_event_attributes
        if u.meta.update_id not in self._s.approve_updates or not u.outcome.HasField("success"):
            return
        record: ApprovalRecord = await self._decode(u.outcome.success.payloads, ApprovalRecord)
        self._s.answered.add(record.call_id)
        self._emit(ev.ApprovalAnswered, record=record)
        if record.tool == "budget":
            self._emit(
                ev.BudgetDecision,
                budget=record.rule.removeprefix("Limits."),
                decision="raised" if record.approved else "denied",
                raise_to=record.raise_to,
                by=record.approver,
            )

    # --- helpers -----------------------------------------------------------------------

    def _flush_unsent(self) -> None:
        """Tool results the run recorded after its last model call: end of transcript."""
        for m in self._s.unsent:
            self._message(self._s.next_index, m)
        self._s.unsent = []

    async def _readable(self, failure: Failure) -> Failure:
        return await readable(self._converter, failure)

    async def _failure_details(self, failure: Failure) -> dict[str, Any] | None:
        info = failure.application_failure_info
        if not failure.HasField("application_failure_info") or not info.details.payloads:
            return None
        try:
            details = await self._decode(info.details.payloads, dict)
        except Exception:  # details of an unknown shape: the message says enough
            return None
        return details if isinstance(details, dict) else None


def _body(step: _Scheduled, resp: ModelResponse) -> dict[str, Any] | None:
    """The exact body the provider sent, when it said how it rendered it."""
    if resp.wire is None:
        return None
    req: ModelRequest = step.request
    try:
        return render_wire_request(
            step.prompt,
            step.tools,
            temperature=req.temperature,
            max_tokens=req.max_tokens,
            wire=resp.wire,
            output=req.output,
        )
    except ValueError:  # rendered by a newer ratchet: the prompt is still shown
        return None


def _origin(fork: ForkStart) -> ev.ForkOrigin:
    return ev.ForkOrigin(
        run_id=fork.run,
        step=fork.step,
        edited_message=fork.edited_message,
        instructions=fork.instructions,
        model=fork.model,
    )


def _index_of(activity_id: str) -> int:
    """The call's index in its turn, from an id like ``turn3-tool1``."""
    _, _, index = activity_id.rpartition("-tool")
    return int(index) if index.isdigit() else -1


_CHILD_END: dict[Any, tuple[ev.CallOutcome, str]] = {
    EventType.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_COMPLETED: (
        "completed",
        "child_workflow_execution_completed_event_attributes",
    ),
    EventType.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_FAILED: (
        "failed",
        "child_workflow_execution_failed_event_attributes",
    ),
    EventType.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_CANCELED: (
        "cancelled",
        "child_workflow_execution_canceled_event_attributes",
    ),
    EventType.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_TIMED_OUT: (
        "timed_out",
        "child_workflow_execution_timed_out_event_attributes",
    ),
    EventType.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_TERMINATED: (
        "failed",
        "child_workflow_execution_terminated_event_attributes",
    ),
}


def turn_of(activity_id: str) -> int:
    """The turn of an activity id; ids are contracts: ``turn{N}-model``, ``turn{N}-tool{I}``."""
    head = activity_id.split("-", 1)[0]
    return int(head[4:]) if head.startswith("turn") and head[4:].isdigit() else 0


_ACTIVITY_END: dict[Any, tuple[ev.CallOutcome, str]] = {
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

_Handler = Callable[[HistoryReader, int, HistoryEvent], Any]
_HANDLERS: dict[Any, _Handler] = {
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED: HistoryReader._started,
    EventType.EVENT_TYPE_MARKER_RECORDED: HistoryReader._marker,
    EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED: HistoryReader._task_started,
    EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED: HistoryReader._scheduled,
    EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED: HistoryReader._activity_started,
    EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED: HistoryReader._activity_completed,
    EventType.EVENT_TYPE_ACTIVITY_TASK_FAILED: HistoryReader._activity_ended,
    EventType.EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT: HistoryReader._activity_ended,
    EventType.EVENT_TYPE_ACTIVITY_TASK_CANCELED: HistoryReader._activity_ended,
    EventType.EVENT_TYPE_WORKFLOW_PROPERTIES_MODIFIED: HistoryReader._properties_modified,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED: HistoryReader._update_accepted,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_COMPLETED: HistoryReader._update_completed,
    EventType.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED: HistoryReader._child_initiated,
    **{kind: HistoryReader._child_ended for kind in _CHILD_END},
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED: HistoryReader._closed,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED: HistoryReader._closed,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CANCELED: HistoryReader._closed,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED: HistoryReader._closed,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TIMED_OUT: HistoryReader._closed,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW: HistoryReader._closed,
}
