"""One run read as an A2A task: its events, folded in order, give the task (status,
history, artifacts) and the A2A events a stream of it carries.

What a stream of the task carries, from the run's events (``ratchet.events``):

- ``working`` status updates as the run works: the model's text as it streams (a
  status message per piece, metadata ``kind: token``; ``kind: tokens_superseded``
  when a retried attempt voids them), each tool call and its result (a text line and
  a data part ``tool_call`` / ``tool_result``), rejected calls, retries, handoffs;
- ``input-required`` when a call waits for approval (the status message says which,
  and how to answer: see ``ratchet.a2a._incoming``), and in a chat after each reply;
- the answer as an artifact: ``answer`` when the run completes (its text, and a data
  part for a structured answer); in a chat, each reply as ``reply-<n>``;
- ``completed``, ``failed`` (the message names the error) or ``canceled`` at the end.

Message and artifact ids are derived from the run's event positions, so reading a
run twice gives the same ids.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from a2a.server.events import Event
from a2a.types import (
    Artifact,
    Message,
    Part,
    Role,
    Task,
    TaskArtifactUpdateEvent,
    TaskState,
    TaskStatus,
    TaskStatusUpdateEvent,
)
from google.protobuf import struct_pb2
from google.protobuf.json_format import ParseDict

from .. import events as ev
from .._final_answer import answers_are_checked
from .._protocol import PendingApproval
from ._incoming import APPROVE_KEY
from ._states import FINAL, INTERRUPTED, TASK_STATE_OF

__all__ = ["TaskView"]

_SHOWN_CHARS = 2000
"""How much of a tool's arguments or result a status line shows (its data part has
all of it)."""


class TaskView:
    """The A2A task of one run, kept up to date by :meth:`feed`."""

    def __init__(self, run_id: str, *, agent: str) -> None:
        self.run_id = run_id
        self.agent = agent
        self.chat = False
        self.run_state = "starting"
        """ratchet's state of the run (``ratchet.RUN_STATES``), as its events tell it."""
        self.pending: dict[str, PendingApproval] = {}
        """Calls waiting for approval, by approval id, in the order they were asked."""
        self.cursor = "0"
        """Where the events fed so far end (``RunHandle.events(after=...)``)."""
        self._opened = False
        self._checked = False
        self._awaiting_message = False
        """A chat answered: its next user message is the client's follow-up."""
        self._replies = 0
        self._history: list[Message] = []
        self._artifacts: list[Artifact] = []
        self._status = TaskStatus(state=TaskState.TASK_STATE_SUBMITTED)

    # --- reading -----------------------------------------------------------------------

    @property
    def state(self) -> TaskState:
        return TASK_STATE_OF[self.run_state]

    @property
    def final(self) -> bool:
        """The run has ended."""
        return self.state in FINAL

    @property
    def settled(self) -> bool:
        """The run has ended or waits for the client: a stream of it stops here."""
        return self.state in FINAL | INTERRUPTED

    @property
    def awaiting_message(self) -> bool:
        """A chat that answered and waits for the next message."""
        return self.chat and self._awaiting_message and not self.pending and not self.final

    def task(self) -> Task:
        """The task as the events fed so far leave it."""
        return Task(
            id=self.run_id,
            context_id=self.run_id,
            status=self._status,
            history=self._history,
            artifacts=self._artifacts,
            metadata={
                "agent": self.agent,
                "run_id": self.run_id,
                "run_state": self.run_state,
                "chat": self.chat,
                "waiting_approval": list(self.pending),
            },
        )

    def approval_hint(self) -> str:
        """How to answer the calls that wait (empty when none does)."""
        return " ".join(_ask(p) for p in self.pending.values())

    # --- changing ----------------------------------------------------------------------

    def open(self, prompt: str, *, chat: bool, at: datetime | None = None) -> None:
        """The run started with ``prompt`` (the first user message of the history)."""
        if self._opened:
            return
        self._opened = True
        self.chat = chat
        self._history.append(self._message(Role.ROLE_USER, "prompt", [Part(text=prompt)]))
        self._status = TaskStatus(state=TaskState.TASK_STATE_SUBMITTED, timestamp=at)

    def accepted(self) -> None:
        """The client's follow-up was taken: the task works on it (its events follow)."""
        self.run_state = "running"
        self._status = TaskStatus(state=TaskState.TASK_STATE_WORKING)

    def feed(self, event: ev.RunEvent) -> list[Event]:
        """Take the run's next event; return the A2A events it causes."""
        self.cursor = ev.cursor(event)
        match event:
            case ev.RunStarted():
                self.open(event.prompt, chat=event.chat, at=event.at)
                return []
            case ev.AgentSnapshotted():
                self._checked = answers_are_checked(event.spec)
                return []
            case ev.MessageRecorded():
                return self._recorded(event)
            case ev.ModelCallStarted() | ev.GuardrailChecked():
                return self._working(event.at) if self.run_state == "starting" else []
            case ev.TokenDelta(kind="text") if event.text:
                key = f"{event.seq}-{event.attempt}-{event.offset}"
                meta = {"kind": "token", "call_id": event.call_id, "attempt": event.attempt}
                return [self._update(event.at, key, [Part(text=event.text)], meta, keep=False)]
            case ev.TokensSuperseded():
                text = "(the model call is retried: the text streamed so far is void)"
                meta = {"kind": "tokens_superseded", "call_id": event.call_id}
                key = f"{event.seq}-{event.attempt}-void"
                return [self._update(event.at, key, [Part(text=text)], meta, keep=False)]
            case ev.ModelCallAttemptFailed():
                text = f"model call failed ({event.error_type or 'error'}: {event.error}); retrying"
                return [self._line(event, text, {"kind": "retry"})]
            case ev.ModelCallFinished():
                if self.chat and not self._checked and _answers(event):
                    assert event.response is not None
                    return self._reply(event, event.response.content or "")
                return []
            case ev.OutputChecked() if event.answer is not None and self.chat:
                return self._reply(event, event.answer)
            case ev.ToolCallStarted():
                return self._tool_call(event)
            case ev.ToolCallFinished():
                return self._tool_result(event)
            case ev.ToolCallRejected():
                text = f"tool call {event.tool} was not run: {event.reason}"
                return [self._line(event, text, {"kind": "tool_rejected"})]
            case ev.HandedOff():
                text = f"{event.from_agent} handed the conversation to {event.to_agent}"
                return [self._line(event, text, {"kind": "handoff"})]
            case ev.ApprovalRequested():
                self.pending[event.approval.call_id] = event.approval
                return self._ask_approval(event)
            case ev.ApprovalAnswered():
                return self._answered(event)
            case ev.RunFinished():
                return self._finished(event)
            case _:
                return []

    # --- the events' effects -----------------------------------------------------------

    def _recorded(self, event: ev.MessageRecorded) -> list[Event]:
        message = event.message
        out: list[Event] = []
        if message.role == "user" and self._awaiting_message:
            # A chat's next message (not a repair the workflow sent the model).
            self._awaiting_message = False
            self._history.append(
                self._message(Role.ROLE_USER, f"{event.seq}", [Part(text=message.content or "")])
            )
            out += self._working(event.at)
        elif message.role == "assistant" and message.content:
            self._history.append(
                self._message(Role.ROLE_AGENT, f"{event.seq}", [Part(text=message.content)])
            )
        return out

    def _reply(self, event: ev.ModelCallFinished | ev.OutputChecked, text: str) -> list[Event]:
        self._replies += 1
        self._awaiting_message = True
        artifact = Artifact(
            artifact_id=f"reply-{self._replies}",
            name="reply",
            description=f"the agent's reply to chat message {self._replies}",
            parts=[Part(text=text)],
        )
        out: list[Event] = [self._add_artifact(artifact)]
        if not self.pending:
            self.run_state = "waiting-input"
            meta = {"kind": "reply", "waiting_for": "message"}
            out.append(self._update(event.at, f"{event.seq}-reply", [Part(text=text)], meta))
        return out

    def _tool_call(self, event: ev.ToolCallStarted) -> list[Event]:
        arguments = json.dumps(event.arguments, ensure_ascii=False)
        who = f"agent {event.agent}" if event.agent else f"tool {event.tool}"
        text = f"calling {who} with {_shorten(arguments)}"
        data = {
            "tool_call": {
                "call_id": event.call_id,
                "tool": event.tool,
                "arguments": event.arguments,
                "turn": event.turn,
                **({"child_run_id": event.child_run_id} if event.child_run_id else {}),
            }
        }
        parts = [Part(text=text), _data(data)]
        return [self._update(event.at, str(event.seq), parts, {"kind": "tool_call"}, keep=False)]

    def _tool_result(self, event: ev.ToolCallFinished) -> list[Event]:
        if event.outcome == "completed":
            said = "failed" if event.is_error else "returned"
            text = f"{event.tool} {said}: {_shorten(event.result or '')}"
        else:
            text = f"{event.tool} {event.outcome}: {event.error or ''}".rstrip(": ")
        data = {
            "tool_result": {
                "call_id": event.call_id,
                "tool": event.tool,
                "outcome": event.outcome,
                "result": event.result,
                "is_error": event.is_error,
            }
        }
        parts = [Part(text=text), _data(data)]
        return [self._update(event.at, str(event.seq), parts, {"kind": "tool_result"}, keep=False)]

    def _ask_approval(self, event: ev.ApprovalRequested) -> list[Event]:
        self.run_state = "waiting-approval"
        approval = event.approval
        data = {
            "approval": approval.model_dump(mode="json"),
            "answer_with": {APPROVE_KEY: True, "call_id": approval.call_id},
        }
        parts = [Part(text=_ask(approval)), _data(data)]
        meta = {"kind": "approval_requested", "waiting_for": "approval"}
        return [self._update(event.at, str(event.seq), parts, meta)]

    def _answered(self, event: ev.ApprovalAnswered) -> list[Event]:
        record = event.record
        self.pending.pop(record.call_id, None)
        verdict = "approved" if record.approved else "denied"
        text = f"{record.tool} call {record.call_id} {verdict} by {record.approver}"
        if record.reason:
            text += f": {record.reason}"
        if self.pending:  # another call still waits: ask for it again
            waiting = next(iter(self.pending.values()))
            data = {
                "approval": waiting.model_dump(mode="json"),
                "answer_with": {APPROVE_KEY: True, "call_id": waiting.call_id},
            }
            parts = [Part(text=f"{text}. {_ask(waiting)}"), _data(data)]
            meta = {"kind": "approval_requested", "waiting_for": "approval"}
            return [self._update(event.at, str(event.seq), parts, meta)]
        self.run_state = "waiting-input" if self._awaiting_message and self.chat else "running"
        kind = {"kind": "approval_answered"}
        return [self._update(event.at, str(event.seq), [Part(text=text)], kind)]

    def _finished(self, event: ev.RunFinished) -> list[Event]:
        self.run_state = event.outcome
        self.pending.clear()
        out: list[Event] = []
        if event.outcome == "completed":
            if event.output is not None and not self._replies:
                parts = [Part(text=event.output)]
                if event.data is not None:
                    parts.append(_data(event.data))
                out.append(
                    self._add_artifact(
                        Artifact(
                            artifact_id="answer",
                            name="answer",
                            description=f"the answer of agent {self.agent}",
                            parts=parts,
                        )
                    )
                )
            out.append(self._update(event.at, "end", [], None))
        elif event.outcome == "cancelled":
            text = "the run was cancelled"
            out.append(self._update(event.at, "end", [Part(text=text)], {"kind": "end"}))
        else:
            text = (
                f"{event.error_type or event.outcome}: {event.error or 'the run ' + event.outcome}"
            )
            meta = {"kind": "end", "error_type": event.error_type or event.outcome}
            out.append(self._update(event.at, "end", [Part(text=text)], meta))
        return out

    # --- building blocks ---------------------------------------------------------------

    def _working(self, at: datetime) -> list[Event]:
        self.run_state = "running"
        return [self._update(at, "", [], None)]

    def _line(self, event: Any, text: str, meta: dict[str, Any]) -> Event:
        return self._update(event.at, str(event.seq), [Part(text=text)], meta, keep=False)

    def _update(
        self,
        at: datetime,
        key: str,
        parts: list[Part],
        meta: dict[str, Any] | None,
        *,
        keep: bool = True,
    ) -> TaskStatusUpdateEvent:
        """A status update in the current state, with a message of ``parts`` (none
        without). ``keep``: the task's status keeps the message (what it waits for, or
        how it ended); progress lines only stream."""
        message = self._message(Role.ROLE_AGENT, key, parts, meta) if parts else None
        status = TaskStatus(state=self.state, message=message, timestamp=at)
        if keep or not parts:
            self._status = status
        return TaskStatusUpdateEvent(task_id=self.run_id, context_id=self.run_id, status=status)

    def _add_artifact(self, artifact: Artifact) -> TaskArtifactUpdateEvent:
        self._artifacts.append(artifact)
        return TaskArtifactUpdateEvent(
            task_id=self.run_id, context_id=self.run_id, artifact=artifact, last_chunk=True
        )

    def _message(
        self, role: Role, key: str, parts: list[Part], meta: dict[str, Any] | None = None
    ) -> Message:
        return Message(
            message_id=f"{self.run_id}-{key}",
            context_id=self.run_id,
            task_id=self.run_id,
            role=role,
            parts=parts,
            metadata=meta,
        )


