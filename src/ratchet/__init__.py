"""ratchet: durable, production-grade AI agents on Temporal.

The public API is what ``__all__`` lists; everything else is private.
"""

from ._connect import connect
from ._limiter_protocol import LimiterStatus, RateLimit
from ._protocol import ApprovalRecord, ChatReply, PendingApproval, RunResult, RunStatus
from ._search import register_search_attributes
from .agent import Agent, Limits
from .client import RUN_STATES, AgentClient, RunHandle, RunInfo, RunPage
from .errors import (
    ApprovalError,
    BudgetExceeded,
    ConfigError,
    ConnectionFailed,
    GuardrailTripped,
    InputRejected,
    OutputRejected,
    OutputValidationError,
    RatchetError,
    RetryableToolError,
    RunCancelled,
    RunFailed,
    RunNotFound,
    TranscriptEntryMissing,
)
from .guardrails import ModelGuardrail
from .messages import Message, ToolCall, Usage
from .models import OpenAICompatible
from .output import TypedRunResult
from .policy import Policy, Rule, allow, arg, deny, require_approval
from .pricing import Price
from .team import Handoff
from .tools import Tool, ToolContext, tool
from .worker import create_model_worker, create_worker, model_queue
from .workflows import AgentWorkflow

__all__ = [
    "RUN_STATES",
    "Agent",
    "AgentClient",
    "AgentWorkflow",
    "ApprovalError",
    "ApprovalRecord",
    "BudgetExceeded",
    "ChatReply",
    "ConfigError",
    "ConnectionFailed",
    "GuardrailTripped",
    "Handoff",
    "InputRejected",
    "LimiterStatus",
    "Limits",
    "Message",
    "ModelGuardrail",
    "OpenAICompatible",
    "OutputRejected",
    "OutputValidationError",
    "PendingApproval",
    "Policy",
    "Price",
    "RatchetError",
    "RateLimit",
    "RetryableToolError",
    "Rule",
    "RunCancelled",
    "RunFailed",
    "RunHandle",
    "RunInfo",
    "RunNotFound",
    "RunPage",
    "RunResult",
    "RunStatus",
    "Tool",
    "ToolCall",
    "ToolContext",
    "TranscriptEntryMissing",
    "TypedRunResult",
    "Usage",
    "allow",
    "arg",
    "connect",
    "create_model_worker",
    "create_worker",
    "deny",
    "model_queue",
    "register_search_attributes",
    "require_approval",
    "tool",
]
