"""Run events: the one way to read a run, from its history or live.

Every reader of a run (``ratchet trace``, ``show``, ``transcript``, ``follow``, and
later the HTTP API, the console and evals) consumes these events. They are built by
one history reader (:func:`events_of`, and :meth:`ratchet.RunHandle.events` for a
live run), so every view of a run agrees.

Each event has a stable ``type``, a ``seq`` and a time-zone-aware ``at``:

- ``seq`` is the event's position in the run, counted from 1 over all its
  executions (a long run continues as new under the same id). The reader is
  deterministic over the append-only event history, so an event keeps its ``seq``
  across reads, and ``RunHandle.events(after=seq)`` resumes exactly after it.
- ``execution`` (1, 2, ...) and ``history_event_id`` locate the Temporal history
  event the run event was read from, e.g. for a link to the Temporal Web UI.

The union :data:`RunEvent` is a pydantic discriminated union on ``type``; its JSON
schema (``RunEventAdapter.json_schema()``) is a documented, stable contract: fields
are only ever added, with defaults.

Live-only events never enter the history: ``token`` (a piece of a model reply as it
streams) and ``tokens_superseded`` (a retried attempt's pieces are void). They come
from the delta store (``ratchet.streaming``), merged into :meth:`RunHandle.events`
while a model call runs, and carry the ``seq`` of the ``model_call_started`` event of
their call with their own ``attempt`` and ``offset``. Resume after one with its
:func:`cursor` (``"seq:attempt:offset"``). A reader of a history (:func:`events_of`)
never sees them: once the call finishes, its ``message`` event is authoritative.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, TypeAdapter
from temporalio.client import WorkflowHistory
from temporalio.converter import DataConverter

from ._protocol import ApprovalRecord, PendingApproval
from .agent import AgentSpec
from .messages import Message, Usage
from .models import WireFormat
from .output import OutputSpec
from .policy import Decision, PolicyDecision
from .tools import ToolSpec
from .transcripts import TranscriptStore

__all__ = [
    "AgentSnapshotted",
    "ApprovalAnswered",
    "ApprovalRequested",
    "BudgetDecision",
    "CallOutcome",
    "ContinuedAsNew",
    "ForkOrigin",
    "GuardrailChecked",
    "HandedOff",
    "MessageRecorded",
    "ModelCallAttemptFailed",
    "ModelCallFinished",
    "ModelCallStarted",
    "NexusCaller",
    "OutputChecked",
    "PolicyDecided",
    "PromptCompacted",
    "RunEvent",
    "RunEventAdapter",
    "RunFinished",
    "RunOutcome",
    "RunStarted",
    "TokenDelta",
    "TokensSuperseded",
    "ToolCallFinished",
    "ToolCallRejected",
    "ToolCallStarted",
    "cursor",
    "events_of",
    "parse_cursor",
]

CallOutcome = Literal["completed", "failed", "timed_out", "cancelled"]
"""How a model or tool call ended (after all its attempts)."""

RunOutcome = Literal["completed", "failed", "cancelled", "terminated", "timed_out"]
"""How a run ended: ratchet's outcomes, and Temporal's own (terminated, timed out)."""


class _Event(BaseModel):
    model_config = ConfigDict(frozen=True)

    seq: int
    """Position in the run, from 1, across executions; stable across reads."""
    at: AwareDatetime
    """When it happened (the time of the history event it was read from)."""
    execution: int = 1
    """Which execution of the run recorded it (each continue-as-new starts the next)."""
    history_event_id: int | None = None
    """The Temporal history event it was read from, within ``execution``."""


class NexusCaller(BaseModel):
    """The workflow whose Nexus operation started a run (:mod:`ratchet.nexus`): the run's
    result is delivered to it, and cancelling it cancels the run."""

    model_config = ConfigDict(frozen=True)

    namespace: str
    workflow_id: str
    run_id: str
    """The caller's execution (Temporal's run id)."""
    event_id: int | None = None
    """The caller's ``NexusOperationScheduled`` event."""


class ForkOrigin(BaseModel):
    """Where a fork branched off (:meth:`ratchet.AgentClient.fork`), and what it changed."""

    model_config = ConfigDict(frozen=True)

    run_id: str
    """The parent run."""
    step: str
    """The parent's step the fork starts from: ``turn3`` (that model call's prompt) or
    ``msg:5`` (the transcript up to that message)."""
    edited_message: str | None = None
    """The text that replaced the user message the step ends with."""
    instructions: str | None = None
    """The instructions that replaced the agent's."""
    model: str | None = None
    """The model that replaced the agent's."""


