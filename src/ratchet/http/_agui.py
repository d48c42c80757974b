"""Run events as AG-UI events (the ``ag-ui-protocol`` package's types).

An AG-UI *thread* is a ratchet chat run (its id is the thread id); each AG-UI *run*
is one message of that chat and the agent's work until it answers:

- ``token`` events stream as ``TEXT_MESSAGE_START``/``CONTENT``; the recorded reply
  ends the message (``TEXT_MESSAGE_END``), adding what did not stream;
- a reply's tool calls become ``TOOL_CALL_START``/``ARGS``/``END`` and their results
  ``TOOL_CALL_RESULT`` (a call the workflow rejected, with the reason the model got);
- model and tool calls are ``STEP_STARTED``/``STEP_FINISHED``; approvals, and the
  pieces of a retried attempt being void, are ``CUSTOM`` events (``ratchet.*``);
- the run's state (turn, tokens, cost, approvals waiting) is a ``STATE_SNAPSHOT``
  after each model call and each approval asked or answered;
- the answer ends the AG-UI run with ``RUN_FINISHED`` (its ``result``), a failed or
  cancelled run with ``RUN_ERROR`` (``code``: the taxonomy name).
"""

from __future__ import annotations

from typing import Any

from ag_ui.core import (
    BaseEvent,
    CustomEvent,
    RunErrorEvent,
    RunFinishedEvent,
    StateSnapshotEvent,
    StepFinishedEvent,
    StepStartedEvent,
    TextMessageContentEvent,
    TextMessageEndEvent,
    TextMessageStartEvent,
    ToolCallArgsEvent,
    ToolCallEndEvent,
    ToolCallResultEvent,
    ToolCallStartEvent,
)

from .. import events as ev

__all__ = ["AguiTranslator", "answers_turn"]


def answers_turn(event: ev.RunEvent) -> bool:
    """Whether ``event`` is the agent's answer (a reply that calls no tool)."""
    return (
        isinstance(event, ev.ModelCallFinished)
        and event.outcome == "completed"
        and event.response is not None
        and not event.response.tool_calls
    )


