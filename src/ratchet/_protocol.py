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

from .agent import AgentSpec, ToolMode
from .messages import Message, ToolCall, Usage
from .policy import PolicyDecision
from .tools import ToolSpec

WORKFLOW_TYPE = "ratchet.Agent"
SNAPSHOT_ACTIVITY = "ratchet.snapshot_agent"
MODEL_ACTIVITY = "ratchet.call_model"
TOOL_ACTIVITY = "ratchet.run_tool"
STATUS_QUERY = "ratchet.status"
TRANSCRIPT_QUERY = "ratchet.transcript"
DEFAULT_TASK_QUEUE = "ratchet"

APPROVE_UPDATE = "ratchet.approve"
SEND_UPDATE = "ratchet.send"
END_CHAT_SIGNAL = "ratchet.end_chat"
PENDING_QUERY = "ratchet.pending"

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
    """A tool call waiting for a person's decision."""

    call_id: str
    """Stable approval id within the run, e.g. ``turn2-tool0``."""
    tool: str
    arguments: dict[str, Any]
    rule: str
    """The policy rule that asked for approval."""
    reason: str = ""
    requested_at: datetime
    deadline: datetime
    """Denied automatically when nobody answers by then."""


class ApprovalAnswer(BaseModel):
    """Input of the approve update."""

    call_id: str
    approve: bool
    approver: str
    reason: str = ""


class ApprovalRecord(BaseModel):
    """How an approval ended (kept for the audit trail)."""

    call_id: str
    tool: str
    approved: bool
    approver: str
    reason: str = ""
    at: datetime
    timed_out: bool = False
    rule: str = ""
    """The policy rule that asked for the approval."""


class RunInput(BaseModel):
    """Workflow input: which agent, what to do."""

    model_config = ConfigDict(frozen=True)

    version: int = 1
    agent: str
    prompt: str
    model: str | None = None
    """Overrides the agent's model for this run."""
    search_attributes: bool = False
    """Whether the namespace has ratchet's search attributes (the client checked)."""
    chat: bool = False
    """Stay open for follow-up messages (the send update) after answering."""
    tenant: str | None = None
    """Whose run this is: the key of the agent's per-tenant concurrency cap."""


class RunResult(BaseModel):
    """Workflow output of a run that completed."""

    model_config = ConfigDict(frozen=True)

    output: str
    turns: int
    usage: Usage
    tool_calls: int
    cost_usd: float = 0.0


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


class SnapshotRequest(BaseModel):
    model_config = ConfigDict(frozen=True)

    version: int = 1
    agent: str
    model: str | None = None


class ModelRequest(BaseModel):
    """Input of the model activity."""

    model_config = ConfigDict(frozen=True)

    version: int = 1
    agent: str
    model: str
    turn: int
    messages: list[Message]
    """The full transcript for now; later a transcript reference plus new messages."""
    transcript_ref: str | None = None
    """Reserved for content-addressed transcripts (linear history growth)."""
    tools: list[ToolSpec] = []
    tool_mode: ToolMode | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    timeout_seconds: float = 120.0
    heartbeat_seconds: float = 2.0


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


class ToolResult(BaseModel):
    model_config = ConfigDict(frozen=True)

    content: str
    is_error: bool = False
    invalid_arguments: bool = False
    """The tool's own validation rejected the arguments (counts as a repair turn)."""


__all__ = [
    "DEFAULT_TASK_QUEUE",
    "MODEL_ACTIVITY",
    "SNAPSHOT_ACTIVITY",
    "STATUS_QUERY",
    "TOOL_ACTIVITY",
    "TRANSCRIPT_QUERY",
    "WORKFLOW_TYPE",
    "AgentSpec",
    "ModelRequest",
    "ModelResponse",
    "RunInput",
    "RunResult",
    "RunState",
    "RunStatus",
    "SnapshotRequest",
    "ToolRequest",
    "ToolResult",
]