class RunStarted(_Event):
    """A client started the run."""

    type: Literal["run_started"] = "run_started"
    run_id: str
    agent: str
    prompt: str
    model: str | None = None
    """The model override of this run, if any (the agent's model is in the snapshot)."""
    chat: bool = False
    tenant: str | None = None
    started_by: NexusCaller | None = None
    """Set when a Nexus operation of another workflow started the run."""
    forked_from: ForkOrigin | None = None
    """Set for a fork of another run: which run, at which step, with what changed."""


class AgentSnapshotted(_Event):
    """The agent's definition was recorded; the run uses only this snapshot."""

    type: Literal["agent_snapshotted"] = "agent_snapshotted"
    spec: AgentSpec


class MessageRecorded(_Event):
    """A message entered the transcript at ``index`` (the system prompt is index 0)."""

    type: Literal["message"] = "message"
    index: int
    message: Message


class ModelCallStarted(_Event):
    """A model call was scheduled: the prompt it sends, the tools it offers."""

    type: Literal["model_call_started"] = "model_call_started"
    call_id: str
    """The model activity's id, e.g. ``turn2-model``; unique within the run."""
    turn: int
    model: str
    messages: list[Message]
    """The whole prompt as ratchet sends it, the system instructions included (resolved
    from transcript references). The exact HTTP body is :attr:`ModelCallFinished.wire`."""
    tools: list[ToolSpec] = Field(default_factory=list)
    """The tools offered."""
    tool_mode: str | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    transcript_ref: str | None = None
    """The transcript chain head the prompt continues (linear history)."""
    output: OutputSpec | None = None
    """The output type the model was asked for (``Agent(output_type=...)``)."""


class ModelCallAttemptFailed(_Event):
    """An attempt of a model call failed; Temporal retries it with backoff."""

    type: Literal["model_call_attempt_failed"] = "model_call_attempt_failed"
    call_id: str
    turn: int
    attempt: int
    error_type: str | None = None
    error: str


class ModelCallFinished(_Event):
    """A model call ended: its reply, usage and cost, or its error."""

    type: Literal["model_call_finished"] = "model_call_finished"
    call_id: str
    turn: int
    model: str
    outcome: CallOutcome
    response: Message | None = None
    usage: Usage = Usage()
    """Tokens of every attempt that got an answer; ``requests`` counts attempts sent."""
    cost_usd: float | None = None
    finish_reason: str | None = None
    attempts: int = 1
    duration_seconds: float | None = None
    """From scheduling to the end of the last attempt (retries and backoff included)."""
    last_attempt_seconds: float | None = None
    """The final attempt alone."""
    error_type: str | None = None
    error: str | None = None
    wire: WireFormat | None = None
    """How the provider rendered the request, when it says (see ``ratchet.models``)."""
    request_body: dict[str, Any] | None = None
    """The exact JSON body sent to the provider (messages after any tool-mode
    transformation, tools offered, ``response_format``, parameters), rebuilt from the
    prompt and ``wire``; None when the provider did not say how it rendered it."""
    warnings: list[str] = Field(default_factory=list)
    """What the provider did differently than asked, e.g. it could not stream."""
    transcript_ref: str | None = None
    """With linear history: the transcript chain head of the prompt and this reply,
    which the transcript store holds from then on (a fork can start from it)."""


class ToolCallRejected(_Event):
    """The workflow answered a tool call itself: bad JSON, unknown tool, invalid
    arguments, a policy denial, a denied or unanswered approval."""

    type: Literal["tool_call_rejected"] = "tool_call_rejected"
    call_id: str
    turn: int
    tool: str
    arguments: str
    """The raw arguments as the model wrote them."""
    reason: str
    """The error message the model got."""


class PolicyDecided(_Event):
    """The agent's policy decided a valid tool call."""

    type: Literal["policy_decision"] = "policy_decision"
    call_id: str
    turn: int
    tool: str
    decision: Decision
    rule: str
    reason: str = ""


class ApprovalRequested(_Event):
    """A tool call (or a spent budget) waits for a person's decision."""

    type: Literal["approval_requested"] = "approval_requested"
    approval: PendingApproval


class ApprovalAnswered(_Event):
    """A person answered an approval, or its deadline passed."""

    type: Literal["approval_answered"] = "approval_answered"
    record: ApprovalRecord


