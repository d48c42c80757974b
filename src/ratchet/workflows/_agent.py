"""AgentWorkflow: the deterministic agent loop.

It orchestrates and does no I/O: the agent snapshot, every model call and every
tool call are activities, so the event history records each step once and a
crashed worker's successor resumes after the last recorded step.

The loop is here, top to bottom; the run's state lives in one object per concern,
each in its own module: ``Status`` (what the status query and search attributes
show), ``Transcript`` (the messages, and how model calls carry them), ``Approvals``,
``Budgets``, ``Chat``, ``RunSlots`` (concurrency caps), ``ModelCalls``, ``ToolCalls``
and ``FinalAnswers`` (structured output), and ``_carry`` (continue-as-new). The
handlers stay on this class, as Temporal needs, and hand their work to those objects.
"""

from __future__ import annotations

import asyncio
from typing import Literal, NoReturn, assert_never

from temporalio import workflow
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from .._protocol import (
        APPROVE_UPDATE,
        END_CHAT_SIGNAL,
        PENDING_QUERY,
        SEND_UPDATE,
        STATUS_QUERY,
        TRANSCRIPT_QUERY,
        WORKFLOW_TYPE,
        AgentSpec,
        ApprovalAnswer,
        ApprovalRecord,
        Carried,
        ChatMessage,
        ChatReply,
        ForkStart,
        ModelResponse,
        PendingApproval,
        RunInput,
        RunResult,
        RunStatus,
    )
    from .._slots_protocol import SLOT_GRANTED_SIGNAL
    from ..messages import Message, ToolCall

from . import _carry
from ._answers import REPAIRED, FinalAnswers, parsed_output
from ._approvals import Approvals
from ._budgets import Budgets, inherit
from ._chat import Chat
from ._fixtures import FixtureReplay
from ._guardrails import check_input
from ._handoffs import hand_off
from ._mcp_refresh import refreshed
from ._mcp_sessions import MCPPins
from ._model_calls import ModelCalls
from ._patches import patched
from ._slots import RunSlots, caps_of
from ._snapshot import take_snapshot
from ._status import Status
from ._subagents import SubAgents
from ._tool_calls import ToolCalls
from ._transcript import FullTranscript, LinearTranscript, Transcript

__all__ = ["AgentWorkflow"]

CONCURRENCY_CAP_PATCH = "ratchet.concurrency-cap"
"""Only runs of capped agents take this path, so other histories carry no marker."""

LINEAR_HISTORY_PATCH = "ratchet.linear-history"
"""Runs started before this patch sent the whole transcript to every model call, never
continued as new and had no context-window handling; they replay that way."""


