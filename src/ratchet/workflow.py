"""AgentWorkflow: the deterministic agent loop.

It orchestrates and does no I/O: the agent snapshot, every model call and every
tool call are activities, so the event history records each step once and a
crashed worker's successor resumes after the last recorded step. Model output
can never fail a workflow task: malformed tool calls, unknown tools and invalid
arguments go back to the model as tool errors, within a bounded number of
repair turns.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from datetime import timedelta
from typing import Any, Literal, NoReturn

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import (
    ActivityError,
    ApplicationError,
    TimeoutError,
    is_cancelled_exception,
)

with workflow.unsafe.imports_passed_through():
    from ._protocol import (
        APPROVE_UPDATE,
        COMPACT_ACTIVITY,
        END_CHAT_SIGNAL,
        MODEL_ACTIVITY,
        PENDING_QUERY,
        SEND_UPDATE,
        SNAPSHOT_ACTIVITY,
        STATUS_QUERY,
        TOOL_ACTIVITY,
        TRANSCRIPT_QUERY,
        WORKFLOW_TYPE,
        AgentSpec,
        ApprovalAnswer,
        ApprovalRecord,
        Carried,
        ChatMessage,
        ChatReply,
        CompactRequest,
        CompactResult,
        ModelRequest,
        ModelResponse,
        PendingApproval,
        RunInput,
        RunResult,
        RunStatus,
        SnapshotRequest,
        ToolRequest,
        ToolResult,
    )
    from ._schema import check_arguments
    from ._search import COST, STATUS, TOKENS, TURNS
    from ._slots import (
        REQUEST_SLOT_ACTIVITY,
        SLOT_GRANTED_SIGNAL,
        SLOTS_RELEASE_SIGNAL,
        SlotRequest,
        slots_id,
    )
    from .errors import MODEL_ERRORS
    from .messages import Message, ToolCall, chain_hash, message_hash, opening_messages
    from .policy import PolicyDecision

__all__ = ["AgentWorkflow"]

LOCAL_SNAPSHOT_PATCH = "ratchet.local-snapshot"
"""Runs started before this patch took the agent snapshot in a regular activity."""

TRANSCRIPT_LIMIT_PATCH = "ratchet.transcript-limit"
CONCURRENCY_CAP_PATCH = "ratchet.concurrency-cap"
"""Only runs of capped agents take this path, so other histories carry no marker."""

LINEAR_HISTORY_PATCH = "ratchet.linear-history"
"""Runs started before this patch sent the whole transcript to every model call, never
continued as new and had no context-window handling; they replay that way."""

_MAX_COMPACTIONS_PER_TURN = 3

_NON_RETRYABLE_MODEL_ERRORS = [k.name for k in MODEL_ERRORS.values() if not k.retryable]


@workflow.defn(name=WORKFLOW_TYPE)
class AgentWorkflow:
    """One generic workflow for every agent; the agent is chosen by ``RunInput.agent``."""

    @workflow.init
    def __init__(self, inp: RunInput) -> None:
        # Set from the input here, before any handler runs: an update can arrive in the
        # run's very first workflow task.
        self._search_attributes = inp.search_attributes
        self._rejected_by_tool: set[str] = set()
        self._pending: dict[str, PendingApproval] = {}
        self._chat = inp.chat
        self._closed = False
        self._ending = False
        self._inbox: list[tuple[int, str]] = []
        self._replies: dict[int, str] = {}
        self._answering = 0
        self._sent = 0
        self._chat_lock = asyncio.Lock()
        self._answers: dict[str, ApprovalRecord] = {}
        self._messages: list[Message] = []
        self._status = RunStatus(agent="", state="starting", step="starting")
        # Linear history: the chain head the model saw last, the messages since, and the
        # hashes an activity already stored (sent as references, not again inline).
        self._linear = False
        self._head: str | None = None
        self._pending_msgs: list[Message] = []
        self._stored: set[str] = set()
        self._turns_used = 0
        self._repair_streak = 0
        self._deferred: dict[str, PendingApproval] = {}
        carried = inp.carried
        if carried is not None:
            # Restored here, before any handler runs: an approval answer may arrive in the
            # first workflow task of the new execution.
            self._status = carried.status.model_copy()
            for p in carried.waiting:
                self._pending[p.call_id] = p
        # Concurrency slots: a continued run keeps the slots it was granted (it is the same
        # workflow id, which is what the slots workflow tracks) and never asks again.
        self._slots_held: list[str] = list(carried.slots) if carried else []
        self._slots_granted: set[str] = set(self._slots_held)
        # Set here too, for an approve update that arrives before the run code resumes.
        self._started = carried.started if carried is not None else workflow.now()
        # Budgets a person raised (on_budget="ask"), by name; carried like the slots.
        self._raised: dict[str, float] = dict(carried.budgets) if carried else {}

    @workflow.query(name=STATUS_QUERY)
    def status(self) -> RunStatus:
        return self._status

    @workflow.query(name=TRANSCRIPT_QUERY)
    def transcript(self) -> list[Message]:
        return self._messages

    @workflow.query(name=PENDING_QUERY)
    def pending(self) -> list[PendingApproval]:
        """Tool calls waiting for a person's decision."""
        return list(self._pending.values())

    @workflow.update(name=APPROVE_UPDATE)
    def approve(self, answer: ApprovalAnswer) -> ApprovalRecord:
        """Approve or deny one waiting tool call (the validator rejects bad answers)."""
        pending = self._pending[answer.call_id]
        raise_to = None
        if pending.kind == "budget" and answer.approve:
            # Default: one more configured budget beyond what the run has used.
            a = pending.arguments
            used = self._budget_used(a["budget"], a["used"])
            raise_to = answer.raise_to or max(used, a["limit"]) + a["configured"]
        record = ApprovalRecord(
            call_id=answer.call_id,
            tool=pending.tool,
            rule=pending.rule,
            approved=answer.approve,
            approver=answer.approver,
            reason=answer.reason,
            at=workflow.now(),
            raise_to=raise_to,
        )
        self._answers[answer.call_id] = record
        return record

    @workflow.update(name=SEND_UPDATE)
    async def send(self, message: ChatMessage) -> ChatReply:
        """A follow-up user message in a chat; returns the agent's reply to it."""
        async with self._chat_lock:  # FIFO: one message at a time, in arrival order
            self._sent += 1
            index = self._sent
            self._inbox.append((index, message.text))
            await workflow.wait_condition(lambda: index in self._replies)
            return ChatReply(output=self._replies.pop(index), turn=self._status.turn)

    @send.validator
    def _check_message(self, message: ChatMessage) -> None:
        if not self._chat:
            raise ApplicationError("this run is not a chat: start it with chat=True (ratchet chat)")
        if self._closed or self._ending:
            raise ApplicationError("this chat has ended")
        if not message.text.strip():
            raise ApplicationError("the message is empty")

    @workflow.signal(name=SLOT_GRANTED_SIGNAL)
    def slot_granted(self, key: str) -> None:
        """A concurrency cap let this run start."""
        self._slots_granted.add(key)

    @workflow.signal(name=END_CHAT_SIGNAL)
    def end_chat(self) -> None:
        """Close the chat after the messages already sent are answered."""
        self._ending = True

    @approve.validator
    def _check_answer(self, answer: ApprovalAnswer) -> None:
        # Rejected updates leave no trace in history: a second answer or a wrong id is
        # refused without touching the run.
        if answer.call_id in self._answers:
            done = self._answers[answer.call_id]
            verb = "approved" if done.approved else "denied"
            by = "its timeout" if done.timed_out else done.approver
            raise ApplicationError(f"call {answer.call_id!r} was already {verb} by {by}")
        if answer.call_id not in self._pending:
            waiting = ", ".join(self._pending) or "none"
            raise ApplicationError(
                f"no call {answer.call_id!r} is waiting for approval in this run "
                f"(waiting: {waiting})"
            )
        if not answer.approver.strip():
            raise ApplicationError("say who approves: the approver is empty")
        if answer.raise_to is not None:
            pending = self._pending[answer.call_id]
            if pending.kind != "budget":
                raise ApplicationError(
                    f"{answer.call_id!r} is a tool call: raise_to is only for budget decisions"
                )
            if not answer.approve:
                raise ApplicationError("raise_to goes with approve: a denial ends the run")
            unit = pending.arguments["unit"]
            used = self._budget_used(pending.arguments["budget"], pending.arguments["used"])
            if answer.raise_to <= used:
                raise ApplicationError(
                    f"raise_to={answer.raise_to:g} is not above what the run used "
                    f"({used:g} {unit}); give a higher limit"
                )

    @workflow.run
    async def run(self, inp: RunInput) -> RunResult:
        self._input = inp.model_copy(update={"carried": None})
        try:
            result = await self._run(inp)
        except asyncio.CancelledError:
            # Cancelled by a client: in-flight activities get the cancellation through
            # their heartbeats; the transcript stays queryable on the closed run.
            self._status.state = "cancelled"
            self._pending.clear()
            self._status.pending_approvals = []
            self._set_step("cancelled")
            self._publish()
            await self._release_slots()
            raise
        except ApplicationError:
            await self._release_slots()
            raise
        await self._release_slots()
        return result

    async def _release_slots(self) -> None:
        """However the run ends, its concurrency slots go to the next runs.

        Not in a ``finally``: that would also run when the worker evicts the workflow
        from its cache, where it must not issue commands.
        """
        me = workflow.info().workflow_id
        for key in self._slots_held:
            with contextlib.suppress(ActivityError, ApplicationError):
                await workflow.get_external_workflow_handle(key).signal(SLOTS_RELEASE_SIGNAL, me)

    async def _run(self, inp: RunInput) -> RunResult:
        if inp.carried is not None:
            return await self._resume(inp, inp.carried)
        self._status = RunStatus(agent=inp.agent, state="starting", step="loading agent")
        self._started = workflow.now()
        self._linear = self._use_linear_history()
        spec = await self._snapshot(inp)
        # The run's prompt is pinned: dropping it to fit the context would lose the task.
        opening = opening_messages(spec.instructions, inp.prompt, pinned=self._linear)
        self._add_all(opening)
        if self._linear:
            # The snapshot activity stored them: model calls refer to them by hash.
            self._stored.update(message_hash(m) for m in opening)
        caps = _caps(spec, inp.tenant)
        if caps and workflow.patched(CONCURRENCY_CAP_PATCH):
            await self._take_slots(caps)
            # The wall-time budget counts the run's own time, not its wait for a slot.
            self._started = workflow.now()
        self._status.state = "running"
        self._publish()
        answer = await self._answer(spec)
        return await self._chat_loop(inp, spec, answer)

    def _use_linear_history(self) -> bool:
        """Whether this run takes the linear-history path (every run since the patch)."""
        return workflow.patched(LINEAR_HISTORY_PATCH)

    async def _resume(self, inp: RunInput, carried: Carried) -> RunResult:
        """Go on where the previous execution of this run stopped."""
        self._linear = True
        self._started = carried.started
        spec = carried.spec
        self._head = carried.head
        self._pending_msgs = list(carried.pending)
        self._stored = set(carried.stored)
        self._messages = list(carried.pending)
        self._turns_used = carried.turns_used
        self._repair_streak = carried.repair_streak
        s = self._status
        s.execution += 1
        s.state = "running" if carried.resume == "answer" else "waiting-input"
        self._set_step(f"continued as new (execution {s.execution})")
        self._sync_approval_state()
        answer = carried.answer
        if carried.calls:
            # An unfinished turn: finish the tool calls still waiting for approval (their
            # approval ids and deadlines are unchanged), then go on with the next turn.
            results: dict[str, Message | None] = dict(carried.results)
            await self._finish_calls(spec, s.turn, carried.calls, results)
        if carried.resume == "answer":
            answer = await self._answer(spec)
        return await self._chat_loop(inp, spec, answer)

    async def _finish_calls(
        self, spec: AgentSpec, turn: int, calls: list[ToolCall], results: dict[str, Message | None]
    ) -> None:
        """Run the calls of ``calls`` that have no result yet; add all results in call order.

        Continues as new (again) when approvals are still open and the history is long.
        """
        todo = [(i, c) for i, c in enumerate(calls) if results.get(c.id) is None]
        done = await asyncio.gather(
            *(self._gated_tool(spec, turn, i, c, _parse_call(spec, c)[0]) for i, c in todo)
        )
        for (_, c), message in zip(todo, done, strict=True):
            results[c.id] = message
        if self._deferred:
            self._continue_as_new(self._input, spec, resume="answer", calls=calls, results=results)
        self._add_all([m for c in calls if (m := results[c.id]) is not None])

    def _add(self, message: Message) -> None:
        self._messages.append(message)
        if self._linear:
            self._pending_msgs.append(message)

    def _add_all(self, messages: list[Message]) -> None:
        for m in messages:
            self._add(m)

    def _can_continue(self, spec: AgentSpec) -> bool:
        """Whether to continue as new at this boundary (history long, nothing in flight)."""
        if not self._linear or not workflow.all_handlers_finished():
            return False
        info = workflow.info()
        limits = spec.limits
        return (
            info.is_continue_as_new_suggested()
            or info.get_current_history_length() >= limits.continue_as_new_after_events
            or info.get_current_history_size() >= limits.continue_as_new_after_bytes
        )

    def _continue_as_new(
        self,
        inp: RunInput,
        spec: AgentSpec,
        *,
        resume: Literal["answer", "chat"],
        answer: str = "",
        calls: list[ToolCall] | None = None,
        results: dict[str, Message | None] | None = None,
    ) -> NoReturn:
        """Hand the run to a new execution with the same id: references and totals only."""
        status = self._status.model_copy(
            update={
                "transcript_offset": self._status.transcript_offset
                + len(self._messages)
                - len(self._pending_msgs),
                "pending_approvals": [],
            }
        )
        done = {k: m for k, m in (results or {}).items() if m is not None}
        carried = Carried(
            spec=spec,
            status=status,
            started=self._started,
            head=self._head,
            pending=self._pending_msgs,
            stored=[h for m in self._pending_msgs if (h := message_hash(m)) in self._stored]
            + [h for m in done.values() if (h := message_hash(m)) in self._stored],
            resume=resume,
            answer=answer,
            turns_used=self._turns_used,
            repair_streak=self._repair_streak,
            calls=calls or [],
            results=done,
            waiting=list(self._deferred.values()),
            slots=list(self._slots_held),
            budgets=dict(self._raised),
        )
        self._set_step(f"continuing as new (execution {status.execution + 1})")
        workflow.continue_as_new(inp.model_copy(update={"carried": carried}))

    async def _chat_loop(self, inp: RunInput, spec: AgentSpec, answer: str) -> RunResult:
        while self._chat:
            # A chat stays open for follow-up messages, handled in order, one at a time.
            self._replies[self._answering] = answer
            self._status.state = "waiting-input"
            self._set_step("waiting for the next message")
            self._publish()
            # Idle for too long: end, unless a message arrived in the same workflow task.
            with contextlib.suppress(asyncio.TimeoutError):
                await workflow.wait_condition(
                    lambda: bool(self._inbox) or self._ending or self._can_continue(spec),
                    timeout=timedelta(seconds=spec.limits.chat_idle_timeout_seconds),
                )
            if not self._inbox and not self._ending and self._can_continue(spec):
                self._continue_as_new(inp, spec, resume="chat", answer=answer)
            if not self._inbox:
                break  # ended by the client, or idle
            self._answering, text = self._inbox.pop(0)
            self._add(Message.user(text))
            self._status.state = "running"
            self._publish()
            answer = await self._answer(spec)
        self._closed = True
        # Let every update handler reply before the run closes.
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self._complete(answer, self._status.turn)

    async def _answer(self, spec: AgentSpec) -> str:
        """Model and tool turns until the model answers the latest user message."""
        limits = spec.limits
        while True:
            await self._check_turns(spec)
            if self._can_continue(spec):
                # A safe turn boundary: nothing in flight, the next model call not started.
                self._continue_as_new(self._input, spec, resume="answer")
            await self._check_budgets(spec)
            self._turns_used += 1
            # Turn numbers run on across a chat's messages: activity ids stay unique.
            self._status.turn += 1
            turn = self._status.turn
            self._set_step(f"model call (turn {turn})")
            response = await self._call_model(spec, turn)
            self._account(response)
            self._publish()
            message = response.message
            self._messages.append(message)
            if self._linear:
                self._head = response.transcript_ref
                self._pending_msgs = []
            if not message.tool_calls:
                self._turns_used = 0
                self._repair_streak = 0
                # max_turns is per user message: a raise was for this message only.
                self._raised.pop("max_turns", None)
                return message.content or ""

            results, had_invalid = await self._run_tool_calls(spec, turn, message.tool_calls)
            self._repair_streak = self._repair_streak + 1 if had_invalid else 0
            if self._deferred:
                # Approvals still open and the history is long: hand them to a new execution.
                self._continue_as_new(
                    self._input,
                    spec,
                    resume="answer",
                    calls=message.tool_calls,
                    results={c.id: m for c, m in zip(message.tool_calls, results, strict=True)},
                )
            done = [m for m in results if m is not None]
            self._add_all(done)
            if self._repair_streak > limits.max_repair_turns:
                self._fail(
                    "RepairLimitExceeded",
                    f"the model made invalid tool calls {self._repair_streak} turns in a row "
                    f"(Limits.max_repair_turns={limits.max_repair_turns}); last problem: "
                    f"{next(m.content for m in reversed(done) if m.is_error)}",
                )

    async def _take_slots(self, caps: list[tuple[str, int]]) -> None:
        """Wait, queued, until every concurrency cap of the run grants it a slot."""
        info = workflow.info()
        self._status.state = "queued"
        for key, limit in caps:
            self._set_step(f"queued: waiting for a slot of {key} (at most {limit} at once)")
            self._publish()
            self._slots_held.append(key)  # released at the end even if never granted
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
        await workflow.wait_condition(lambda: key in self._slots_granted)

    async def _snapshot(self, inp: RunInput) -> AgentSpec:
        request = SnapshotRequest(
            agent=inp.agent, model=inp.model, prompt=inp.prompt if self._linear else None
        )
        retry = RetryPolicy(
            maximum_attempts=5, non_retryable_error_types=["UnknownAgent", "ConfigError"]
        )
        try:
            if workflow.patched(LOCAL_SNAPSHOT_PATCH):
                # A local activity: the snapshot is a fast lookup in the worker's registry,
                # so it skips the task-queue round trip (about 45 ms less per run).
                spec: AgentSpec = await workflow.execute_local_activity(
                    SNAPSHOT_ACTIVITY,
                    request,
                    result_type=AgentSpec,
                    start_to_close_timeout=timedelta(seconds=30),
                    retry_policy=retry,
                    summary=f"snapshot agent {inp.agent}",
                )
            else:
                # Runs recorded before the patch replay this path.
                spec = await workflow.execute_activity(
                    SNAPSHOT_ACTIVITY,
                    request,
                    result_type=AgentSpec,
                    start_to_close_timeout=timedelta(seconds=30),
                    retry_policy=retry,
                    summary=f"snapshot agent {inp.agent}",
                )
            return spec
        except ActivityError as e:
            _reraise_cancellation(e)
            error_type, message = _cause(e)
            self._fail(error_type, message)

    async def _call_model(self, spec: AgentSpec, turn: int) -> ModelResponse:
        if self._linear:
            return await self._call_model_linear(spec, turn)
        limits = spec.limits
        size = _transcript_bytes(self._messages)
        # `patched` is consulted only when the guard fires, so ordinary runs carry no
        # marker, and an oversized run recorded before the guard replays as it ran.
        if size > limits.max_transcript_bytes and workflow.patched(TRANSCRIPT_LIMIT_PATCH):
            self._fail(
                "PayloadTooLarge",
                f"the transcript is {size:,} bytes before model call {turn}, over "
                f"Limits.max_transcript_bytes={limits.max_transcript_bytes:,} (Temporal "
                "rejects payloads over 2 MB); lower the tools' max_result_chars or start "
                "a new run",
            )
        request = ModelRequest(
            agent=spec.name,
            model=spec.model,
            turn=turn,
            messages=list(self._messages),
            tools=spec.tools,
            tool_mode=spec.tool_mode,
            temperature=spec.temperature,
            max_tokens=spec.max_tokens,
            timeout_seconds=limits.model_timeout_seconds,
            heartbeat_seconds=limits.model_heartbeat_seconds,
        )
        try:
            return await self._model_activity(spec, request, f"turn{turn}-model")
        except ActivityError as e:
            _reraise_cancellation(e)
            error_type, message = _cause(e)
            self._fail(error_type, f"model call of turn {turn} failed: {message}")

    async def _call_model_linear(self, spec: AgentSpec, turn: int) -> ModelResponse:
        """A model call that sends a transcript reference and the new messages only.

        A prompt over the context window is shrunk with the agent's strategy (an
        activity) and the call retried, a bounded number of times.
        """
        limits = spec.limits
        for attempt in range(_MAX_COMPACTIONS_PER_TURN + 1):
            appended: list[Message | str] = [
                h if (h := message_hash(m)) in self._stored else m for m in self._pending_msgs
            ]
            request = ModelRequest(
                agent=spec.name,
                model=spec.model,
                turn=turn,
                messages=[],
                transcript_ref=self._head,
                appended=appended,
                offset=self._status.transcript_offset
                + len(self._messages)
                - len(self._pending_msgs),
                linear=True,
                context_window_tokens=limits.context_window_tokens,
                # By reference when the snapshot stored them (runs since then).
                tools=[] if spec.tools_ref else spec.tools,
                tools_ref=spec.tools_ref,
                tool_mode=spec.tool_mode,
                temperature=spec.temperature,
                max_tokens=spec.max_tokens,
                timeout_seconds=limits.model_timeout_seconds,
                heartbeat_seconds=limits.model_heartbeat_seconds,
            )
            activity_id = f"turn{turn}-model" + (f"-{attempt + 1}" if attempt else "")
            try:
                return await self._model_activity(spec, request, activity_id)
            except ActivityError as e:
                _reraise_cancellation(e)
                error_type, message = _cause(e)
                if error_type != "ContextTooLong" or attempt == _MAX_COMPACTIONS_PER_TURN:
                    self._fail(error_type, f"model call of turn {turn} failed: {message}")
            # The activity stored the prompt before calling the provider: its chain head
            # names it, so the compaction request carries no messages.
            head = self._head
            for m in self._pending_msgs:
                head = chain_hash(head, message_hash(m))
                self._stored.add(message_hash(m))
            assert head is not None  # a prompt always has the system message
            await self._compact(spec, turn, head, attempt)
        raise AssertionError("unreachable")  # the loop returns or fails

    async def _compact(self, spec: AgentSpec, turn: int, head: str, attempt: int) -> None:
        limits = spec.limits
        self._set_step(f"shrinking the prompt to fit the context ({limits.context_strategy})")
        try:
            result: CompactResult = await workflow.execute_activity(
                COMPACT_ACTIVITY,
                CompactRequest(
                    agent=spec.name,
                    model=spec.model,
                    turn=turn,
                    head=head,
                    strategy=limits.context_strategy,
                    context_window_tokens=limits.context_window_tokens,
                    timeout_seconds=limits.model_timeout_seconds,
                    heartbeat_seconds=limits.model_heartbeat_seconds,
                ),
                result_type=CompactResult,
                task_queue=spec.model_task_queue,
                activity_id=f"turn{turn}-compact" + (f"-{attempt + 1}" if attempt else ""),
                start_to_close_timeout=timedelta(seconds=limits.model_timeout_seconds + 10),
                heartbeat_timeout=timedelta(seconds=limits.model_heartbeat_seconds),
                retry_policy=RetryPolicy(
                    initial_interval=timedelta(seconds=limits.model_retry_initial_seconds),
                    maximum_interval=timedelta(seconds=limits.model_retry_max_seconds),
                    maximum_attempts=limits.model_max_attempts,
                    non_retryable_error_types=[
                        *_NON_RETRYABLE_MODEL_ERRORS,
                        "TranscriptEntryMissing",
                    ],
                ),
                summary=f"{limits.context_strategy} · turn {turn}",
            )
        except ActivityError as e:
            _reraise_cancellation(e)
            error_type, message = _cause(e)
            self._fail(error_type, f"shrinking the prompt of turn {turn} failed: {message}")
        self._head = result.head
        self._pending_msgs = []
        self._status.compactions += 1
        if result.usage.requests:
            self._account(
                ModelResponse(
                    message=Message.assistant(""),
                    usage=result.usage,
                    model=spec.model,
                    cost_usd=result.cost_usd,
                )
            )

    async def _model_activity(
        self, spec: AgentSpec, request: ModelRequest, activity_id: str
    ) -> ModelResponse:
        limits = spec.limits
        response: ModelResponse = await workflow.execute_activity(
            MODEL_ACTIVITY,
            request,
            result_type=ModelResponse,
            task_queue=spec.model_task_queue,
            activity_id=activity_id,
            # The attempt's own HTTP timeout fires first; this is the backstop. A call
            # may first wait for its provider's rate limiter, heartbeating.
            start_to_close_timeout=timedelta(
                seconds=limits.model_timeout_seconds + limits.model_queue_seconds + 10
            ),
            heartbeat_timeout=timedelta(seconds=limits.model_heartbeat_seconds),
            retry_policy=RetryPolicy(
                initial_interval=timedelta(seconds=limits.model_retry_initial_seconds),
                backoff_coefficient=2.0,
                maximum_interval=timedelta(seconds=limits.model_retry_max_seconds),
                maximum_attempts=limits.model_max_attempts,
                non_retryable_error_types=_NON_RETRYABLE_MODEL_ERRORS
                + (["TranscriptEntryMissing", "PayloadTooLarge"] if request.linear else []),
            ),
            summary=f"model {spec.model} · turn {request.turn}",
        )
        return response

    async def _run_tool_calls(
        self, spec: AgentSpec, turn: int, calls: list[ToolCall]
    ) -> tuple[list[Message | None], bool]:
        """Run the valid calls in parallel; answer invalid ones with an error message.

        Returns the tool messages in the order of the calls (None for a call whose
        approval is handed to the next execution), and whether any call was invalid.
        """
        pending: list[Any] = []
        had_invalid = False
        for index, call in enumerate(calls):
            arguments, problem = _parse_call(spec, call)
            if problem is not None:
                had_invalid = True
                pending.append(_ready(Message.tool(call, problem, is_error=True)))
            else:
                pending.append(self._gated_tool(spec, turn, index, call, arguments))
        self._set_step(
            f"{len(calls)} tool call(s) (turn {turn}): " + ", ".join(c.name for c in calls)
        )
        messages: list[Message | None] = list(await asyncio.gather(*pending))
        self._status.tool_calls += len(calls)
        # Arguments the tool's own validation rejected (constraints the schema check in
        # here does not cover, e.g. ranges) count as invalid calls too.
        had_invalid = had_invalid or any(c.id in self._rejected_by_tool for c in calls)
        return messages, had_invalid

    async def _gated_tool(
        self, spec: AgentSpec, turn: int, index: int, call: ToolCall, arguments: dict[str, Any]
    ) -> Message | None:
        """Apply the agent's policy to one call, then run it if allowed (or approved)."""
        tool = spec.tool(call.name)
        assert tool is not None  # _parse_call checked it
        decision = spec.policy.decide(call.name, arguments, side_effects=tool.side_effects)
        if decision.decision == "deny":
            why = f": {decision.reason}" if decision.reason else ""
            return Message.tool(
                call,
                f"error: the policy denies this call (rule {decision.rule!r}){why}. "
                "Do not retry it; tell the user it is not allowed.",
                is_error=True,
            )
        approval = None
        if decision.decision == "require_approval":
            approval = await self._await_approval(
                spec,
                f"turn{turn}-tool{index}",
                tool=call.name,
                arguments=arguments,
                rule=decision.rule,
                reason=decision.reason,
            )
            if approval is None:
                return None  # still waiting: the next execution asks again
            if not approval.approved:
                why = f": {approval.reason}" if approval.reason else ""
                return Message.tool(
                    call,
                    f"error: {approval.approver} denied this call{why}. "
                    "Do not retry it; tell the user.",
                    is_error=True,
                )
        return await self._run_tool(spec, turn, index, call, arguments, decision, approval)

    async def _await_approval(
        self,
        spec: AgentSpec,
        approval_id: str,
        *,
        tool: str,
        arguments: dict[str, Any],
        rule: str,
        reason: str,
        kind: Literal["tool", "budget"] = "tool",
    ) -> ApprovalRecord | None:
        """Wait for a person's answer; None when the run continues as new meanwhile."""
        timeout = timedelta(seconds=spec.limits.approval_timeout_seconds)
        now = workflow.now()
        if approval_id in self._pending:
            # Carried over from the previous execution: the same request, the same deadline.
            timeout = max(self._pending[approval_id].deadline - now, timedelta(0))
        else:
            self._pending[approval_id] = PendingApproval(
                call_id=approval_id,
                tool=tool,
                arguments=arguments,
                rule=rule,
                reason=reason,
                requested_at=now,
                deadline=now + timeout,
                kind=kind,
            )
        self._sync_approval_state()
        try:
            # A durable timer: the wait costs no worker memory and survives restarts. A
            # long history hands the wait to a new execution (a safe boundary: nothing
            # runs for this call yet).
            await workflow.wait_condition(
                lambda: approval_id in self._answers or self._can_continue(spec),
                timeout=timeout,
            )
            if approval_id not in self._answers:
                self._deferred[approval_id] = self._pending[approval_id]
                return None
        except asyncio.TimeoutError:  # noqa: UP041 (TimeoutError here is temporalio's)
            # An answer that landed in the same workflow task as the deadline wins: the
            # approver was told it was accepted.
            self._answers.setdefault(
                approval_id,
                ApprovalRecord(
                    call_id=approval_id,
                    tool=tool,
                    rule=rule,
                    approved=False,
                    approver="ratchet",
                    reason=f"nobody answered within {timeout} (Limits.approval_timeout_seconds)",
                    at=workflow.now(),
                    timed_out=True,
                ),
            )
        record = self._answers[approval_id]
        del self._pending[approval_id]
        self._status.approvals.append(record)
        self._sync_approval_state()
        return record

    def _sync_approval_state(self) -> None:
        self._status.pending_approvals = list(self._pending.values())
        if self._pending:
            self._status.state = "waiting-approval"
            self._set_step(f"waiting for approval of {', '.join(self._pending)}")
        elif self._status.state == "waiting-approval":
            self._status.state = "running"
        self._publish()

    async def _run_tool(
        self,
        spec: AgentSpec,
        turn: int,
        index: int,
        call: ToolCall,
        arguments: dict[str, Any],
        decision: PolicyDecision | None = None,
        approval: ApprovalRecord | None = None,
    ) -> Message:
        tool = spec.tool(call.name)
        assert tool is not None  # _parse_call checked it
        try:
            result = await workflow.execute_activity(
                TOOL_ACTIVITY,
                ToolRequest(
                    agent=spec.name,
                    call=call,
                    arguments=arguments,
                    heartbeat_seconds=spec.limits.tool_heartbeat_seconds,
                    # Only a rule that decided something is worth recording.
                    policy=decision if decision and decision.rule != "policy.default" else None,
                    approval=approval,
                    store=self._linear,
                ),
                result_type=ToolResult,
                # Explicit and unique per run, so the idempotency key derived from it is stable.
                activity_id=f"turn{turn}-tool{index}",
                start_to_close_timeout=timedelta(seconds=tool.timeout_seconds),
                heartbeat_timeout=timedelta(seconds=spec.limits.tool_heartbeat_seconds),
                retry_policy=RetryPolicy(maximum_attempts=tool.max_attempts),
                summary=f"tool {call.name}({_short_args(arguments)})",
            )
        except ActivityError as e:
            _reraise_cancellation(e)
            error_type, message = _cause(e)
            if error_type in ("ToolFailed", "PayloadTooLarge"):
                self._fail(error_type, message)
            return Message.tool(call, f"tool {call.name!r} failed: {message}", is_error=True)
        if result.invalid_arguments:
            self._rejected_by_tool.add(call.id)
        if result.message_ref is not None:
            self._stored.add(result.message_ref)
        return Message.tool(call, result.content, is_error=result.is_error)

    def _elapsed(self) -> float:
        """Seconds the run has lasted (what ``max_wall_seconds`` counts)."""
        return (workflow.now() - self._started).total_seconds()

    def _budget_used(self, budget: str, used_when_asked: float) -> float:
        """What a budget has used now: wall time goes on while a person decides."""
        return self._elapsed() if budget == "max_wall_seconds" else used_when_asked

    async def _check_turns(self, spec: AgentSpec) -> None:
        """The ``max_turns`` budget: model calls for the current user message."""
        limit = self._raised.get("max_turns", spec.limits.max_turns)
        if self._turns_used >= limit:
            await self._budget_spent(
                spec,
                "max_turns",
                self._turns_used,
                limit,
                spec.limits.max_turns,
                "turns",
                f"agent {spec.name!r} gave no final answer within Limits.max_turns={limit:g} "
                "turns; its transcript is kept (raise the limit or give it a simpler task)",
            )

    async def _check_budgets(self, spec: AgentSpec) -> None:
        """Tokens, cost and wall time, checked before each model call."""
        limits = spec.limits
        s = self._status
        budgets: list[tuple[str, float, float | None, str]] = [
            ("max_total_tokens", s.usage.total_tokens, limits.max_total_tokens, "tokens"),
            ("max_cost_usd", s.cost_usd, limits.max_cost_usd, "USD"),
            ("max_wall_seconds", self._elapsed(), limits.max_wall_seconds, "seconds"),
        ]
        for name, used, configured, unit in budgets:
            if configured is None:
                continue
            limit = self._raised.get(name, configured)
            if used >= limit:
                await self._budget_spent(
                    spec,
                    name,
                    used,
                    limit,
                    configured,
                    unit,
                    f"the run used {used:g} {unit}, reaching its budget Limits.{name}={limit:g}; "
                    "its transcript is kept (raise the budget to allow more)",
                )

    async def _budget_spent(
        self,
        spec: AgentSpec,
        name: str,
        used: float,
        limit: float,
        configured: float,
        unit: str,
        message: str,
    ) -> None:
        """End the run with ``BudgetExceeded``, or (``on_budget="ask"``) ask a person.

        Returns only when a person raised the budget: the run goes on.
        """
        details = {"budget": name, "used": used, "limit": limit}
        if spec.limits.on_budget == "ask":
            approval_id = f"turn{self._status.turn + 1}-budget-{name}"
            record = await self._await_approval(
                spec,
                approval_id,
                tool="budget",
                arguments={**details, "unit": unit, "configured": configured},
                rule=f"Limits.{name}",
                reason=f"used {used:g} of {limit:g} {unit}",
                kind="budget",
            )
            if record is None:
                # The history is long: the next execution asks again (same id, deadline).
                self._continue_as_new(self._input, spec, resume="answer")
            if record.approved and record.raise_to is not None:
                self._raised[name] = record.raise_to
                self._set_step(f"{record.approver} raised Limits.{name} to {record.raise_to:g}")
                return
            by = "nobody answered in time" if record.timed_out else f"{record.approver} denied"
            why = f": {record.reason}" if record.reason and not record.timed_out else ""
            message = f"{message}; asked to go on, {by}{why}"
        self._fail("BudgetExceeded", message, details=details)

    def _account(self, response: ModelResponse) -> None:
        self._status.usage = self._status.usage + response.usage
        if response.cost_usd is None:
            self._status.unpriced_calls += 1
        else:
            self._status.cost_usd += response.cost_usd

    def _complete(self, output: str, turn: int) -> RunResult:
        self._status.state = "completed"
        self._status.output = output
        self._set_step("completed")
        self._publish()
        return RunResult(
            output=output,
            turns=turn,
            usage=self._status.usage,
            tool_calls=self._status.tool_calls,
            cost_usd=self._status.cost_usd,
        )

    def _fail(
        self, error_type: str, message: str, *, details: dict[str, Any] | None = None
    ) -> NoReturn:
        self._status.state = "failed"
        self._status.error = f"{error_type}: {message}"
        self._set_step("failed")
        self._publish()
        raise ApplicationError(
            message, *([details] if details else []), type=error_type, non_retryable=True
        )

    def _publish(self) -> None:
        """Mirror the status into search attributes (when the namespace has them)."""
        if not self._search_attributes:
            return
        s = self._status
        workflow.upsert_search_attributes(
            [
                STATUS.value_set(s.state),
                TURNS.value_set(s.turn),
                TOKENS.value_set(s.usage.total_tokens),
                COST.value_set(round(s.cost_usd, 6)),
            ]
        )

    def _set_step(self, step: str) -> None:
        self._status.step = step
        workflow.set_current_details(
            f"**{self._status.agent}** · turn {self._status.turn} · {step}"
        )


