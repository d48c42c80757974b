"""The API's request and response bodies (their JSON schemas are the OpenAPI contract).

Bodies that ratchet already defines (``ApprovalRecord``, ``ChatReply``,
``LimiterStatus``, ``Trace``, ``Message``, ``Policy``, ``Limits``) are used as they
are, so the API says exactly what the Python API says.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from ..agent import Agent, Limits
from ..policy import Policy
from ._roles import Role

__all__ = [
    "Accepted",
    "AgentInfo",
    "ApproveBody",
    "DenyBody",
    "KeyCreate",
    "KeyCreated",
    "KeyInfo",
    "LimitsChange",
    "Login",
    "Me",
    "PendingInfo",
    "RunDetail",
    "RunPageBody",
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
    agent: str = Field(min_length=1, max_length=200)
    prompt: str = Field(min_length=1)
    id: str | None = Field(None, min_length=1, max_length=255)
    """Idempotency: the same id, agent and prompt again return the existing run."""
    model: str | None = Field(None, min_length=1, max_length=200)
    """Overrides the agent's model, e.g. ``openai:gpt-4o-mini``."""
    chat: bool = False
    """Stay open for follow-up messages (``POST /v1/runs/{id}/messages``)."""


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
    """One of ``ratchet.RUN_STATES``."""
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


class RunDetail(RunSummary):
    prompt: str
    model: str | None
    """The run's model override, if any (the agent's model otherwise)."""
    chat: bool
    temporal_ui_url: str | None
    """The run's page in the Temporal Web UI, when the server knows its address."""


class SendMessage(_Request):
    text: str = Field(min_length=1)


class Accepted(BaseModel):
    id: str
    action: Literal["cancel", "end"]
    """What was asked of the run; it happens asynchronously."""


class PendingInfo(BaseModel):
    run_id: str
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
    window_seconds: float | None = Field(None, gt=0, le=86_400)


class KeyCreate(_Request):
    name: str = Field(min_length=1, max_length=200)
    role: Role
    tenant: str | None = Field(None, pattern=r"^[A-Za-z0-9_.-]{1,64}$")


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
