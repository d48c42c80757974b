"""Workflow and activity inputs/outputs, and the stable names of the Temporal contract.

Every activity takes one versioned model, never positional arguments, so fields
can be added (with defaults) without breaking the replay of running agents.
Names here are contracts: renaming a Python function must never rename a
workflow type, activity, query or search attribute.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from ._older_readers import KeepsFieldsOlderReadersRequire
from ._tool_fixtures import ToolFixtures
from .agent import AgentSpec, ContextStrategy, ToolMode
from .messages import Message, ToolCall, Usage
from .models import WireFormat
from .output import OutputSpec
from .policy import PolicyDecision
from .tools import ToolSpec

WORKFLOW_TYPE = "ratchet.Agent"
SNAPSHOT_ACTIVITY = "ratchet.snapshot_agent"
MODEL_ACTIVITY = "ratchet.call_model"
TOOL_ACTIVITY = "ratchet.run_tool"
STANDALONE_TOOL_ACTIVITY = "ratchet.run_tool_standalone"
COMPACT_ACTIVITY = "ratchet.compact_transcript"
VERIFY_APPROVAL_ACTIVITY = "ratchet.verify_approval"
OUTPUT_CHECK_ACTIVITY = "ratchet.check_output"
INPUT_CHECK_ACTIVITY = "ratchet.check_input"
HAND_OFF_ACTIVITY = "ratchet.hand_off"
PIN_SESSION_ACTIVITY = "ratchet.pin_mcp_session"
REFRESH_TOOLS_ACTIVITY = "ratchet.refresh_mcp_tools"
EVAL_WORKFLOW_TYPE = "ratchet.Eval"
STATUS_QUERY = "ratchet.status"
TRANSCRIPT_QUERY = "ratchet.transcript"
DEFAULT_TASK_QUEUE = "ratchet"

APPROVE_UPDATE = "ratchet.approve"
SEND_UPDATE = "ratchet.send"
END_CHAT_SIGNAL = "ratchet.end_chat"
PENDING_QUERY = "ratchet.pending"
ASKED_MEMO = "ratchet.asked"
"""Memo field a run sets to a spent budget's ``PendingApproval`` when it asks a person
(a tool call's request is read back from the history; a budget's could not be)."""

RunState = Literal[
    "starting",
    "queued",
    "running",
    "waiting-approval",
    "waiting-input",
    "completed",
    "failed",
    "cancelled",
]


class ChatMessage(BaseModel):
    """Input of the send update: a follow-up user message."""

    text: str


class ChatReply(BaseModel):
    """The agent's answer to one chat message."""

    output: str
    turn: int
    """The run's turn count after answering."""


class PendingApproval(BaseModel):
    """A tool call (or a spent budget) waiting for a person's decision."""

    call_id: str
    """Stable approval id within the run, e.g. ``turn2-tool0`` or ``turn5-budget-max_cost_usd``."""
    tool: str
    """The tool's name; ``budget`` for a spent budget (``Limits(on_budget="ask")``)."""
    arguments: dict[str, Any]
    """The call's arguments; for a budget: ``budget``, ``used``, ``limit``, ``unit``."""
    rule: str
    """The policy rule that asked for approval."""
    reason: str = ""
    """The rule's reason, shown to the approver."""
    requested_at: datetime
    deadline: datetime
    """Denied automatically when nobody answers by then."""
    kind: Literal["tool", "budget"] = "tool"
    """``budget``: a spent budget waiting for a decision (``Limits(on_budget="ask")``)."""
    parent_run: str | None = None
    """For a sub-agent's run: the run that called it (its parent workflow's id)."""


class ApprovalAnswer(BaseModel):
    """Input of the approve update."""

    call_id: str
    approve: bool
    approver: str
    reason: str = ""
    raise_to: float | None = None
    """Budget decisions only: the budget's new limit (default: raised by its configured
    amount beyond what the run used)."""
    proof: str | None = None
    """An HMAC that a service holding the deployment's approval secret vouches for
    ``approver`` (:func:`ratchet.approval_proof.sign_approval`). Workers with
    ``RATCHET_APPROVAL_SECRET`` set refuse answers without a valid one."""


