"""ratchet's error taxonomy, in one place.

Every error a user can meet is one of these. The tree::

    RatchetError                    base of everything ratchet raises
    ├── ConfigError                 bad agent/tool/model definition or bad input (never retried)
    ├── ConnectionFailed            the Temporal server cannot be reached
    ├── RunNotFound                 no run with that id
    ├── ApprovalError               an approval answer was refused (answered already, unknown call)
    ├── TranscriptEntryMissing      the transcript store lost a message a run needs
    ├── LocalServiceError           (ratchet.local) an embedded service cannot be built or run
    ├── OutputRejected              raised by an output validator to reject an answer
    ├── InputRejected               raised by an input guardrail to stop a run
    ├── ToolCallFailed              a standalone tool call (``AgentClient.call_tool``) failed
    │                               for good; ``.error_type`` says why (``ToolTimeout``,
    │                               ``RetryableToolError``, ``ToolFailed``, ...)
    └── RunFailed                   a run ended in failure; ``.error_type`` says why:
          RunCancelled              (subclass) a client cancelled the run
          model errors (raised by the model activity, see ``MODEL_ERRORS``)
          ├── retryable — Temporal retries them with backoff, honouring Retry-After:
          │     ModelTimeout, ModelConnectionError, ModelRateLimited (429),
          │     ModelServerError (408, 409, 5xx)
          └── non-retryable — fail the run at once with a clear message:
                ModelAuthError (401, 403), ModelBadRequest (400, 422),
                ModelNotFound (404), ContextTooLong, ContentFiltered
          run outcomes (raised by the workflow)
          ├── BudgetExceeded        (subclass) a budget was spent: turns (``Limits.max_turns``),
          │                         tokens, cost or wall time
          ├── RepairLimitExceeded   the model kept producing invalid tool calls
          ├── OutputValidationError (subclass) the model kept giving final answers that do
          │                         not match the agent's output_type, or that its output
          │                         validators reject (``Limits.max_repair_turns``)
          ├── GuardrailTripped      (subclass) an input guardrail rejected the user's
          │                         message before any model call (never retried)
          ├── IncompleteAnswer      the final answer was cut off by the output token limit
          │                         or empty (with ``Limits(on_incomplete_answer="fail")``)
          ├── ToolFailed            a tool declared ``fatal=True`` raised
          ├── PayloadTooLarge       a payload would exceed Temporal's 2 MB and cannot be stored
          ├── ToolTimeout           the agent snapshot or a compaction did not finish in time
          ├── TranscriptEntryMissing  the transcript store lost a message of the prompt
          └── UnknownAgent          no worker hosts the requested agent

The names are typed: ``ModelErrorType`` lists the model error leaves (the keys of
``MODEL_ERRORS``), ``RunErrorType`` every type name a run failure can carry.
Activity code may still fail with a type of its own (an unexpected exception's class
name); a run that fails that way passes the name on unchanged.

Inside activities the model and tool errors travel as Temporal
``ApplicationError`` whose ``type`` is one of the names above, so the event
history and the Temporal Web UI show the same names this module documents.

Tool errors are *not* run failures: a tool that raises (unless declared fatal)
and tool calls with bad JSON, unknown names or invalid arguments become tool
messages that tell the model what went wrong, so it can repair its call.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = [
    "MODEL_ERRORS",
    "ApprovalError",
    "BudgetExceeded",
    "ConfigError",
    "ConnectionFailed",
    "GuardrailTripped",
    "InputRejected",
    "ModelErrorKind",
    "ModelErrorType",
    "OutputRejected",
    "OutputValidationError",
    "RatchetError",
    "RetryableToolError",
    "RunCancelled",
    "RunErrorType",
    "RunFailed",
    "RunNotFound",
    "ToolCallFailed",
    "TranscriptEntryMissing",
    "TranscriptStoreUnavailable",
]


class RatchetError(Exception):
    """Base class of every error ratchet raises."""


class ConfigError(RatchetError, ValueError):
    """An agent, tool, model string or argument is invalid.

    The message says which one, and how to fix it.
    """


class ConnectionFailed(RatchetError):
    """The Temporal server could not be reached."""


class RunNotFound(RatchetError):
    """No run exists with the given id."""


class ApprovalError(RatchetError):
    """An approve/deny answer was refused; the message says why."""


class TranscriptEntryMissing(RatchetError):
    """The transcript store has no entry a run's prompt refers to.

    A model call never goes ahead with a silently different prompt: it fails with
    this error (as a run failure of type ``TranscriptEntryMissing``).

    Attributes:
        run_id: the workflow id of the run.
        entry: the hash of the missing message or chain node.
        kind: ``"message"`` or ``"chain node"``.
    """

    def __init__(self, run_id: str, entry: str, kind: str) -> None:
        super().__init__(
            f"run {run_id}: the transcript store has no {kind} {entry}; the prompt cannot be "
            "rebuilt exactly. Check that every worker uses the same transcript store "
            "(create_worker(transcript_store=...), ratchet worker --transcript-store) and "
            "that it was not cleaned up while the run was live."
        )
        self.run_id = run_id
        self.entry = entry
        self.kind = kind


class TranscriptStoreUnavailable(RatchetError):
    """The transcript store cannot be read or written right now: a SQLite file locked,
    unwritable or on a full disk, or PostgreSQL unreachable.

    Workers wait for it (``RATCHET_STORE_OUTAGE_SECONDS``, 60 s by default) before a
    model call gives up; the run then fails with this type, and goes on from its last
    recorded step with ``ratchet fork RUN --at STEP`` once the store is back.

    Attributes:
        store: which store (its description, without passwords).
        full: the disk under the store is full (SQLite).
    """

    def __init__(self, store: str, reason: str, *, full: bool = False) -> None:
        what = "the disk under it is full" if full else reason
        super().__init__(f"the transcript store {store} is unavailable: {what}")
        self.store = store
        self.full = full


class RunFailed(RatchetError):
    """A run ended in failure.

    Attributes:
        run_id: the workflow id of the run.
        error_type: the taxonomy name of the cause, e.g. ``"ModelAuthError"``.
    """

    def __init__(self, run_id: str, error_type: str, message: str) -> None:
        super().__init__(f"run {run_id} failed: {error_type}: {message}")
        self.run_id = run_id
        self.error_type = error_type
        self.message = message


class ToolCallFailed(RatchetError):
    """A tool called on its own, outside any run (``AgentClient.call_tool``), failed for
    good: its attempts ran out, a tool declared ``fatal`` raised, or the worker refused
    the call.

    Attributes:
        activity_id: the standalone activity's id.
        error_type: the taxonomy name of the cause, e.g. ``"ToolTimeout"``.
        attempts: how many attempts were made.
    """

    def __init__(self, activity_id: str, error_type: str, message: str, attempts: int) -> None:
        super().__init__(
            f"tool call {activity_id} failed after {attempts} attempt(s): {error_type}: {message}"
        )
        self.activity_id = activity_id
        self.error_type = error_type
        self.message = message
        self.attempts = attempts


class RunCancelled(RunFailed):
    """The run was cancelled by a client; its transcript is kept."""

    def __init__(self, run_id: str) -> None:
        super().__init__(run_id, "Cancelled", "the run was cancelled")


class BudgetExceeded(RunFailed):
    """A run reached one of its budgets; its transcript is kept.

    Attributes:
        budget: which one: ``max_turns``, ``max_total_tokens``, ``max_cost_usd`` or
            ``max_wall_seconds`` (the ``Limits`` field).
        used: how much the run had used.
        limit: the budget.
        spent_by: the run that spent it: this run, or one of its sub-agents' runs
            (a child's budget is at most what its parent had left; spending it stops
            the child and every run above it).
    """

    def __init__(
        self,
        run_id: str,
        message: str,
        budget: str,
        used: float,
        limit: float,
        spent_by: str | None = None,
    ) -> None:
        super().__init__(run_id, "BudgetExceeded", message)
        self.budget = budget
        self.used = used
        self.limit = limit
        self.spent_by = spent_by or run_id


class OutputValidationError(RunFailed):
    """The model's final answers kept failing the agent's output checks; the transcript is kept.

    Each invalid answer (not the output type's JSON, or rejected by an output
    validator) went back to the model with what was wrong, up to
    ``Limits.max_repair_turns`` times in a row; the next one ended the run.

    Attributes:
        problem: what was wrong with the last answer, as the model would have been told.
    """

    def __init__(self, run_id: str, message: str, problem: str = "") -> None:
        super().__init__(run_id, "OutputValidationError", message)
        self.problem = problem


class OutputRejected(RatchetError):
    """Raise from an output validator to reject the model's final answer.

    The message goes back to the model, which answers again (within
    ``Limits.max_repair_turns``). Returning a message from the validator does the same.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class GuardrailTripped(RunFailed):
    """An input guardrail rejected the user's message; no model saw it.

    Attributes:
        guardrail: the name of the check that tripped.
        reason: its message, fit to show the user.
    """

    def __init__(self, run_id: str, message: str, guardrail: str = "", reason: str = "") -> None:
        super().__init__(run_id, "GuardrailTripped", message)
        self.guardrail = guardrail
        self.reason = reason