class ToolCallStarted(_Event):
    """A tool call was scheduled (after any approval)."""

    type: Literal["tool_call_started"] = "tool_call_started"
    call_id: str
    """The model's id of the call."""
    activity_id: str
    """The tool activity's id, e.g. ``turn2-tool0`` (the idempotency key's suffix)."""
    turn: int
    tool: str
    arguments: dict[str, Any]
    policy: PolicyDecision | None = None
    approval: ApprovalRecord | None = None
    child_run_id: str | None = None
    """For a sub-agent (``Agent.as_tool``): the child run the call started. Read its
    events with ``RunHandle.events`` on that id: the runs form a tree."""
    agent: str | None = None
    """For a sub-agent: the agent the child run runs."""
    replayed: bool | None = None
    """True: an eval case's run answered the call from a recorded run's result, no tool
    ran (``RunInput.fixtures``, :mod:`ratchet.evals`). None for every other call (left
    out of the JSON of events, as every unset field)."""


class ToolCallFinished(_Event):
    """A tool call ended: its result (or the error the model is told), or a failure."""

    type: Literal["tool_call_finished"] = "tool_call_finished"
    call_id: str
    activity_id: str
    turn: int
    tool: str
    outcome: CallOutcome
    result: str | None = None
    is_error: bool = False
    attempts: int = 1
    duration_seconds: float | None = None
    last_attempt_seconds: float | None = None
    error_type: str | None = None
    error: str | None = None
    last_retry_error: str | None = None
    """Why the attempt before the last one failed, when the call was retried."""
    child_run_id: str | None = None
    """For a sub-agent: its child run (``ToolCallStarted.child_run_id``)."""
    usage: Usage | None = None
    """For a sub-agent: the tokens its run (and its own sub-agents) used, added to
    this run's totals."""
    cost_usd: float | None = None
    """For a sub-agent: what its run cost, added to this run's totals."""
    replayed: bool | None = None
    """True: the result is a recorded run's, replayed by an eval case's run (no tool
    ran); None for every other call."""


class HandedOff(_Event):
    """The model handed the conversation to another agent (``Agent(handoffs=...)``):
    from the next model call on, the target's instructions, tools and policy apply."""

    type: Literal["handoff"] = "handoff"
    turn: int
    call_id: str
    """The model's id of the handoff call."""
    from_agent: str
    to_agent: str
    instructions: str
    """The target's instructions: the system message of the prompts from now on."""


class BudgetDecision(_Event):
    """A budget was spent: the run stopped, or a person raised or kept the budget."""

    type: Literal["budget_decision"] = "budget_decision"
    budget: str
    """The ``Limits`` field, e.g. ``max_cost_usd``."""
    decision: Literal["stopped", "raised", "denied"]
    used: float | None = None
    limit: float | None = None
    raise_to: float | None = None
    by: str | None = None
    run_id: str | None = None
    """The run that spent the budget, when a sub-agent did (else None: this run)."""


class PromptCompacted(_Event):
    """Older turns were dropped or summarized to fit the model's context window."""

    type: Literal["prompt_compacted"] = "prompt_compacted"
    turn: int
    dropped: int
    summarized: bool = False


class ContinuedAsNew(_Event):
    """The run handed over to its next execution (same run id, fresh history)."""

    type: Literal["continued_as_new"] = "continued_as_new"
    next_execution: int


class OutputChecked(_Event):
    """A final answer was checked: in the workflow against the output type's recorded
    schema (``check`` ``schema``), or in the output check activity by the output type
    itself (``check`` is its name) or by an output validator (its name). A rejected
    answer goes back to the model with ``message``."""

    type: Literal["output_checked"] = "output_checked"
    turn: int
    check: str
    accepted: bool
    message: str = ""
    """Why it was rejected, as the model is told (or a note on an accepted check)."""
    answer: str | None = None
    """Set on the check that accepted the final answer (the last of its checks): the
    answer's text as the run returns it (a structured answer's JSON). Readers waiting
    for an agent's answer wait for this when the agent's answers are checked."""


class GuardrailChecked(_Event):
    """An input guardrail judged a user message before any model saw it. A tripped
    one (``passed`` false) ends the run with ``GuardrailTripped``."""

    type: Literal["guardrail_checked"] = "guardrail_checked"
    turn: int
    """The model turn the message would start."""
    guardrail: str
    passed: bool
    message: str = ""
    """Why it tripped, for the user (or a note on a passed check)."""
    duration_seconds: float = 0.0


class RunFinished(_Event):
    """The run ended."""

    type: Literal["run_finished"] = "run_finished"
    outcome: RunOutcome
    output: str | None = None
    """The final answer's text (a structured answer's JSON)."""
    output_type: str | None = None
    """The name of the agent's output type, for a structured answer."""
    data: Any = None
    """A structured answer, parsed from its JSON."""
    error_type: str | None = None
    error: str | None = None
    turns: int | None = None
    usage: Usage | None = None
    cost_usd: float | None = None
    warnings: list[str] = Field(default_factory=list)
    """A completed run's answers that may not be whole (cut off, or empty)."""