class ApprovalCheck(BaseModel):
    """Input of the local activity that checks an answer's proof before it is recorded."""

    model_config = ConfigDict(frozen=True)

    version: int = 1
    run_id: str
    """The run's workflow id (what the proof was signed for)."""
    answer: ApprovalAnswer


class ApprovalVerdict(BaseModel):
    """The check's outcome for an answer it accepts (a refusal fails the activity)."""

    model_config = ConfigDict(frozen=True)

    authenticated: bool
    """True: the worker has a secret and the proof is valid. False: the worker has no
    secret, so answers are taken as they come."""


class ApprovalRecord(BaseModel):
    """How an approval ended (kept for the audit trail)."""

    call_id: str
    """The approval's id (``PendingApproval.call_id``)."""
    tool: str
    """The tool's name; ``budget`` for a spent budget."""
    approved: bool
    approver: str
    """Who answered (``ratchet`` when nobody did before the deadline)."""
    reason: str = ""
    """The reason the approver gave."""
    at: datetime
    """When the approval ended."""
    timed_out: bool = False
    """Nobody answered before the deadline: the call was denied."""
    rule: str = ""
    """The policy rule that asked for the approval."""
    raise_to: float | None = None
    """Budget decisions: the new limit the run went on with."""
    authenticated: bool = False
    """The answer carried a proof the worker verified with its approval secret: a
    trusted service authenticated ``approver`` (see :mod:`ratchet.approval_proof`)."""


class InheritedBudget(BaseModel):
    """What a sub-agent's run may spend at most: its parent's budgets left when the
    parent called it. The child's own limits apply too; the smaller wins."""

    model_config = ConfigDict(frozen=True)

    max_total_tokens: int | None = None
    max_cost_usd: float | None = None
    deadline: datetime | None = None
    """The parent's ``max_wall_seconds`` ends then."""
    parent_run: str
    """The calling run's id."""


class RunInput(BaseModel):
    """Workflow input: which agent, what to do."""

    model_config = ConfigDict(frozen=True)

    version: int = 2
    """The workflow behaviour the run started with. 1: runs recorded before version 2,
    which replay the patches they asked for; 2: every earlier patch taken without a
    history marker, and search attributes upserted only when the run's state changes
    (``workflows/_patches.py``, ``workflows/_status.py``)."""
    agent: str
    prompt: str
    model: str | None = None
    """Overrides the agent's model for this run."""
    search_attributes: bool = False
    """Whether the namespace has ratchet's search attributes (the client checked)."""
    chat: bool = False
    """Stay open for follow-up messages (the send update) after answering."""
    carried: Carried | None = None
    """Set when the run continued as new: the state the previous execution handed over."""
    tenant: str | None = None
    """Whose run this is: the key of the agent's per-tenant concurrency cap."""
    inherited: InheritedBudget | None = None
    """Set for a sub-agent's run: the budgets its parent had left."""
    fork: ForkStart | None = None
    """Set for a fork of another run (:meth:`ratchet.AgentClient.fork`): where it branches
    off, and the transcript it starts from."""
    fixtures: ToolFixtures | None = None
    """Set for an eval case's run (``ratchet.evals``): its tool calls are answered from
    these recorded results, and no tool runs."""


class RunResult(BaseModel):
    """Workflow output of a run that completed."""

    model_config = ConfigDict(frozen=True)

    output: str
    """The final answer's text; for an agent with an ``output_type``, its JSON."""
    turns: int
    usage: Usage
    tool_calls: int
    cost_usd: float = 0.0
    unpriced_calls: int = 0
    """Model calls (its sub-agents' included) whose model has no price."""
    warnings: list[str] = []
    """Answers that completed the run but may not be whole: cut off by the model's
    output token limit (``finish_reason`` ``length``) or empty. See
    ``Limits.on_incomplete_answer``."""
    output_type: str | None = None
    """The name of the agent's output type (``Agent(output_type=...)``); None: text."""
    data: Any = None
    """The final answer parsed from its JSON, for an agent with an ``output_type`` (a
    dict for a model, a list for ``list[...]``...); None for a text answer.
    ``RunHandle.result(output_type=...)`` gives it back as the type itself."""