@workflow.defn(name=WORKFLOW_TYPE)
class AgentWorkflow:
    """One generic workflow for every agent; the agent is chosen by ``RunInput.agent``."""

    @workflow.init
    def __init__(self, inp: RunInput) -> None:
        # Built from the input here, before any handler runs: an update can arrive in the
        # run's very first workflow task, also in a continued execution's.
        carried = inp.carried
        self._status = Status(inp.search_attributes, carried, run_version=inp.version)
        self._approvals = Approvals(self._status, carried, self._can_continue_as_new)
        self._budgets = Budgets(
            self._status,
            self._approvals,
            carried,
            lambda spec: self._continue_as_new(resume="answer"),
        )
        self._chat = Chat(inp.chat)
        self._slots = RunSlots(self._status, carried)
        self._subagents = SubAgents(inp, self._status, self._budgets)
        self._pins = MCPPins(carried)
        self._replay = FixtureReplay(inp.fixtures) if inp.fixtures is not None else None
        # Until the run picks its path (a patch decides, which only the run may ask).
        self._transcript: Transcript = FullTranscript()

    # -- handlers -----------------------------------------------------------------------

    @workflow.query(name=STATUS_QUERY)
    def status(self) -> RunStatus:
        return self._status.current

    @workflow.query(name=TRANSCRIPT_QUERY)
    def transcript(self) -> list[Message]:
        return self._transcript.messages

    @workflow.query(name=PENDING_QUERY)
    def pending(self) -> list[PendingApproval]:
        """Tool calls waiting for a person's decision."""
        return self._approvals.waiting()

    @workflow.update(name=APPROVE_UPDATE)
    async def approve(self, answer: ApprovalAnswer) -> ApprovalRecord:
        """Approve or deny one waiting tool call (the validator rejects bad answers; the
        worker then checks the answer's proof)."""
        return await self._approvals.answer(answer, self._budgets.used_now)

    @approve.validator
    def _check_answer(self, answer: ApprovalAnswer) -> None:
        self._approvals.check(answer, self._budgets.used_now)

    # A message can end the run it is sent to (a guardrail stops it, a budget runs
    # out): its update is left unanswered on purpose, and the sender reads the run's
    # failure instead (RunHandle.send), so the SDK's warning would only be noise.
    @workflow.update(name=SEND_UPDATE, unfinished_policy=workflow.HandlerUnfinishedPolicy.ABANDON)
    async def send(self, message: ChatMessage) -> ChatReply:
        """A follow-up user message in a chat; returns the agent's reply to it."""
        output = await self._chat.send(message.text)
        return ChatReply(output=output, turn=self._status.current.turn)

    @send.validator
    def _check_message(self, message: ChatMessage) -> None:
        self._chat.check(message)

    @workflow.signal(name=SLOT_GRANTED_SIGNAL)
    def slot_granted(self, key: str) -> None:
        """A concurrency cap let this run start."""
        self._slots.granted(key)

    @workflow.signal(name=END_CHAT_SIGNAL)
    def end_chat(self) -> None:
        """Close the chat after the messages already sent are answered."""
        self._chat.end()

    # -- the run --------------------------------------------------------------------------

    @workflow.run
    async def run(self, inp: RunInput) -> RunResult:
        self._input = inp.model_copy(update={"carried": None})
        try:
            result = await self._run(inp)
        except asyncio.CancelledError:
            # Cancelled by a client: in-flight activities get the cancellation through
            # their heartbeats; the transcript stays queryable on the closed run.
            self._approvals.cancel()
            self._status.cancelled()
            await self._slots.release()
            raise
        except ApplicationError:
            await self._slots.release()
            raise
        await self._slots.release()
        return result

    async def _run(self, inp: RunInput) -> RunResult:
        if inp.carried is not None:
            return await self._resume(inp.carried)
        if inp.fork is not None:
            return await self._forked(inp, inp.fork)
        self._status.start(inp.agent)
        self._budgets.restart_clock()
        self._transcript = self._choose_transcript(inp.version)
        # A sub-agent's budgets are capped by what its parent had left.
        spec = inherit(await self._snapshot(inp), inp.inherited)
        self._root = spec
        # The run's prompt is pinned: dropping it to fit the context would lose the task.
        self._transcript.open(spec.instructions, inp.prompt)
        self._start_calls(spec, None)
        await self._take_slots(spec, inp)
        self._status.running()
        if spec.input_guardrails:
            await check_input(spec, inp.prompt, status=self._status)
        answer = await self._answer()
        return await self._chat_loop(answer)

    async def _forked(self, inp: RunInput, fork: ForkStart) -> RunResult:
        """A fork of another run: the parent's transcript up to the fork's step (its tool
        results included, never run again), then live from the next model call on."""
        self._status.forked(inp.agent, fork.turn, fork.agent)
        self._budgets.restart_clock()
        self._transcript = LinearTranscript.forked(fork)
        self._root = fork.spec
        self._start_calls(fork.spec.member(fork.agent) if fork.agent else fork.spec, None)
        await self._take_slots(fork.spec, inp)
        self._status.running()
        if fork.edited_message is not None and self._spec.input_guardrails:
            await check_input(self._spec, fork.edited_message, status=self._status)
        answer = await self._answer()
        return await self._chat_loop(answer)

    async def _take_slots(self, spec: AgentSpec, inp: RunInput) -> None:
        """Wait for the agent's concurrency caps to let the run start, if it has any."""
        caps = caps_of(spec, inp.tenant)
        if caps and patched(CONCURRENCY_CAP_PATCH, inp.version):
            await self._slots.take(caps)
            # The wall-time budget counts the run's own time, not its wait for a slot.
            self._budgets.restart_clock()

    def _choose_transcript(self, run_version: int) -> Transcript:
        """The linear-history path for every run since the patch, else the full transcript."""
        linear = patched(LINEAR_HISTORY_PATCH, run_version)
        return LinearTranscript() if linear else FullTranscript()

    async def _snapshot(self, inp: RunInput) -> AgentSpec:
        return await take_snapshot(
            inp, store_prompt=self._transcript.by_reference, status=self._status
        )

    def _start_calls(self, spec: AgentSpec, carried: Carried | None) -> None:
        """Calls as ``spec``, the agent that has the conversation (changed by a handoff)."""
        self._spec = spec
        self._model = ModelCalls(spec, self._transcript, self._status)
        self._tools = ToolCalls(
            spec,
            self._transcript,
            self._status,
            self._approvals,
            self._subagents,
            self._pins,
            carried,
            self._replay,
        )
        self._answers = FinalAnswers(spec, self._transcript, self._status, carried)

    async def _hand_off(self, turn: int, call: ToolCall, target: str) -> None:
        """The model handed the conversation to ``target``: it answers from now on."""
        streaks = self._tools.repair_streak, self._answers.repair_streak
        spec = await hand_off(
            self._root,
            self._spec,
            call,
            target,
            turn,
            transcript=self._transcript,
            status=self._status,
        )
        self._start_calls(spec, None)
        self._tools.repair_streak, self._answers.repair_streak = streaks

    async def _resume(self, carried: Carried) -> RunResult:
        """Go on where the previous execution of this run stopped."""
        self._transcript = LinearTranscript.resumed(carried)
        self._root = await refreshed(carried.spec, store=True, status=self._status)
        spec = self._root.member(carried.agent) if carried.agent else self._root
        self._start_calls(spec, carried)
        self._status.continued(waiting_for_input=carried.resume == "chat")
        self._approvals.sync()
        answer = carried.answer
        if carried.calls:
            # An unfinished turn: finish the tool calls still waiting for approval (their
            # approval ids and deadlines are unchanged), then go on with the next turn.
            results: dict[str, Message | None] = dict(carried.results)
            await self._tools.finish(self._status.current.turn, carried.calls, results)
            if self._approvals.deferred:
                # Still open, and the history is long again: hand over again.
                self._continue_as_new(resume="answer", calls=carried.calls, results=results)
            self._transcript.add_all([m for c in carried.calls if (m := results[c.id]) is not None])
            if self._tools.handoff is not None:
                await self._hand_off(self._status.current.turn, *self._tools.handoff)
        match carried.resume:
            case "answer":
                answer = await self._answer()
            case "chat":
                pass
            case _:
                assert_never(carried.resume)
        return await self._chat_loop(answer)

    async def _chat_loop(self, answer: str) -> RunResult:
        while self._chat.enabled:
            spec = self._spec
            # A chat stays open for follow-up messages, handled in order, one at a time.
            self._chat.reply(answer)
            self._status.waiting_for_message()
            await self._chat.wait(
                spec.limits.chat_idle_timeout_seconds, lambda: self._can_continue_as_new(self._spec)
            )
            if self._chat.quiet and self._can_continue_as_new(spec):
                self._continue_as_new(resume="chat", answer=answer)
            text = self._chat.next_message()
            if text is None:
                break  # ended by the client, or idle
            self._status.running()
            if spec.input_guardrails:
                # Every message is checked, not only the first: a trip ends the chat.
                await check_input(spec, text, status=self._status)
            self._transcript.add(Message.user(text))
            answer = await self._answer()
        self._chat.close()
        spec = self._spec
        # Let every update handler reply before the run closes.
        await workflow.wait_condition(workflow.all_handlers_finished)
        if spec.output is None:
            return self._status.complete(answer)
        return self._status.complete(
            answer, output_type=spec.output.name, data=parsed_output(spec, answer)
        )

    async def _answer(self) -> str:
        """Model and tool turns until the model answers the latest user message."""
        while True:
            spec = self._spec
            await self._budgets.check_turns(spec)
            if self._can_continue_as_new(spec):
                # A safe turn boundary: nothing in flight, the next model call not started.
                self._continue_as_new(resume="answer")
            await self._budgets.check_spending(spec)
            self._budgets.turn_taken()
            turn = self._status.next_turn()
            response = await self._model.call(turn)
            self._status.account(response.usage, response.cost_usd)
            self._status.publish()
            self._transcript.answered(response)
            if self._answers.checked:
                # An output type or output validators (never in runs recorded before them).
                settled = await self._answers.settle(turn, response)
                if settled is REPAIRED:
                    continue
                if settled is not None:
                    return self._answered(spec, response, turn, settled)
            calls = response.message.tool_calls
            if not calls:
                return self._answered(spec, response, turn, response.message.content or "")
            results = await self._tools.run(turn, calls)
            if self._approvals.deferred:
                # Approvals still open and the history is long: hand them to a new execution.
                self._continue_as_new(
                    resume="answer",
                    calls=calls,
                    results={c.id: m for c, m in zip(calls, results, strict=True)},
                )
            done = [m for m in results if m is not None]
            self._transcript.add_all(done)
            self._tools.check_repairs(done)
            if self._tools.handoff is not None:
                await self._hand_off(turn, *self._tools.handoff)

    def _answered(self, spec: AgentSpec, response: ModelResponse, turn: int, answer: str) -> str:
        """The latest user message has its answer."""
        if spec.output is None and (problem := _incomplete(response, turn, spec)):
            self._status.incomplete_answer(problem, spec.limits.on_incomplete_answer)
        self._budgets.message_answered()
        self._tools.message_answered()
        return answer

    # -- continue-as-new ------------------------------------------------------------------

    def _can_continue_as_new(self, spec: AgentSpec) -> bool:
        """Whether to continue as new at this boundary (history long, nothing in flight)."""
        return self._transcript.can_continue_as_new and _carry.history_is_long(spec)

    def _continue_as_new(
        self,
        *,
        resume: Literal["answer", "chat"],
        answer: str = "",
        calls: list[ToolCall] | None = None,
        results: dict[str, Message | None] | None = None,
    ) -> NoReturn:
        _carry.continue_as_new(
            self._input,
            self._root,
            agent=self._spec.name if self._spec.name != self._root.name else None,
            status=self._status,
            transcript=self._transcript,
            budgets=self._budgets,
            tools=self._tools,
            answers=self._answers,
            approvals=self._approvals,
            slots=self._slots,
            pins=self._pins,
            resume=resume,
            answer=answer,
            calls=calls,
            results=results,
        )


def _incomplete(response: ModelResponse, turn: int, spec: AgentSpec) -> str | None:
    """Why a final answer may not be whole, or None."""
    if response.finish_reason == "length":
        cap = f"max_tokens={spec.max_tokens}" if spec.max_tokens else "the model's own limit"
        return (
            f"the answer of turn {turn} was cut off by the output token limit "
            f"(finish_reason 'length', {cap}); raise the agent's max_tokens"
        )
    if not (response.message.content or "").strip():
        return f"the model's answer in turn {turn} is empty"
    return None