def _answers(event: ev.ModelCallFinished) -> bool:
    """A reply that calls no tool: the agent's answer (when answers are not checked)."""
    return (
        event.outcome == "completed"
        and event.response is not None
        and not event.response.tool_calls
    )


def _ask(approval: PendingApproval) -> str:
    """What the client is told about a call that waits, and how to answer it."""
    answer = json.dumps({APPROVE_KEY: True, "call_id": approval.call_id})
    if approval.kind == "budget":
        a = approval.arguments
        what = (
            f"budget {a.get('budget')} is spent ({a.get('used')} of {a.get('limit')} "
            f"{a.get('unit', '')}".rstrip()
            + "): approving raises it"
        )
    else:
        arguments = _shorten(json.dumps(approval.arguments, ensure_ascii=False))
        what = f"tool call {approval.tool}({arguments}) needs approval"
    why = f" ({approval.reason})" if approval.reason else ""
    return (
        f"{what}{why}. Answer with a message to this task holding the data part {answer} "
        '(false denies; add "reason" to say why).'
    )


def _data(value: Any) -> Part:
    return Part(data=ParseDict(value, struct_pb2.Value()))


def _shorten(text: str) -> str:
    return text if len(text) <= _SHOWN_CHARS else text[: _SHOWN_CHARS - 1] + "…"