class RunStatus(BaseModel):
    """What the status query returns."""

    agent: str
    state: RunState
    turn: int = 0
    step: str = ""
    """Human-readable current step, e.g. ``"model call (turn 2)"``."""
    pending_approvals: list[PendingApproval] = []
    approvals: list[ApprovalRecord] = []
    usage: Usage = Usage()
    """Tokens of all model calls; ``requests`` counts every attempt, retries included."""
    cost_usd: float = 0.0
    """Total cost of the priced model calls."""
    unpriced_calls: int = 0
    """Model calls whose model has no price (their cost is not in ``cost_usd``)."""
    tool_calls: int = 0
    output: str | None = None
    error: str | None = None
    execution: int = 1
    """Which execution of the run this is (each continue-as-new starts the next one)."""
    transcript_offset: int = 0
    """How many messages of the transcript earlier executions recorded (the transcript
    query of this execution starts after them)."""
    compactions: int = 0
    """How often older turns were dropped or summarized to fit the context window."""
    warnings: list[str] = []
    """Answers cut off or empty (``RunResult.warnings``)."""
    active_agent: str | None = None
    """The agent the conversation was handed off to (``Agent(handoffs=...)``); None:
    the run's own agent."""
    subagent_runs: int = 0
    """Sub-agent runs (child workflows) this run called; their usage and cost are in
    ``usage`` and ``cost_usd``."""


class Carried(KeepsFieldsOlderReadersRequire):
    """What one execution of a run hands to the next when it continues as new.

    Only references and totals: the transcript itself stays in the transcript store,
    so a long run's next execution starts small.
    """

    ALWAYS_WRITTEN = ("head",)

    spec: AgentSpec
    """The agent snapshot taken when the run started (never retaken)."""
    status: RunStatus
    """Turns, usage and cost totals, tool call count, approvals so far."""
    started: datetime
    """When the run started (the wall-time budget counts from here)."""
    head: str | None = None
    """The transcript chain head the model saw last."""
    pending: list[Message] = []
    """Messages since ``head`` (not yet sent to the model)."""
    stored: list[str] = []
    """Hashes of ``pending`` messages an activity already wrote to the store."""
    resume: Literal["answer", "chat"] = "chat"
    """``answer``: the agent was answering (go on with the next turn); ``chat``: waiting
    for the next chat message."""
    answer: str = ""
    """The last answer (the run's result if the chat ends without another message)."""
    turns_used: int = 0
    """Turns spent on the current user message (``Limits.max_turns`` counts them)."""
    repair_streak: int = 0
    output_repairs: int = 0
    """Final answers in a row sent back for repair (``Limits.max_repair_turns``)."""
    calls: list[ToolCall] = []
    """The tool calls of an unfinished turn (waiting for approval), in call order."""
    results: dict[str, Message] = {}
    """Results of ``calls`` that are done, by call id."""
    waiting: list[PendingApproval] = []
    """Calls of ``calls`` waiting for a person's decision (deadlines unchanged)."""
    slots: list[str] = []
    """Concurrency slots the run holds (granted before continue-as-new; not re-requested)."""
    budgets: dict[str, float] = {}
    """Budgets a person raised (``Limits(on_budget="ask")``), by name: the new limits."""
    agent: str | None = None
    """The agent the conversation was handed off to (a member of ``spec.team``);
    None: the run's own agent."""
    mcp_sessions: dict[str, str] = {}
    """Stateful MCP servers' sessions: server name → the task queue of the worker that
    holds the run's session."""


