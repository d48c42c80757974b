"""The API's request and response bodies (their JSON schemas are the OpenAPI contract).

Bodies that ratchet already defines (``ApprovalRecord``, ``ChatReply``,
``LimiterStatus``, ``Trace``, ``Message``, ``Policy``, ``Limits``) are used as they
are, so the API says exactly what the Python API says.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, get_args

from fastapi import Path
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from .._runs import RUN_STATES
from ..agent import Agent, Limits
from ..policy import Policy
from ._roles import Role

# The API's constraints, in its schema, so a client (or a fuzzer) knows them up front.
# Written as JSON Schema regexes (ECMA: `$` ends the text; Python's `\Z` does not exist),
# accepting exactly what ratchet's checks accept (tests/test_http_api.py compares them).
AGENT_NAME = r"^[a-zA-Z][a-zA-Z0-9_.-]{0,63}$"
TENANT = r"^[A-Za-z0-9_.-]{1,64}$"
PROVIDER = r"^[a-z][a-z0-9_-]*$"
MODEL = r"^(local|[a-z][a-z0-9_-]*:.*\S.*)$"
NOT_BLANK = r"[^\t\n\x0b\x0c\r\x1c-\x20\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]"
"""Holds a character Python's ``str.strip()`` keeps (a portable ``\\S``)."""
NEW_RUN_ID = "^[^/]*" + NOT_BLANK.replace("[^", "[^/", 1) + "[^/]*$"
"""A run id a client may choose over HTTP: not blank, and no ``/`` (a path could not
name the run afterwards)."""
FORK_STEP = r"^\s*(turn[0-9]+(-model(-[0-9]+)?)?|msg:[0-9]+)\s*$"
"""A step of a run to fork at, as ``ratchet.AgentClient.fork`` takes it."""
CURSOR = r"^[0-9]+(:[0-9]+:-?[0-9]+)?$"
"""What ``ratchet.events.cursor`` makes: an event's seq, or a token's seq:attempt:offset."""

PATTERN_MEANINGS = {
    NOT_BLANK: "must not be empty or blank",
    AGENT_NAME: "must be an agent name: a letter, then at most 63 letters, digits, "
    "'_', '.' or '-' (GET /v1/agents lists the agents)",
    TENANT: "must be a tenant name: 1 to 64 letters, digits, '_', '.' or '-'",
    PROVIDER: "must be a provider name: a lower-case letter, then lower-case letters, "
    "digits, '_' or '-', e.g. 'openai'",
    MODEL: "must be 'local' or '<provider>:<model>', e.g. 'openai:gpt-4o-mini'",
    NEW_RUN_ID: "must be a run id without '/' (the run's URLs carry it), not blank",
    FORK_STEP: "must be a step as `ratchet trace` numbers them: 'turnN' (that model "
    "call's prompt) or 'msg:K' (the transcript up to message K), e.g. 'turn2'",
    CURSOR: "must be an event cursor: an event's seq (e.g. '12') or a token's cursor "
    "(e.g. '12:1:40'), as the stream's `id:` lines and ratchet.events.cursor(event) give",
}
"""Each pattern above in words, for the error that tells a client its value does not fit."""

RunStatus = Literal[
    "starting",
    "queued",
    "running",
    "waiting-approval",
    "waiting-input",
    "completed",
    "failed",
    "cancelled",
    "terminated",
    "timed_out",
]
"""A run's status (``ratchet.RUN_STATES``)."""
assert get_args(RunStatus) == RUN_STATES, "RunStatus must list ratchet.RUN_STATES"

RunId = Annotated[str, Path(min_length=1, max_length=1000, pattern=NOT_BLANK)]
AgentName = Annotated[str, Path(pattern=AGENT_NAME)]

__all__ = [
    "AGENT_NAME",
    "CURSOR",
    "MODEL",
    "NOT_BLANK",
    "PATTERN_MEANINGS",
    "PROVIDER",
    "TENANT",
    "Accepted",
    "AgentInfo",
    "AgentName",
    "ApproveBody",
    "DenyBody",
    "ForkRun",
    "ForkedRun",
    "KeyCreate",
    "KeyCreated",
    "KeyInfo",
    "LimitsChange",
    "Login",
    "Me",
    "PendingInfo",
    "RunDetail",
    "RunId",
    "RunPageBody",
    "RunStatus",
    "RunSummary",
    "SendMessage",
    "StartRun",
    "StartedRun",
    "ToolInfo",
]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ToolInfo(BaseModel):
    name: str
    description: str
    parameters: dict[str, Any]
    """JSON schema of the arguments."""
    side_effects: bool


class AgentInfo(BaseModel):
    name: str
    model: str
    instructions: str
    tools: list[ToolInfo]
    policy: Policy
    limits: Limits
    stream: bool

    @classmethod
    def of(cls, agent: Agent) -> AgentInfo:
        spec = agent.spec()
        return cls(
            name=spec.name,
            model=spec.model,
            instructions=spec.instructions,
            tools=[
                ToolInfo(
                    name=t.name,
                    description=t.description,
                    parameters=t.parameters,
                    side_effects=t.side_effects,
                )
                for t in spec.tools
            ],
            policy=spec.policy,
            limits=spec.limits,
            stream=spec.stream,
        )