class AguiTranslator:
    """Translates one AG-UI run's ratchet events, in order, into AG-UI events."""

    def __init__(self, thread_id: str, run_id: str) -> None:
        self.thread_id = thread_id
        self.run_id = run_id
        self._open: str | None = None
        """The id of the text message being streamed."""
        self._streamed = ""
        """Its text so far."""
        self._state: dict[str, Any] = {
            "turn": 0,
            "input_tokens": 0,
            "output_tokens": 0,
            "cost_usd": 0.0,
            "waiting_approval": [],
        }
        """What STATE_SNAPSHOT events carry: this AG-UI run's view of the ratchet run."""

    def translate(self, event: ev.RunEvent) -> list[BaseEvent]:
        match event:
            case ev.TokenDelta(kind="text"):
                return self._token(event)
            case ev.TokensSuperseded():
                return self._void(f"{event.call_id}.{event.attempt}")
            case ev.ModelCallStarted():
                return [StepStartedEvent(step_name=event.call_id)]
            case ev.ModelCallFinished():
                self._state["turn"] = event.turn
                self._state["input_tokens"] += event.usage.input_tokens
                self._state["output_tokens"] += event.usage.output_tokens
                self._state["cost_usd"] += event.cost_usd or 0.0
                return [
                    *self._reply(event),
                    StepFinishedEvent(step_name=event.call_id),
                    self._snapshot(),
                ]
            case ev.ToolCallStarted():
                return [StepStartedEvent(step_name=event.activity_id)]
            case ev.ToolCallFinished():
                content = event.result if event.result is not None else event.error or ""
                return [
                    self._result(event.call_id, content),
                    StepFinishedEvent(step_name=event.activity_id),
                ]
            case ev.ToolCallRejected():
                return [self._result(event.call_id, event.reason)]
            case ev.ApprovalRequested():
                value = event.approval.model_dump(mode="json")
                self._state["waiting_approval"].append(event.approval.call_id)
                return [
                    CustomEvent(name="ratchet.approval_requested", value=value),
                    self._snapshot(),
                ]
            case ev.ApprovalAnswered():
                value = event.record.model_dump(mode="json")
                waiting = self._state["waiting_approval"]
                if event.record.call_id in waiting:
                    waiting.remove(event.record.call_id)
                return [
                    CustomEvent(name="ratchet.approval_answered", value=value),
                    self._snapshot(),
                ]
            case ev.RunFinished():
                return self.finish(event)
            case _:
                return []

    def _snapshot(self) -> StateSnapshotEvent:
        return StateSnapshotEvent(
            snapshot={**self._state, "waiting_approval": list(self._state["waiting_approval"])}
        )

    def finish(self, event: ev.RunFinished | ev.ModelCallFinished) -> list[BaseEvent]:
        """The AG-UI run's last event: the answer, or the run's failure."""
        if isinstance(event, ev.ModelCallFinished):
            answer = event.response.content if event.response else None
            return [RunFinishedEvent(thread_id=self.thread_id, run_id=self.run_id, result=answer)]
        if event.outcome == "completed":
            return [
                RunFinishedEvent(thread_id=self.thread_id, run_id=self.run_id, result=event.output)
            ]
        return [
            RunErrorEvent(
                message=event.error or f"the run ended: {event.outcome}",
                code=event.error_type or event.outcome,
            )
        ]

    def _token(self, event: ev.TokenDelta) -> list[BaseEvent]:
        message_id = f"{event.call_id}.{event.attempt}"
        out: list[BaseEvent] = []
        if self._open != message_id:
            out += self._end()
            out.append(TextMessageStartEvent(message_id=message_id, role="assistant"))
            self._open, self._streamed = message_id, ""
        if event.text:
            out.append(TextMessageContentEvent(message_id=message_id, delta=event.text))
            self._streamed += event.text
        return out

    def _void(self, message_id: str) -> list[BaseEvent]:
        if self._open != message_id:
            return []
        return [
            *self._end(),
            CustomEvent(name="ratchet.tokens_superseded", value={"message_id": message_id}),
        ]

    def _end(self) -> list[BaseEvent]:
        if self._open is None:
            return []
        message_id, self._open, self._streamed = self._open, None, ""
        return [TextMessageEndEvent(message_id=message_id)]

    def _reply(self, event: ev.ModelCallFinished) -> list[BaseEvent]:
        """The recorded reply: the end of its streamed text (or all of it), its tool calls."""
        reply = event.response
        content = (reply.content or "") if reply else ""
        out: list[BaseEvent] = []
        message_id = self._open
        if message_id is not None and content.startswith(self._streamed):
            if rest := content[len(self._streamed) :]:
                out.append(TextMessageContentEvent(message_id=message_id, delta=rest))
            out += self._end()
        else:
            if message_id is not None:  # what streamed is not what was recorded
                out += self._void(message_id)
            message_id = f"{event.call_id}.final"
            if content:
                out += [
                    TextMessageStartEvent(message_id=message_id, role="assistant"),
                    TextMessageContentEvent(message_id=message_id, delta=content),
                    TextMessageEndEvent(message_id=message_id),
                ]
        for call in (reply.tool_calls or []) if reply else []:
            out.append(
                ToolCallStartEvent(
                    tool_call_id=call.id, tool_call_name=call.name, parent_message_id=message_id
                )
            )
            if call.arguments:
                out.append(ToolCallArgsEvent(tool_call_id=call.id, delta=call.arguments))
            out.append(ToolCallEndEvent(tool_call_id=call.id))
        return out

    def _result(self, call_id: str, content: str) -> ToolCallResultEvent:
        return ToolCallResultEvent(
            message_id=f"{call_id}.result", tool_call_id=call_id, content=content, role="tool"
        )