class ForkStart(BaseModel):
    """Where a fork branches off another run, and what its first model call sees.

    The transcript is shared by reference: ``head`` is a chain node the parent run
    stored, and ``pending`` holds only what is new since (an edited message, or messages
    the store may lack). The parent's tool results are in the transcript, never run again.
    """

    model_config = ConfigDict(frozen=True)

    run: str
    """The parent run's id."""
    step: str
    """The step it branches at, as ``ratchet fork --at`` names it (``turn3``, ``msg:5``)."""
    spec: AgentSpec
    """The parent's agent snapshot, with the fork's instructions and model overrides: a
    redeploy since does not change what the fork is compared with."""
    agent: str | None = None
    """The member of ``spec.team`` that had the conversation there (a handoff); None:
    the run's own agent."""
    turn: int
    """The turn of the fork's first model call (turn numbers go on from the parent's)."""
    head: str | None = None
    """The parent's transcript chain head the fork's prompt continues."""
    pending: list[Message] = []
    """The prompt's messages after ``head``."""
    offset: int = 0
    """How many messages the chain at ``head`` holds (the index of ``pending[0]``)."""
    stored: list[str] = []
    """Hashes of ``pending`` messages the store already holds (sent by reference)."""
    edited_message: str | None = None
    """The text that replaced the user message the step ends with."""
    instructions: str | None = None
    """Instructions that replaced the agent's (the prompt's system message)."""
    model: str | None = None
    """The model that replaced the agent's."""


class SnapshotRequest(BaseModel):
    model_config = ConfigDict(frozen=True)

    version: int = 1
    agent: str
    model: str | None = None
    prompt: str | None = None
    """With linear history: store the opening messages (the snapshot's instructions and
    this prompt) in the transcript store, so model calls refer to them by hash. A local
    activity's input is not recorded, so the prompt stays once in history (in the
    run's input)."""


class ModelRequest(BaseModel):
    """Input of the model activity."""

    model_config = ConfigDict(frozen=True)

    version: int = 1
    agent: str
    model: str
    turn: int
    messages: list[Message]
    """The full transcript (runs recorded before linear history); empty with
    ``transcript_ref``/``appended``, until the activity fills it in for the provider."""
    transcript_ref: str | None = None
    """Head of the content-addressed transcript chain the prompt continues (None: empty)."""
    appended: list[Message | str] = []
    """Messages new since ``transcript_ref``: inline, or the hash of a message an
    activity already stored (a tool result)."""
    offset: int = 0
    """Index of ``appended[0]`` in the run's transcript (for stitching)."""
    linear: bool = False
    """Set by runs with linear history (the prompt is rebuilt from the transcript store)."""
    context_window_tokens: int | None = None
    """Fail with ``ContextTooLong`` before calling the provider past this many tokens."""
    tools: list[ToolSpec] = []
    tools_ref: str | None = None
    """With ``tools`` empty: the tool specs are in the transcript store under this
    reference (``AgentSpec.tools_ref``); the activity loads them."""
    tool_mode: ToolMode | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    timeout_seconds: float = 120.0
    heartbeat_seconds: float = 2.0
    stream: bool = False
    """Stream the reply to subscribers (``AgentSpec.stream``), if the provider can."""
    output: OutputSpec | None = None
    """The agent's output type (``AgentSpec.output``): the answer must be its JSON."""


class ModelResponse(BaseModel):
    model_config = ConfigDict(frozen=True)

    message: Message
    usage: Usage
    model: str
    """The model name the provider reports."""
    finish_reason: str | None = None
    attempt: int = 1
    """Which attempt produced this response; earlier attempts failed (and may be billed)."""
    cost_usd: float | None = None
    """Cost of this call from the worker's price table; None if the model has no price."""
    transcript_ref: str | None = None
    """With linear history: the chain head after the prompt and this response."""
    wire: WireFormat | None = None
    """How the provider rendered the request (None: it did not say, or the call was
    recorded before ratchet kept it): with the prompt, the tools and the request's
    sampling parameters, :func:`ratchet.models.render_wire_request` rebuilds the body
    that was sent."""
    warnings: list[str] = []
    """What the provider did differently than asked (e.g. it could not stream)."""


class ToolRequest(BaseModel):
    """Input of the tool activity."""

    model_config = ConfigDict(frozen=True)

    version: int = 1
    agent: str
    call: ToolCall
    arguments: dict[str, Any]
    """The parsed (schema-checked) arguments."""
    heartbeat_seconds: float = 2.0
    policy: PolicyDecision | None = None
    """The policy decision that let this call run (audit trail)."""
    approval: ApprovalRecord | None = None
    """Who approved it, when it needed approval."""
    store: bool = False
    """Write the tool message to the transcript store (linear history)."""
    mcp_server: str | None = None
    """An MCP tool (``ToolSpec.mcp_server``): call it on this server of the agent."""
    mcp_tool: str | None = None
    """An MCP tool: its name on the server."""
    mcp_pinned: bool = False
    """A stateful server's tool: use the run's own session on this (pinned) worker."""