class TokenDelta(_Event):
    """Live only: a piece of a model call's reply, as the provider streamed it.

    ``seq``, ``execution`` and ``history_event_id`` are those of the call's
    ``model_call_started`` event; ``(attempt, offset)`` orders the pieces of a call.
    """

    type: Literal["token"] = "token"
    call_id: str
    turn: int
    attempt: int
    """The attempt that streamed it; a later attempt's first piece supersedes it."""
    offset: int
    """Position within the attempt's pieces, from 0."""
    kind: Literal["text", "tool_arguments"] = "text"
    """``text``: the reply's text. ``tool_arguments``: a piece of a tool call's JSON."""
    text: str
    tool_call_index: int | None = None
    tool_call_id: str | None = None
    tool_name: str | None = None


class TokensSuperseded(_Event):
    """Live only: the pieces of an attempt of a model call are void (the attempt failed
    and was retried, or the call finished with a later attempt's reply): drop them."""

    type: Literal["tokens_superseded"] = "tokens_superseded"
    call_id: str
    turn: int
    attempt: int
    """The attempt whose pieces are void."""
    by_attempt: int
    """The attempt that replaces them."""


RunEvent = Annotated[
    RunStarted
    | AgentSnapshotted
    | MessageRecorded
    | ModelCallStarted
    | ModelCallAttemptFailed
    | ModelCallFinished
    | ToolCallRejected
    | PolicyDecided
    | ApprovalRequested
    | ApprovalAnswered
    | ToolCallStarted
    | ToolCallFinished
    | OutputChecked
    | GuardrailChecked
    | HandedOff
    | BudgetDecision
    | PromptCompacted
    | ContinuedAsNew
    | RunFinished
    | TokenDelta
    | TokensSuperseded,
    Field(discriminator="type"),
]
"""Any run event, discriminated by ``type``."""

RunEventAdapter: TypeAdapter[RunEvent] = TypeAdapter(RunEvent)
"""Validates and serializes :data:`RunEvent` values; ``json_schema()`` is the contract."""


async def events_of(
    history: WorkflowHistory | Sequence[WorkflowHistory],
    *,
    data_converter: DataConverter | None = None,
    store: TranscriptStore | None = None,
) -> list[RunEvent]:
    """Every run event recorded in a run's event history.

    Args:
        history: the history of one execution, or of every execution of a run in
            order (a long run continues as new under the same id), e.g. from
            ``WorkflowHandle.fetch_history()`` or ``WorkflowHistory.from_json``.
            :meth:`ratchet.RunHandle.events` reads a run by id, live.
        data_converter: the converter the run's payloads were written with (default:
            ratchet's pydantic converter; pass the client's when payloads are
            encrypted or stored externally).
        store: a :class:`~ratchet.transcripts.TranscriptStore`, to resolve prompt
            references the history alone cannot (after a compaction, or a later
            execution read on its own).
    """
    from temporalio.contrib.pydantic import pydantic_data_converter

    from ._reader import HistoryReader

    histories = [history] if isinstance(history, WorkflowHistory) else list(history)
    run_id = histories[0].workflow_id if histories else ""
    reader = HistoryReader(data_converter or pydantic_data_converter, run_id, store=store)
    out: list[RunEvent] = []
    for execution, h in enumerate(histories, start=1):
        for event in h.events:
            out.extend(await reader.feed(execution, event))
    return out


def cursor(event: RunEvent) -> str:
    """Where to resume after ``event`` (``RunHandle.events(after=...)``): its ``seq``, or
    ``"seq:attempt:offset"`` for a token."""
    if isinstance(event, TokenDelta):
        return f"{event.seq}:{event.attempt}:{event.offset}"
    if isinstance(event, TokensSuperseded):
        # Resuming re-reads the later attempt from its start.
        return f"{event.seq}:{event.by_attempt}:-1"
    return str(event.seq)


def parse_cursor(value: int | str) -> tuple[int, tuple[int, int] | None]:
    """A cursor's ``seq`` and, for a token's, its ``(attempt, offset)``.

    Raises:
        ValueError: not a cursor (``"12"`` or ``"12:1:40"``).
    """
    if isinstance(value, int):
        return value, None
    parts = value.split(":")
    try:
        numbers = [int(p) for p in parts]
    except ValueError:
        numbers = []
    if len(numbers) == 1 and numbers[0] >= 0:
        return numbers[0], None
    if len(numbers) == 3 and numbers[0] >= 0 and numbers[1] >= 0:
        return numbers[0], (numbers[1], numbers[2])
    raise ValueError(
        f"bad event cursor {value!r}: use an event's seq (e.g. '12') or a token's "
        "cursor (e.g. '12:1:40'), as ratchet.events.cursor(event) gives"
    )
