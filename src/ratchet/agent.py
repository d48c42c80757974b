"""Agent definitions: pure data, snapshotted into history when a run starts."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from .errors import ConfigError
from .guardrails import InputGuardrail, ModelGuardrail, guardrail_name
from .mcp._source import MCPServer
from .output import OUTPUT_TOOL, OutputSpec, OutputValidator, output_spec
from .policy import Policy
from .team import AgentTool, Handoff
from .tools import Tool, ToolSpec

__all__ = [
    "Agent",
    "AgentSpec",
    "BudgetAction",
    "ContextStrategy",
    "IncompleteAnswerAction",
    "Limits",
    "ModelRef",
    "ToolMode",
    "parse_model",
]

ToolMode = Literal["native", "json_schema"]
"""How tool calls reach the model: the provider's ``tools=`` API (``native``), or a
JSON envelope enforced through ``response_format`` (``json_schema``), for small
local models whose chat template has no tool support."""

BudgetAction = Literal["fail", "ask"]
"""What a run does when a budget is spent: end with ``BudgetExceeded``, or ask a person."""

ContextStrategy = Literal["drop_oldest", "summarize"]
"""How a prompt that does not fit the context window is shrunk: drop the oldest turns,
or have the model summarize them."""

_AGENT_NAME_RE = re.compile(r"^[a-zA-Z][a-zA-Z0-9_.-]{0,63}$")
PROVIDER_RE = re.compile(r"^[a-z][a-z0-9_-]*$")


IncompleteAnswerAction = Literal["warn", "fail"]
"""What a final answer that may not be whole does to the run (``Limits.on_incomplete_answer``)."""


class Limits(BaseModel):
    """Bounds on one run. Every field has a production-sensible default."""

    model_config = ConfigDict(frozen=True)

    max_turns: int = Field(10, ge=1)
    """Budget: model calls allowed per user message; one more ends the run with
    ``BudgetExceeded`` (budget ``max_turns``)."""
    max_total_tokens: int | None = Field(None, gt=0)
    """Budget: the run ends with ``BudgetExceeded`` once its model calls used this many tokens."""
    max_cost_usd: float | None = Field(None, gt=0)
    """Budget: the run ends with ``BudgetExceeded`` once its priced calls cost this much."""
    max_wall_seconds: float | None = Field(None, gt=0)
    """Budget: no new model call starts after the run has lasted this long."""
    on_incomplete_answer: IncompleteAnswerAction = "warn"
    """A final answer cut off by the model's output token limit (``finish_reason``
    ``length``) or empty: ``warn`` completes the run with the answer and a warning
    (``RunResult.warnings``, the trace, the ``run_finished`` event); ``fail`` ends the
    run with ``IncompleteAnswer``, its transcript kept."""
    on_budget: BudgetAction = "fail"
    """What happens when a budget (turns, tokens, cost, wall time) is spent.

    ``fail``: the run ends with ``BudgetExceeded``, its transcript kept. ``ask``: the
    run pauses for a person's decision, like a tool call waiting for approval
    (``ratchet pending``): approve to go on with the budget raised (to ``raise_to``,
    or by its configured amount), deny to end the run with ``BudgetExceeded``.
    Nobody answering within ``approval_timeout_seconds`` counts as a denial."""
    max_repair_turns: int = Field(3, ge=0)
    """Consecutive turns with invalid tool calls tolerated before ``RepairLimitExceeded``;
    also how many final answers in a row may fail the agent's output checks (its
    ``output_type``, its ``output_validators``) and be sent back for repair before
    ``OutputValidationError``."""
    output_check_seconds: float = Field(60.0, gt=0)
    """How long the output check activity (the output type's own validation and the
    agent's ``output_validators``) may take per attempt."""
    model_timeout_seconds: float = Field(120.0, gt=0)
    """One model call attempt may take this long."""
    model_queue_seconds: float = Field(300.0, ge=0)
    """How long one model call attempt may wait for its provider's rate limiter.

    Only providers given rate limits (``create_worker(rate_limits=...)``) make calls
    wait; a call still waiting after this long is retried (an attempt is used) and
    keeps its place in the queue."""
    model_heartbeat_seconds: float = Field(5.0, gt=0)
    """A model call whose worker stops heartbeating for this long is retried elsewhere.

    The worker heartbeats every third of this while it waits for the provider, and
    the server hears one at least every second, so a crashed worker's call resumes
    on another worker after about this long. A worker whose event loop stalls for
    more than this minus one second looks crashed and the call is retried: raise it
    for heavily loaded workers, lower it (e.g. 2) for faster crash recovery. The
    default was 2 until a worker running 500 runs at once on 2 shared cores stalled
    long enough to fail some of them (``python -m bench``, issue 18)."""
    tool_heartbeat_seconds: float = Field(5.0, gt=0)
    """Like ``model_heartbeat_seconds``, for tool calls."""
    chat_idle_timeout_seconds: float = Field(86_400.0, gt=0)
    """A chat with no new message for this long ends, with its last answer as result."""
    approval_timeout_seconds: float = Field(86_400.0, gt=0)
    """A call waiting for approval is denied when nobody answers within this long."""
    max_transcript_bytes: int = Field(1_500_000, gt=0)
    """Runs recorded before linear history only: such a run fails with ``PayloadTooLarge``
    before a model request (the whole transcript) would exceed this.

    Temporal rejects payloads over 2 MB; failing early with a clear error beats an
    activity that can never be scheduled. With linear history a model request carries
    only a reference and the new messages, so the transcript has no such limit."""
    continue_as_new_after_events: int = Field(8_000, ge=20, le=10_240)
    """Continue as new at the next safe turn boundary once the execution's history has
    this many events (Temporal warns at 10,240 and stops a run at 51,200). It also
    continues as new whenever Temporal suggests it."""
    continue_as_new_after_bytes: int = Field(8_000_000, ge=10_000, le=10_000_000)
    """Continue as new once the execution's history is this large (Temporal warns at 10 MB)."""
    context_window_tokens: int | None = Field(None, gt=0)
    """The model's context window. A prompt estimated (4 characters a token) above it is
    shrunk with ``context_strategy`` before it is sent; a provider's "context too long"
    answer is handled the same way, with or without this."""
    context_strategy: ContextStrategy = "drop_oldest"
    """How to shrink a prompt that does not fit: drop the oldest turns, or have the model
    summarize them (a model call of its own). The system prompt, pinned messages (the
    run's prompt is pinned) and the latest turn are always kept, and a tool call is never
    separated from its results."""
    model_max_attempts: int = Field(6, ge=1)
    """Attempts per model call for retryable errors (timeouts, 429, 5xx)."""
    model_retry_initial_seconds: float = Field(1.0, gt=0)
    """First retry delay (doubled each attempt) when the provider gives no Retry-After."""
    model_retry_max_seconds: float = Field(60.0, gt=0)
    """Cap on the delay between model call attempts."""


def check_agent_name(name: str) -> None:
    """Raise :class:`ConfigError` unless ``name`` is a valid agent name."""
    if not _AGENT_NAME_RE.match(name):
        raise ConfigError(
            f"agent name {name!r} is invalid: start with a letter; use letters, digits, "
            "'_', '-' or '.' (at most 64 characters)"
        )


class ModelRef(BaseModel):
    """A parsed model string: ``local`` or ``<provider>:<model>``."""

    model_config = ConfigDict(frozen=True)

    provider: str
    name: str

    def __str__(self) -> str:
        return "local" if self.provider == "local" else f"{self.provider}:{self.name}"


def parse_model(model: str) -> ModelRef:
    """Parse a model string.

    ``local`` is the embedded model (see ``ratchet up``); ``openai:gpt-4o-mini``
    is model ``gpt-4o-mini`` on the ``openai`` provider (``OPENAI_BASE_URL``,
    ``OPENAI_API_KEY``); any other ``provider:model`` names a provider registered
    on the worker.

    Raises:
        ConfigError: the string has neither form.
    """
    if model == "local":
        return ModelRef(provider="local", name="local")
    provider, sep, name = model.partition(":")
    if not sep or not name.strip() or not PROVIDER_RE.match(provider):
        raise ConfigError(
            f"bad model string {model!r}: expected 'local' or '<provider>:<model>', "
            "e.g. 'openai:gpt-4o-mini'"
        )
    return ModelRef(provider=provider, name=name)


class AgentSpec(BaseModel):
    """Everything a run needs to know about its agent, recorded in history at start.

    A redeploy that changes the agent's code does not change a running agent:
    the workflow only ever reads this snapshot.
    """

    model_config = ConfigDict(frozen=True)

    version: int = 1
    name: str
    instructions: str
    model: str
    tool_mode: ToolMode | None = None
    """None: the provider's default (``json_schema`` for ``local``, else ``native``)."""
    tools: list[ToolSpec] = []
    tools_ref: str | None = None
    """Set when the snapshot stored ``tools`` in the transcript store (runs with linear
    history): model calls then carry this reference instead of every tool's schema."""
    limits: Limits = Limits()
    temperature: float | None = None
    max_tokens: int | None = None
    model_task_queue: str | None = None
    """Task queue for model calls; None means the run's own queue."""
    policy: Policy = Policy()
    max_concurrent_runs: int | None = None
    """At most this many runs of the agent work at once; the others wait, queued."""
    max_concurrent_runs_per_tenant: int | None = None
    """Like ``max_concurrent_runs``, per tenant (``AgentClient.start(tenant=...)``)."""
    stream: bool = True
    """Stream model replies to subscribers where the provider supports it (live only:
    the history records the final message either way)."""
    output: OutputSpec | None = None
    """The output type's schema (``Agent(output_type=...)``); None: the answer is text."""
    output_validators: list[str] = []
    """The names of the agent's output validators, run in this order on each final answer."""
    input_guardrails: list[str] = []
    """The names of the agent's input guardrails, run in this order on each user message
    before its first model call (none in runs recorded before guardrails)."""

    team: dict[str, AgentSpec] = {}
    """The snapshots of every agent this run can hand off to, directly or through
    another handoff, by name (set on the run's own agent only). A handoff reads its
    target here, never from the workers' registry."""

    def tool(self, name: str) -> ToolSpec | None:
        return next((t for t in self.tools if t.name == name), None)

    def member(self, name: str) -> AgentSpec:
        """The snapshot of ``name`` (this agent, or one it can hand off to) as it runs
        in this run: under this run's limits, so a handoff never escapes a budget."""
        if name == self.name:
            return self
        return self.team[name].model_copy(update={"limits": self.limits})


class Agent:
    """An agent: instructions, a model and tools.

    Args:
        name: stable name clients start runs by (``ratchet run NAME``).
        instructions: the system prompt.
        model: ``"local"`` (embedded model) or ``"<provider>:<model>"``.
        tools: functions decorated with :func:`ratchet.tool`, other agents as
            tools (:meth:`as_tool`): sub-agents, each call a child workflow, and MCP
            servers (:class:`ratchet.mcp.MCPServer`), whose tools are discovered when a
            run starts.
        handoffs: agents (or :class:`ratchet.Handoff` s) the model may hand the
            conversation to: the target takes over the run with its own instructions,
            model, tools, policy and output type. Offered to the model as
            ``transfer_to_<agent>`` tools. The run's ``limits`` stay those of the
            agent it started with (a handoff never escapes a budget).
        limits: turn, repair, timeout and retry bounds.
        tool_mode: force ``native`` or ``json_schema`` tool calling.
        temperature: sampling temperature passed to the provider.
        max_tokens: output token cap per model call.
        model_task_queue: run model calls on this task queue (e.g. one per
            provider, to rate-limit it separately).
        policy: which tool calls are allowed, denied or need approval.
        max_concurrent_runs: at most this many runs of the agent work at once;
            runs beyond it wait in arrival order, with status ``queued``.
        max_concurrent_runs_per_tenant: the same cap per tenant, for runs started
            with ``AgentClient.start(tenant=...)``.
        stream: stream model replies to subscribers as they are written (``token``
            events, ``RunHandle.stream_text``), where the provider supports it. Only
            the final message enters the history either way.
        output_type: what the final answer is, instead of text: a pydantic model, a
            dataclass, a ``TypedDict``, a list of them, or ``int``, ``float``, ``bool``
            or ``str`` (see :mod:`ratchet.output`). The run returns its JSON
            (``RunResult.output``, ``RunResult.data``); ``RunHandle.result(
            output_type=...)`` gives it back typed.
        output_validators: functions that judge each well-formed final answer (the
            typed output, or the text without ``output_type``) and may reject it with
            a message the model gets to repair it: raise :class:`ratchet.OutputRejected`
            or return the message. They run in an activity, in order; they double as
            output guardrails.
        input_guardrails: checks of each user message (the prompt, and each chat
            message) before any model sees it: functions taking the text and returning
            None or a rejection message (or raising :class:`ratchet.InputRejected`), and
            :class:`ratchet.ModelGuardrail` s. They run in an activity, in order; the
            first that trips ends the run with :class:`ratchet.GuardrailTripped`.
    """

    def __init__(
        self,
        name: str,
        *,
        instructions: str,
        model: str = "local",
        tools: Iterable[Tool | AgentTool | MCPServer] = (),
        handoffs: Iterable[Agent | Handoff] = (),
        limits: Limits | None = None,
        tool_mode: ToolMode | None = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
        model_task_queue: str | None = None,
        policy: Policy | None = None,
        max_concurrent_runs: int | None = None,
        max_concurrent_runs_per_tenant: int | None = None,
        stream: bool = True,
        output_type: Any = None,
        output_validators: Iterable[OutputValidator] = (),
        input_guardrails: Iterable[InputGuardrail | ModelGuardrail] = (),
    ) -> None:
        check_agent_name(name)
        for label, cap in (
            ("max_concurrent_runs", max_concurrent_runs),
            ("max_concurrent_runs_per_tenant", max_concurrent_runs_per_tenant),
        ):
            if cap is not None and cap < 1:
                raise ConfigError(f"agent {name!r}: {label} must be at least 1, got {cap}")
        self.max_concurrent_runs = max_concurrent_runs
        self.max_concurrent_runs_per_tenant = max_concurrent_runs_per_tenant
        parse_model(model)
        self.name = name
        self.instructions = instructions
        self.model = model
        self.tools: dict[str, Tool] = {}
        self.subagents: dict[str, AgentTool] = {}
        self.handoffs: dict[str, Handoff] = {}
        self.mcp_servers: dict[str, MCPServer] = {}
        for t in tools:
            if isinstance(t, MCPServer):
                if t.name in self.mcp_servers:
                    raise ConfigError(
                        f"agent {name!r}: two MCP servers are named {t.name!r}; pass name=..."
                    )
                self.mcp_servers[t.name] = t
                continue
            if isinstance(t, Agent):
                raise ConfigError(
                    f"agent {name!r}: agent {t.name!r} is not a tool; offer it as one with "
                    f"{t.name}.as_tool(description=...), or hand off to it with handoffs=[...]"
                )
            if not isinstance(t, Tool | AgentTool):
                raise ConfigError(
                    f"agent {name!r}: {t!r} is not a tool; decorate the function with @ratchet.tool"
                )
            if t.name in self.tools or t.name in self.subagents:
                raise ConfigError(f"agent {name!r}: two tools are named {t.name!r}")
            if isinstance(t, AgentTool):
                self.subagents[t.name] = t
            else:
                self.tools[t.name] = t
        for target in handoffs:
            h = target if isinstance(target, Handoff) else _as_handoff(name, target)
            if h.name in self.tools or h.name in self.subagents or h.name in self.handoffs:
                raise ConfigError(
                    f"agent {name!r}: handoff tool {h.name!r} (to agent {h.agent.name!r}) "
                    "clashes with another tool or handoff of the same name"
                )
            self.handoffs[h.name] = h
        self.output_type: Any = output_type
        self.output_adapter: TypeAdapter[Any] | None = None
        self.output: OutputSpec | None = None
        if output_type is not None:
            if OUTPUT_TOOL in self.tools:
                raise ConfigError(
                    f"agent {name!r}: a tool is named {OUTPUT_TOOL!r}, the name of the "
                    "final-answer tool of agents with an output_type; rename the tool"
                )
            self.output_adapter, self.output = output_spec(output_type)
        self.output_validators: dict[str, OutputValidator] = {}
        for fn in output_validators:
            check: str | None = getattr(fn, "__name__", None)
            if not callable(fn) or not check:
                raise ConfigError(
                    f"agent {name!r}: output validator {fn!r} is not a named function"
                )
            if check in self.output_validators:
                raise ConfigError(f"agent {name!r}: two output validators are named {check!r}")
            self.output_validators[check] = fn
        self.input_guardrails: dict[str, InputGuardrail | ModelGuardrail] = {}
        for rail in input_guardrails:
            guardrail = guardrail_name(rail)
            if guardrail in self.input_guardrails:
                raise ConfigError(f"agent {name!r}: two input guardrails are named {guardrail!r}")
            self.input_guardrails[guardrail] = rail
        self.limits = limits or Limits()
        self.tool_mode = tool_mode
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.model_task_queue = model_task_queue
        self.stream = stream
        self.policy = policy or Policy()
        every_tool = [*self.tools, *self.subagents, *self.handoffs]
        for rule in self.policy.rules:
            # MCP tools are known only once discovered, when a run starts.
            if rule.tool != "*" and rule.tool not in every_tool and not self.mcp_servers:
                raise ConfigError(
                    f"agent {name!r}: policy rule {rule.label()!r} names tool {rule.tool!r}, "
                    f"which the agent does not have (tools: {', '.join(every_tool) or 'none'})"
                )

    def as_tool(
        self, *, description: str, name: str | None = None, timeout: float | None = None
    ) -> AgentTool:
        """This agent as a tool of another agent: a sub-agent.

        Each call runs this agent as a child workflow of the calling run, with the
        call's ``input`` as its prompt, and answers with the child's final answer.

        Args:
            description: what the agent does, for the calling model.
            name: the tool's name (default: the agent's name, '.' as '_').
            timeout: seconds the child run may take in all, continue-as-new included
                (default: no limit of its own; its budgets and approval deadlines
                apply). A child past it is a tool error the parent's model reads.
        """
        return AgentTool(self, description=description, name=name, timeout=timeout)

    def reachable(self) -> dict[str, Agent]:
        """Every agent a run of this one can reach (itself, its sub-agents and handoff
        targets, theirs, and so on), by name: what a worker hosting it must host.

        Raises:
            ConfigError: two different agents share a name.
        """
        found: dict[str, Agent] = {}
        todo: list[Agent] = [self]
        while todo:
            agent = todo.pop()
            known = found.get(agent.name)
            if known is agent:
                continue
            if known is not None:
                raise ConfigError(
                    f"two different agents are named {agent.name!r} (reached from agent "
                    f"{self.name!r} through its sub-agents or handoffs); give them distinct names"
                )
            found[agent.name] = agent
            todo += [t.agent for t in agent.subagents.values()]
            todo += [h.agent for h in agent.handoffs.values()]
        return found

    def spec(self, *, model: str | None = None) -> AgentSpec:
        """The snapshot a run records; ``model`` overrides the model of the agent and of
        those it can hand off to."""
        if model is not None:
            parse_model(model)
        spec = self._own_spec(model)
        if not self.handoffs:
            return spec
        team: dict[str, AgentSpec] = {}
        todo = [h.agent for h in self.handoffs.values()]
        while todo:
            agent = todo.pop(0)
            if agent.name == self.name or agent.name in team:
                if agent.name in team and team[agent.name] != agent._own_spec(model):
                    raise ConfigError(
                        f"agent {self.name!r} can hand off to two different agents named "
                        f"{agent.name!r}; give them distinct names"
                    )
                continue
            team[agent.name] = agent._own_spec(model)
            todo += [h.agent for h in agent.handoffs.values()]
        return spec.model_copy(update={"team": team})

    def _own_spec(self, model: str | None) -> AgentSpec:
        return AgentSpec(
            name=self.name,
            instructions=self.instructions,
            model=model or self.model,
            tool_mode=self.tool_mode,
            tools=[t.spec() for t in self.tools.values()]
            + [a.spec() for a in self.subagents.values()]
            + [h.spec() for h in self.handoffs.values()],
            limits=self.limits,
            temperature=self.temperature,
            max_tokens=self.max_tokens,
            model_task_queue=self.model_task_queue,
            policy=self.policy,
            max_concurrent_runs=self.max_concurrent_runs,
            max_concurrent_runs_per_tenant=self.max_concurrent_runs_per_tenant,
            stream=self.stream,
            output=self.output,
            output_validators=list(self.output_validators),
            input_guardrails=list(self.input_guardrails),
        )

    def __repr__(self) -> str:
        return f"Agent({self.name!r}, model={self.model!r}, tools={list(self.tools)})"


def _as_handoff(name: str, target: object) -> Handoff:
    if not isinstance(target, Agent):
        raise ConfigError(
            f"agent {name!r}: handoff {target!r} is not an agent; pass Agent objects "
            "(or ratchet.Handoff(agent, description=...))"
        )
    return Handoff(target)