class StandaloneToolRequest(BaseModel):
    """Input of the standalone tool activity: one tool call outside any run
    (``AgentClient.call_tool``)."""

    model_config = ConfigDict(frozen=True)

    version: int = 1
    agent: str
    tool: ToolSpec
    """The tool as the client looked it up on a worker (the options it started with)."""
    arguments: dict[str, Any]
    """The arguments, checked against ``tool.parameters``."""
    idempotency_key: str
    """``ToolContext.idempotency_key`` of every attempt."""
    heartbeat_seconds: float = 5.0
    approved_by: str | None = None
    """Who approved the call, for a tool the agent's policy puts behind an approval."""
    approval_proof: str | None = None
    """``approved_by``'s proof (``ratchet.approval_proof``), signed for the activity id
    and no run; required by workers that have an approval secret."""


class ToolResult(BaseModel):
    model_config = ConfigDict(frozen=True)

    content: str
    is_error: bool = False
    invalid_arguments: bool = False
    """The tool's own validation rejected the arguments (counts as a repair turn)."""
    message_ref: str | None = None
    """The hash under which the tool message was stored (``ToolRequest.store``)."""


class OutputCheckRequest(BaseModel):
    """Input of the output check activity: judge a well-formed final answer."""

    model_config = ConfigDict(frozen=True)

    version: int = 1
    agent: str
    turn: int
    output: str
    """The answer: its JSON for an agent with an output type, else its text."""
    typed: bool = False
    """Validate the JSON with the agent's output type first (``OutputSpec.typed_check``)."""
    validators: list[str] = []
    """The snapshot's output validators, by name, in order."""
    heartbeat_seconds: float = 2.0


class OutputCheck(BaseModel):
    """One check of a final answer."""

    model_config = ConfigDict(frozen=True)

    check: str
    """``schema`` (the workflow's check against the recorded schema), the output type's
    name (pydantic's validation in the worker), or an output validator's name."""
    accepted: bool
    message: str = ""
    """Why it was rejected (what the model is told), or a note."""


class OutputCheckResult(BaseModel):
    model_config = ConfigDict(frozen=True)

    checks: list[OutputCheck]
    """In order; a rejection is the last one (later checks did not run)."""
    data: Any = None
    """The answer as the output type dumped it back to JSON (defaults filled in), when
    it was validated with the type."""

    @property
    def rejection(self) -> OutputCheck | None:
        return next((c for c in self.checks if not c.accepted), None)


class InputCheckRequest(BaseModel):
    """Input of the input check activity: run the agent's input guardrails on a message."""

    model_config = ConfigDict(frozen=True)

    version: int = 1
    agent: str
    turn: int
    """The model turn the message would start (for the trace)."""
    text: str
    """The user's message."""
    guardrails: list[str]
    """The snapshot's input guardrails, by name, in order."""
    heartbeat_seconds: float = 2.0


class GuardrailCheck(BaseModel):
    """One input guardrail's verdict on a message."""

    model_config = ConfigDict(frozen=True)

    guardrail: str
    passed: bool
    message: str = ""
    """Why it tripped (for the user), or a note."""
    duration_seconds: float = 0.0
    usage: Usage = Usage()
    """Tokens a model guardrail spent (none for code)."""
    cost_usd: float | None = None
    """What a model guardrail's call cost, when its model is priced."""


class InputCheckResult(BaseModel):
    model_config = ConfigDict(frozen=True)

    checks: list[GuardrailCheck]
    """In order; a tripped check is the last one (later checks did not run)."""

    @property
    def tripped(self) -> GuardrailCheck | None:
        return next((c for c in self.checks if not c.passed), None)


class ToolsRefreshRequest(BaseModel):
    """Input of the activity that discovers MCP servers' tools again (continue-as-new)."""

    model_config = ConfigDict(frozen=True)

    version: int = 1
    agent: str
    servers: list[str]
    """The agent's MCP servers to ask again."""
    keep: list[ToolSpec]
    """The agent's other tools, kept as recorded (first, in order)."""
    store: bool = False
    """Store the new tool list in the transcript store (``AgentSpec.tools_ref``)."""