class StartRun(_Request):
    agent: str = Field(pattern=AGENT_NAME)
    prompt: str = Field(pattern=NOT_BLANK)
    id: str | None = Field(None, max_length=1000, pattern=NEW_RUN_ID)
    """Idempotency: the same id, agent and prompt again return the existing run."""
    model: str | None = Field(None, max_length=200, pattern=MODEL)
    """Overrides the agent's model, e.g. ``openai:gpt-4o-mini``."""
    chat: bool = False
    """Stay open for follow-up messages (``POST /v1/runs/{id}/messages``)."""


class ForkRun(_Request):
    at: str = Field(pattern=FORK_STEP)
    """The step: ``turnN`` (that model call's prompt) or ``msg:K`` (the transcript up to
    message K, then a model call)."""
    edit_message: str | None = Field(None, pattern=NOT_BLANK)
    """Replaces the user message the step ends with."""
    instructions: str | None = Field(None, pattern=NOT_BLANK)
    """Replace the agent's instructions."""
    model: str | None = Field(None, max_length=200, pattern=MODEL)
    """Replaces the agent's model, e.g. ``openai:gpt-4o-mini``."""
    id: str | None = Field(None, max_length=1000, pattern=NEW_RUN_ID)
    """The new run's id (default: ``<agent>-<12 hex digits>``); must not be taken."""


class ForkedRun(BaseModel):
    id: str
    """The new run."""
    agent: str
    status: str
    forked_from: str
    """The parent run."""
    step: str
    """The parent's step the new run starts from."""


class StartedRun(BaseModel):
    id: str
    existed: bool
    """True: a run with this id existed, and this is it (nothing was started)."""
    agent: str
    status: str


class RunSummary(BaseModel):
    id: str
    agent: str
    status: str
    """One of ``ratchet.RUN_STATES`` (``unknown`` for a status Temporal adds later)."""
    tenant: str | None
    started: AwareDatetime | None
    closed: AwareDatetime | None
    turns: int | None
    tokens: int | None
    cost_usd: float | None


class RunPageBody(BaseModel):
    runs: list[RunSummary]
    next_page_token: str | None
    """Pass as ``page_token`` for the next page; null on the last page."""


class ExecutionRef(BaseModel):
    execution: int
    """1, 2, ...: the ``execution`` of the run's events (each continue-as-new starts one)."""
    run_id: str
    """Temporal's run id of that execution, for links to its events in the Web UI."""


class RunDetail(RunSummary):
    prompt: str
    model: str | None
    """The run's model override, if any (the agent's model otherwise)."""
    chat: bool
    temporal_ui_url: str | None
    """The run's page in the Temporal Web UI, when the server knows its address."""
    executions: list[ExecutionRef] = []
    """The run's executions, first first (a step links to
    ``{temporal_ui_url}/{run_id}/history/events/{history_event_id}``)."""


class SendMessage(_Request):
    text: str = Field(pattern=NOT_BLANK)


class Accepted(BaseModel):
    id: str
    action: Literal["cancel", "end"]
    """What was asked of the run; it happens asynchronously."""


class PendingInfo(BaseModel):
    run_id: str
    agent: str | None = None
    tenant: str | None = None
    call_id: str
    tool: str
    """``budget`` for a spent budget waiting for a decision."""
    arguments: dict[str, Any]
    rule: str
    reason: str
    requested_at: AwareDatetime
    deadline: AwareDatetime
    kind: Literal["tool", "budget"]


class ApproveBody(_Request):
    reason: str = ""
    raise_to: float | None = Field(None, gt=0)
    """Budget decisions only: the budget's new limit."""


class DenyBody(_Request):
    reason: str = Field(min_length=1)


class LimitsChange(_Request):
    rpm: int | None = Field(None, ge=0)
    """Requests per window; 0 removes the limit; absent keeps it."""
    tpm: int | None = Field(None, ge=0)
    """Tokens per window; 0 removes the limit; absent keeps it."""
    window_seconds: float | None = Field(None, gt=1, le=86_400)
    """The window (over the limiter's 1 s margin); absent keeps it."""


class KeyCreate(_Request):
    name: str = Field(max_length=200, pattern=NOT_BLANK)
    role: Role
    tenant: str | None = Field(None, pattern=TENANT)


class KeyInfo(BaseModel):
    id: str
    name: str
    role: Role
    tenant: str | None
    created: AwareDatetime
    revoked: AwareDatetime | None


class KeyCreated(KeyInfo):
    key: str
    """The secret: shown this once, stored only as a hash."""


class Login(_Request):
    api_key: str = Field(min_length=1, max_length=4096)
    """An API key (or an OIDC token)."""


class Me(BaseModel):
    principal: str
    role: Role
    tenant: str | None
    via: Literal["api_key", "oidc", "session"]
    csrf_token: str | None = None
    """With a session cookie: the token unsafe requests send in ``X-CSRF-Token``."""
    expires: AwareDatetime | None = None
    """With a session cookie: when the session ends."""