def _parse_call(spec: AgentSpec, call: ToolCall) -> tuple[dict[str, Any], str | None]:
    """Check one tool call against the snapshot; return its arguments or a message for the model."""
    tool = spec.tool(call.name)
    if tool is None:
        names = ", ".join(t.name for t in spec.tools) or "(none)"
        return {}, f"error: unknown tool {call.name!r}. Available tools: {names}."
    try:
        arguments = json.loads(call.arguments) if call.arguments.strip() else {}
    except (ValueError, RecursionError) as e:
        return {}, (
            f"error: the arguments of {call.name!r} are not valid JSON ({e}). "
            f"Send a JSON object matching this schema: {json.dumps(tool.parameters)}"
        )
    if not isinstance(arguments, dict):
        return {}, f"error: the arguments of {call.name!r} must be a JSON object."
    problems = check_arguments(tool.parameters, arguments)
    if problems:
        return {}, (
            f"error: invalid arguments for {call.name!r}: {'; '.join(problems)}. "
            f"Expected schema: {json.dumps(tool.parameters)}"
        )
    return arguments, None


def _caps(spec: AgentSpec, tenant: str | None) -> list[tuple[str, int]]:
    """The concurrency caps (slots workflow id, limit) a run of ``spec`` must pass."""
    caps = []
    if spec.max_concurrent_runs is not None:
        caps.append((slots_id(spec.name), spec.max_concurrent_runs))
    if tenant and spec.max_concurrent_runs_per_tenant is not None:
        caps.append((slots_id(spec.name, tenant), spec.max_concurrent_runs_per_tenant))
    return caps


