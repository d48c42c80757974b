"""Forks: a new run that starts from a step of a recorded one.

A fork's first model call sends exactly what the parent's model saw at the step (apart
from the fork's edit); from then on the fork runs live. Its transcript is the parent's,
shared by reference: the fork starts from a chain node the parent stored in the
transcript store, so nothing is copied and no tool before the step runs again.

Steps are named as ``ratchet trace`` shows them:

- ``turnN``: the model call of turn N (``turn3``): the fork's first call sends that
  call's prompt. The call's activity id (``turn3-model``, ``turn3-model-2`` after a
  compaction) names one call of a turn; ``turnN`` is the turn's last call.
- ``msg:K``: the transcript up to and including message K (0 is the system message),
  then the model is called. Message K must be a user message, or the tool result that
  answers the last of its turn's tool calls.

Everything here is read from the parent's run events (``ratchet.events``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from . import events as ev
from ._prompts import PLACEHOLDER
from ._protocol import ForkStart
from .agent import AgentSpec, parse_model
from .errors import ConfigError
from .messages import Message, chain_hash, handed_over, message_hash

__all__ = ["ForkPlan", "plan_fork"]

_STEP = re.compile(r"(?:turn(\d+)(?:-model(?:-\d+)?)?|msg:(\d+))\Z")
_NEEDS_STORE = (
    "the prompt at {step} continues messages that are not in the run's history (a fork "
    "of a fork, or a run compacted): pass the workers' transcript store "
    "(--transcript-store, or store=... in Python) to fork there"
)
_LISTED = 30
"""How many valid steps an error names before it shortens the list."""


@dataclass
class _Call:
    call_id: str
    turn: int
    prompt: list[Message]
    agent: str | None
    """The team member that made the call (after a handoff); None: the run's own agent."""


@dataclass
class _Parent:
    """What a fork needs to know of its parent, read from the parent's events."""

    started: ev.RunStarted | None = None
    spec: AgentSpec | None = None
    calls: list[_Call] = field(default_factory=list)
    messages: dict[int, Message] = field(default_factory=dict)
    message_turn: dict[int, int] = field(default_factory=dict)
    """The turn of the model call that would follow each message."""
    message_agent: dict[int, str | None] = field(default_factory=dict)
    heads: set[str] = field(default_factory=set)
    """Chain heads the transcript store holds (every prefix of a finished call's prompt
    and reply)."""
    bodies: set[str] = field(default_factory=set)
    """Hashes of messages the store holds."""


@dataclass(frozen=True)
class ForkPlan:
    """A fork of a recorded run, ready to start."""

    parent: ev.RunStarted
    fork: ForkStart
    prompt: list[Message]
    """What the fork's first model call sends (ratchet's messages, system first)."""


def plan_fork(
    events: Sequence[ev.RunEvent],
    *,
    at: str,
    edit_message: str | None = None,
    instructions: str | None = None,
    model: str | None = None,
) -> ForkPlan:
    """Where a fork of the run these events describe starts, and what it sends first.

    Raises:
        ConfigError: ``at`` names no step of the run (the message lists the valid
            ones), ``edit_message`` is given for a step that does not end with a user
            message, or an override is empty or not a model string.
    """
    parent = _read(events)
    if parent.started is None or parent.spec is None:
        raise ConfigError("the run has no start event or agent snapshot to fork from")
    step, prompt, turn, agent = _resolve(parent, at.strip())
    spec = parent.spec
    if instructions is not None:
        if not instructions.strip():
            raise ConfigError("the fork's instructions are empty: give the agent instructions")
        spec = _changed(spec, agent, instructions=instructions)
        prompt = handed_over(prompt, instructions)
    if model is not None:
        parse_model(model)
        spec = _changed(spec, agent, model=model)
    if edit_message is not None:
        if not edit_message.strip():
            raise ConfigError("the edited message is empty: say what the user asks instead")
        if prompt[-1].role != "user":
            ends = ", ".join(_steps(parent, user_only=True)) or "none"
            raise ConfigError(
                f"an edited message replaces the user message a step ends with, but "
                f"{step} ends with a {prompt[-1].role} message; steps that end with a "
                f"user message: {ends}"
            )
        prompt = [*prompt[:-1], prompt[-1].model_copy(update={"content": edit_message})]
    head, offset = _shared_head(prompt, parent.heads)
    pending = prompt[offset:]
    fork = ForkStart(
        run=parent.started.run_id,
        step=step,
        spec=spec,
        agent=agent,
        turn=turn,
        head=head,
        pending=pending,
        offset=offset,
        stored=[h for m in pending if (h := message_hash(m)) in parent.bodies],
        edited_message=edit_message,
        instructions=instructions,
        model=model,
    )
    return ForkPlan(parent=parent.started, fork=fork, prompt=prompt)


def _read(events: Sequence[ev.RunEvent]) -> _Parent:
    p = _Parent()
    agent: str | None = None
    last_turn = 0
    prompts: dict[str, _Call] = {}
    for e in events:
        match e:
            case ev.RunStarted():
                p.started = e
            case ev.AgentSnapshotted() if p.spec is None:
                p.spec = e.spec
            case ev.HandedOff():
                agent = None if p.spec is not None and e.to_agent == p.spec.name else e.to_agent
            case ev.MessageRecorded() if e.index not in p.messages:
                p.messages[e.index] = e.message
                p.message_turn[e.index] = last_turn + 1
                p.message_agent[e.index] = agent
            case ev.ModelCallStarted():
                last_turn = max(last_turn, e.turn)
                call = _Call(e.call_id, e.turn, list(e.messages), agent)
                prompts[e.call_id] = call
                p.calls.append(call)
            case ev.ModelCallFinished() if e.transcript_ref and e.response is not None:
                started = prompts.get(e.call_id)
                if started is not None:
                    _learn_stored(p, [*started.prompt, e.response], e.transcript_ref)
            case _:
                pass
    return p