class InputRejected(RatchetError):
    """Raise from an input guardrail to stop the run with ``GuardrailTripped``.

    The message is for the user. Returning a message from the guardrail does the same.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class RetryableToolError(RatchetError):
    """Raise from a tool to have Temporal retry the call (up to the tool's ``max_attempts``).

    Any other exception a tool raises is reported to the model as a tool error
    straight away (or fails the run, for tools declared ``fatal=True``).
    """


ModelErrorType = Literal[
    "ModelTimeout",
    "ModelConnectionError",
    "ModelRateLimited",
    "ModelServerError",
    "ModelAuthError",
    "ModelBadRequest",
    "ModelNotFound",
    "ContextTooLong",
    "ContentFiltered",
]
"""The model error leaves: the names ``MODEL_ERRORS`` describes."""

RunErrorType = Literal[
    ModelErrorType,
    "BudgetExceeded",
    "RepairLimitExceeded",
    "OutputValidationError",
    "GuardrailTripped",
    "IncompleteAnswer",
    "ToolFailed",
    "ToolTimeout",
    "PayloadTooLarge",
    "TranscriptEntryMissing",
    "UnknownAgent",
    "ConfigError",
    "Cancelled",
]
"""Every type name of a run failure in the taxonomy (``RunFailed.error_type``).

``ToolTimeout``: an activity other than a model call (the snapshot, a compaction)
ran out of time; ``Cancelled``: the run was cancelled (``RunCancelled``)."""


@dataclass(frozen=True)
class ModelErrorKind:
    """One leaf of the model error taxonomy."""

    name: ModelErrorType
    retryable: bool
    description: str


MODEL_ERRORS: dict[str, ModelErrorKind] = {
    k.name: k
    for k in [
        ModelErrorKind("ModelTimeout", True, "the provider did not answer in time"),
        ModelErrorKind("ModelConnectionError", True, "the provider could not be reached"),
        ModelErrorKind("ModelRateLimited", True, "HTTP 429: rate limited by the provider"),
        ModelErrorKind("ModelServerError", True, "HTTP 408/409/5xx: a transient provider error"),
        ModelErrorKind("ModelAuthError", False, "HTTP 401/403: check the API key"),
        ModelErrorKind("ModelBadRequest", False, "HTTP 400/422: the provider rejected the request"),
        ModelErrorKind("ModelNotFound", False, "HTTP 404: unknown model or endpoint"),
        ModelErrorKind("ContextTooLong", False, "the prompt exceeds the model's context window"),
        ModelErrorKind(
            "ContentFiltered", False, "the provider's content filter blocked the output"
        ),
    ]
}
"""The model error leaves by name, with whether Temporal retries them."""