class ToolsRefresh(BaseModel):
    model_config = ConfigDict(frozen=True)

    tools: list[ToolSpec]
    tools_ref: str | None = None


class SessionPinRequest(BaseModel):
    """Input of the activity that picks the worker holding a run's session with a
    stateful MCP server (whichever worker takes the activity)."""

    model_config = ConfigDict(frozen=True)

    version: int = 1
    agent: str
    server: str


class SessionPin(BaseModel):
    model_config = ConfigDict(frozen=True)

    task_queue: str
    """The worker's own task queue: the run's calls to the server go there."""


class HandoffRequest(KeepsFieldsOlderReadersRequire):
    """Input of the handoff activity: the prompt so far, restarted under the target's
    instructions."""

    ALWAYS_WRITTEN = ("head",)

    model_config = ConfigDict(frozen=True)

    version: int = 1
    agent: str
    """The agent handing off."""
    target: str
    """The agent taking over (a member of the run's ``AgentSpec.team``)."""
    turn: int
    call_id: str
    """The model's id of the handoff call."""
    head: str | None = None
    """The chain head the model saw last."""
    appended: list[Message | str] = []
    """Messages since ``head`` (inline, or the hash of a stored one), the handoff's own
    tool message last."""
    offset: int = 0
    """Index of ``appended[0]`` in the run's transcript."""
    instructions: str
    """The target's instructions: the new system message."""


class HandoffResult(BaseModel):
    model_config = ConfigDict(frozen=True)

    head: str
    """The chain head of the prompt the target's model sees: the target's instructions,
    then the conversation so far."""


class CompactRequest(BaseModel):
    """Input of the compaction activity: shrink a prompt that overflows the context."""

    model_config = ConfigDict(frozen=True)

    version: int = 1
    agent: str
    model: str
    turn: int
    head: str
    """The chain head of the prompt that overflowed."""
    strategy: ContextStrategy
    context_window_tokens: int | None = None
    timeout_seconds: float = 120.0
    heartbeat_seconds: float = 2.0


class CompactResult(BaseModel):
    model_config = ConfigDict(frozen=True)

    head: str
    """The chain head of the smaller prompt."""
    kept: list[str]
    """Hashes of the smaller prompt's messages, in order (the summary's included)."""
    dropped: int
    """How many messages were dropped (or summarized)."""
    summary: Message | None = None
    usage: Usage = Usage()
    cost_usd: float | None = None


__all__ = [
    "COMPACT_ACTIVITY",
    "DEFAULT_TASK_QUEUE",
    "HAND_OFF_ACTIVITY",
    "INPUT_CHECK_ACTIVITY",
    "MODEL_ACTIVITY",
    "OUTPUT_CHECK_ACTIVITY",
    "PIN_SESSION_ACTIVITY",
    "REFRESH_TOOLS_ACTIVITY",
    "SNAPSHOT_ACTIVITY",
    "STANDALONE_TOOL_ACTIVITY",
    "STATUS_QUERY",
    "TOOL_ACTIVITY",
    "TRANSCRIPT_QUERY",
    "VERIFY_APPROVAL_ACTIVITY",
    "WORKFLOW_TYPE",
    "AgentSpec",
    "ApprovalCheck",
    "ApprovalVerdict",
    "Carried",
    "CompactRequest",
    "CompactResult",
    "ForkStart",
    "GuardrailCheck",
    "HandoffRequest",
    "HandoffResult",
    "InheritedBudget",
    "InputCheckRequest",
    "InputCheckResult",
    "ModelRequest",
    "ModelResponse",
    "OutputCheck",
    "OutputCheckRequest",
    "OutputCheckResult",
    "RunInput",
    "RunResult",
    "RunState",
    "RunStatus",
    "SessionPin",
    "SessionPinRequest",
    "SnapshotRequest",
    "StandaloneToolRequest",
    "ToolRequest",
    "ToolResult",
    "ToolsRefresh",
    "ToolsRefreshRequest",
]

RunInput.model_rebuild()