def _learn_stored(p: _Parent, messages: list[Message], head: str) -> None:
    """The model activity stored these messages as a chain ending at ``head``: every
    prefix of it is in the store (unless the reader could not rebuild the prompt)."""
    hashes = [message_hash(m) for m in messages]
    prefixes: list[str] = []
    node: str | None = None
    for h in hashes:
        node = chain_hash(node, h)
        prefixes.append(node)
    if node == head:
        p.heads.update(prefixes)
        p.bodies.update(hashes)


def _shared_head(prompt: list[Message], stored: set[str]) -> tuple[str | None, int]:
    """The longest prefix of ``prompt`` the store holds as a chain: its head and length."""
    head: str | None = None
    length = 0
    node: str | None = None
    for i, m in enumerate(prompt):
        node = chain_hash(node, message_hash(m))
        if node in stored:
            head, length = node, i + 1
    return head, length


def _resolve(p: _Parent, at: str) -> tuple[str, list[Message], int, str | None]:
    """The step's canonical name, the prompt there, the turn and the agent of the next call."""
    match = _STEP.match(at)
    if match is None:
        raise ConfigError(f"bad step {at!r}: {_valid(p)}")
    if match.group(1) is not None:
        turn = int(match.group(1))
        calls = [c for c in p.calls if c.turn == turn and (at.count("-") == 0 or c.call_id == at)]
        if not calls or not calls[-1].prompt:
            raise ConfigError(f"{_run(p)} has no model call {at!r}: {_valid(p)}")
        call = calls[-1]
        if any(_placeholder(m) for m in call.prompt):
            raise ConfigError(_NEEDS_STORE.format(step=at))
        name = f"turn{turn}" if call.call_id == f"turn{turn}-model" else call.call_id
        return name, list(call.prompt), turn, call.agent
    index = int(match.group(2))
    name = f"msg:{index}"
    if index not in _message_steps(p):
        raise ConfigError(f"{_run(p)} has no message step {name!r}: {_valid(p)}")
    message, turn = p.messages[index], p.message_turn[index]
    # The exact prompt the model saw right after this message, when it saw one (after
    # any compaction or handoff); else the transcript up to it.
    for c in p.calls:
        if c.turn == turn and c.prompt and c.prompt[-1] == message:
            if any(_placeholder(m) for m in c.prompt):
                raise ConfigError(_NEEDS_STORE.format(step=name))
            return name, list(c.prompt), turn, c.agent
    if any(i not in p.messages for i in range(index + 1)):
        raise ConfigError(_NEEDS_STORE.format(step=name))
    prompt = [p.messages[i] for i in range(index + 1)]
    agent = p.message_agent[index]
    if agent is not None and p.spec is not None:
        prompt = handed_over(prompt, p.spec.member(agent).instructions)
    return name, prompt, turn, agent


def _placeholder(m: Message) -> bool:
    """A note the history reader put where it could not resolve a message."""
    return m.role == "system" and (m.content or "").startswith(PLACEHOLDER)


def _message_steps(p: _Parent) -> list[int]:
    """Indices of messages the model can be called right after: user messages, and the
    tool results that complete their turn's calls."""
    out = []
    asked: set[str] = set()
    answered: set[str] = set()
    for i in sorted(p.messages):
        m = p.messages[i]
        if m.role == "assistant":
            asked = {c.id for c in m.tool_calls or []}
            answered = set()
        elif m.role == "tool" and m.tool_call_id:
            answered.add(m.tool_call_id)
            if asked and asked <= answered:
                out.append(i)
        elif m.role == "user":
            out.append(i)
    return out


def _steps(p: _Parent, *, user_only: bool = False) -> list[str]:
    """The valid steps (``user_only``: those ending with a user message), in order."""
    calls = [c for c in p.calls if c.prompt and (not user_only or c.prompt[-1].role == "user")]
    messages = [i for i in _message_steps(p) if not user_only or p.messages[i].role == "user"]
    return list(dict.fromkeys(f"turn{c.turn}" for c in calls)) + [f"msg:{i}" for i in messages]


def _run(p: _Parent) -> str:
    return f"run {p.started.run_id!r}" if p.started is not None else "the run"


def _valid(p: _Parent) -> str:
    steps = _steps(p)
    if not steps:
        return "the run has no step to fork at yet (no model call was made)"
    shown = ", ".join(steps[:_LISTED]) + (" …" if len(steps) > _LISTED else "")
    return (
        f"valid steps are {shown} (turnN: that model call's prompt; msg:K: the "
        "transcript up to message K, then a model call; see `ratchet trace`)"
    )


def _changed(spec: AgentSpec, agent: str | None, **changes: str) -> AgentSpec:
    """``spec`` with ``changes`` made to the agent that has the conversation."""
    if agent is None or agent == spec.name:
        return spec.model_copy(update=changes)
    team = {**spec.team, agent: spec.team[agent].model_copy(update=changes)}
    return spec.model_copy(update={"team": team})
