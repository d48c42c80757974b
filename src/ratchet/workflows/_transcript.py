"""The run's transcript, and how model calls carry it: the one place the two paths differ.

Runs since the ``ratchet.linear-history`` patch keep a *linear* history: activities
store messages in the transcript store, and a model request carries the chain head
the model saw last plus the messages since (``LinearTranscript``). Runs recorded
before the patch sent the whole transcript to every model call, never continued as
new and had no context-window handling; they replay that way (``FullTranscript``).
The run picks one when it starts; nothing else asks which path it is on.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar, NamedTuple

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from .._protocol import (
        AgentSpec,
        Carried,
        ForkStart,
        HandoffRequest,
        ModelRequest,
        ModelResponse,
    )
    from ..agent import Limits
    from ..messages import Message, chain_hash, message_hash, opening_messages

__all__ = ["FullTranscript", "Handover", "LinearTranscript", "Transcript"]

TRANSCRIPT_LIMIT_PATCH = "ratchet.transcript-limit"


class Handover(NamedTuple):
    """The transcript's part of what a run carries over continue-as-new."""

    head: str | None
    pending: list[Message]
    stored: list[str]
    seen: int
    """Messages of the whole run the model saw (the next transcript query's offset)."""


class Transcript(ABC):
    """The messages of this execution of the run, in order (the transcript query)."""

    by_reference: ClassVar[bool]
    """Activities store the messages; requests refer to them by hash."""
    can_continue_as_new: ClassVar[bool]
    compactions_per_turn: ClassVar[int]
    """How often a prompt over the context window is shrunk and the call retried."""

    def __init__(self) -> None:
        self.messages: list[Message] = []

    def open(self, instructions: str, prompt: str) -> None:
        """Start with the system message and the run's prompt."""
        self.add_all(opening_messages(instructions, prompt, pinned=self.by_reference))

    def add(self, message: Message) -> None:
        self.messages.append(message)

    def add_all(self, messages: list[Message]) -> None:
        for m in messages:
            self.add(m)

    def answered(self, response: ModelResponse) -> None:
        """The model's reply joins the transcript."""
        self.messages.append(response.message)

    @abstractmethod
    def mark_stored(self, message_hash: str) -> None:
        """An activity wrote this message to the transcript store."""

    @abstractmethod
    def oversized(self, limits: Limits, turn: int) -> str | None:
        """Why the next model request would be too large to record, if it would."""

    @abstractmethod
    def model_request(self, spec: AgentSpec, turn: int) -> ModelRequest: ...

    @abstractmethod
    def stored_prompt(self) -> str:
        """The chain head of the prompt a failed model call stored (compaction shrinks it)."""

    @abstractmethod
    def compacted(self, head: str) -> None:
        """The prompt was shrunk: the model sees ``head`` from now on."""

    @abstractmethod
    def handover(self, done: list[Message]) -> Handover:
        """What a new execution needs, with ``done``: finished results of an open turn."""

    def handoff_request(
        self, source: AgentSpec, target: AgentSpec, turn: int, call_id: str
    ) -> HandoffRequest:
        raise AssertionError("unreachable: a full-transcript run hands off in memory")

    def handed_off(self, instructions: str, head: str | None) -> None:
        """A handoff: the model sees the conversation under ``instructions`` from now on
        (``head``: the handoff activity stored that prompt)."""
        if self.messages and self.messages[0].role == "system":
            self.messages[0] = Message.system(instructions)


class FullTranscript(Transcript):
    """Every model request carries the whole transcript (runs before linear history)."""

    by_reference = False
    can_continue_as_new = False
    compactions_per_turn = 0

    def oversized(self, limits: Limits, turn: int) -> str | None:
        size = _transcript_bytes(self.messages)
        # `patched` is consulted only when the guard fires, so ordinary runs carry no
        # marker, and an oversized run recorded before the guard replays as it ran.
        if size > limits.max_transcript_bytes and workflow.patched(TRANSCRIPT_LIMIT_PATCH):
            return (
                f"the transcript is {size:,} bytes before model call {turn}, over "
                f"Limits.max_transcript_bytes={limits.max_transcript_bytes:,} (Temporal "
                "rejects payloads over 2 MB); lower the tools' max_result_chars or start "
                "a new run"
            )
        return None

    def model_request(self, spec: AgentSpec, turn: int) -> ModelRequest:
        limits = spec.limits
        return ModelRequest(
            agent=spec.name,
            model=spec.model,
            turn=turn,
            messages=list(self.messages),
            tools=spec.tools,
            tool_mode=spec.tool_mode,
            temperature=spec.temperature,
            max_tokens=spec.max_tokens,
            timeout_seconds=limits.model_timeout_seconds,
            heartbeat_seconds=limits.model_heartbeat_seconds,
            stream=spec.stream,
            output=spec.output,
        )

    def mark_stored(self, message_hash: str) -> None:
        pass  # requests carry the messages themselves: what is stored does not matter

    def stored_prompt(self) -> str:
        raise AssertionError("unreachable: a full transcript is never compacted")

    def compacted(self, head: str) -> None:
        raise AssertionError("unreachable: a full transcript is never compacted")

    def handover(self, done: list[Message]) -> Handover:
        raise AssertionError("unreachable: a full-transcript run never continues as new")