def _reraise_cancellation(e: ActivityError) -> None:
    """An activity that failed because the run is being cancelled cancels the run too."""
    if is_cancelled_exception(e):
        raise asyncio.CancelledError() from e


def _cause(e: ActivityError) -> tuple[str, str]:
    """The taxonomy name and message of an activity failure."""
    cause = e.cause
    if isinstance(cause, ApplicationError):
        return cause.type or "ApplicationError", cause.message
    if isinstance(cause, TimeoutError):
        return "ModelTimeout" if e.activity_type == MODEL_ACTIVITY else "ToolTimeout", (
            f"{e.activity_type} timed out ({cause.type.name if cause.type else 'timeout'})"
        )
    return type(cause).__name__ if cause else "ActivityError", str(cause or e)


def _transcript_bytes(messages: list[Message]) -> int:
    """What the transcript weighs in a model request (UTF-8 text of contents and calls)."""
    total = 0
    for m in messages:
        total += len((m.content or "").encode())
        for c in m.tool_calls or []:
            total += len(c.arguments.encode()) + len(c.name) + len(c.id)
    return total


async def _ready(message: Message) -> Message:
    return message


def _short_args(arguments: dict[str, Any]) -> str:
    text = ", ".join(f"{k}={json.dumps(v)}" for k, v in arguments.items())
    return text if len(text) <= 80 else text[:77] + "..."