class LinearTranscript(Transcript):
    """Model requests carry the chain head the model saw last and the messages since.

    Messages an activity already stored travel as their hashes, not again inline.
    """

    by_reference = True
    can_continue_as_new = True
    compactions_per_turn = 3

    def __init__(self, offset: int = 0) -> None:
        super().__init__()
        self._offset = offset
        """Messages earlier executions of the run recorded."""
        self._head: str | None = None
        self._pending: list[Message] = []
        self._stored: set[str] = set()

    @classmethod
    def resumed(cls, carried: Carried) -> LinearTranscript:
        """The transcript where the previous execution of the run left it."""
        transcript = cls(carried.status.transcript_offset)
        transcript._head = carried.head
        transcript._pending = list(carried.pending)
        transcript._stored = set(carried.stored)
        transcript.messages = list(carried.pending)
        return transcript

    @classmethod
    def forked(cls, fork: ForkStart) -> LinearTranscript:
        """A fork's transcript: the parent's chain up to ``fork.head``, then its pending
        messages (the first model call sends them)."""
        # Messages are numbered as in the fork's prompt: the parent's come first.
        transcript = cls(fork.offset)
        transcript._head = fork.head
        transcript._pending = list(fork.pending)
        transcript._stored = set(fork.stored)
        transcript.messages = list(fork.pending)
        return transcript

    def open(self, instructions: str, prompt: str) -> None:
        super().open(instructions, prompt)
        # The snapshot activity stored them: model calls refer to them by hash.
        self._stored.update(message_hash(m) for m in self.messages)

    def add(self, message: Message) -> None:
        super().add(message)
        self._pending.append(message)

    def answered(self, response: ModelResponse) -> None:
        super().answered(response)
        self._head = response.transcript_ref
        self._pending = []

    def mark_stored(self, message_hash: str) -> None:
        self._stored.add(message_hash)

    def oversized(self, limits: Limits, turn: int) -> str | None:
        return None  # requests carry references: the transcript's size does not matter

    def model_request(self, spec: AgentSpec, turn: int) -> ModelRequest:
        limits = spec.limits
        appended = self._appended()
        return ModelRequest(
            agent=spec.name,
            model=spec.model,
            turn=turn,
            messages=[],
            transcript_ref=self._head,
            appended=appended,
            offset=self._seen(),
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
            stream=spec.stream,
            output=spec.output,
        )

    def stored_prompt(self) -> str:
        # The activity stored the prompt before calling the provider: its chain head
        # names it, so the compaction request carries no messages.
        head = self._head
        for m in self._pending:
            head = chain_hash(head, message_hash(m))
            self._stored.add(message_hash(m))
        assert head is not None  # a prompt always has the system message
        return head

    def compacted(self, head: str) -> None:
        self._head = head
        self._pending = []

    def handoff_request(
        self, source: AgentSpec, target: AgentSpec, turn: int, call_id: str
    ) -> HandoffRequest:
        """What the handoff activity needs to store the prompt under the target."""
        return HandoffRequest(
            agent=source.name,
            target=target.name,
            turn=turn,
            call_id=call_id,
            head=self._head,
            appended=self._appended(),
            offset=self._seen(),
            instructions=target.instructions,
        )

    def handed_off(self, instructions: str, head: str | None) -> None:
        super().handed_off(instructions, head)
        assert head is not None
        self._head = head
        self._pending = []

    def _appended(self) -> list[Message | str]:
        return [h if (h := message_hash(m)) in self._stored else m for m in self._pending]

    def handover(self, done: list[Message]) -> Handover:
        pending = self._pending
        return Handover(
            head=self._head,
            pending=pending,
            stored=[h for m in pending if (h := message_hash(m)) in self._stored]
            + [h for m in done if (h := message_hash(m)) in self._stored],
            seen=self._seen(),
        )

    def _seen(self) -> int:
        return self._offset + len(self.messages) - len(self._pending)


def _transcript_bytes(messages: list[Message]) -> int:
    """What the transcript weighs in a model request (UTF-8 text of contents and calls)."""
    total = 0
    for m in messages:
        total += len((m.content or "").encode())
        for c in m.tool_calls or []:
            total += len(c.arguments.encode()) + len(c.name) + len(c.id)
    return total
