"""Eval cases from recorded runs, and what a case's run did, both read from run events.

Like every reader of a run, this consumes ``ratchet.events`` (the one history reader):
a recorded run gives a case its prompt, its tool results (the fixtures its run
replays) and the answer and tool calls to compare with; a case's run gives its answer,
its tool calls, the calls no recorded result answered, its cost and its time.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from .. import events as ev
from .._tool_fixtures import NO_RECORDED_RESULT, RecordedToolCall, ToolFixtures
from ..errors import ConfigError

__all__ = ["CaseRun", "EvalCase", "ToolCallMade", "case_of", "case_run_of"]


class ToolCallMade(BaseModel):
    """A tool call a run made: its tool and arguments."""

    model_config = ConfigDict(frozen=True)

    tool: str
    arguments: dict[str, Any]


class EvalCase(BaseModel):
    """A recorded run as an eval case: its input, its tool results, what it answered."""

    model_config = ConfigDict(frozen=True)

    case_id: str
    """The recorded run's id."""
    agent: str
    prompt: str
    model: str | None = None
    tenant: str | None = None
    fixtures: ToolFixtures
    """The tool results the case's run replays (no tool runs)."""
    answer: str | None = None
    """The recorded run's final answer."""
    completed: bool = True
    tool_calls: list[ToolCallMade] = Field(default_factory=list)
    """The tool calls the recorded run made, in order."""
    cost_usd: float | None = None
    seconds: float | None = None
    tokens: int = 0


class CaseRun(BaseModel):
    """What a run of a case did (a case's run, or the recorded run itself)."""

    model_config = ConfigDict(frozen=True)

    case_id: str
    run_id: str
    completed: bool
    answer: str | None = None
    error: str | None = None
    tool_calls: list[ToolCallMade] = Field(default_factory=list)
    unrecorded: list[ToolCallMade] = Field(default_factory=list)
    """Calls the recorded run never made: answered with an error, no tool ran."""
    tools_ran: list[str] = Field(default_factory=list)
    """Tools a worker ran for this run (none for an eval case: it replays)."""
    cost_usd: float = 0.0
    seconds: float = 0.0
    tokens: int = 0


def case_of(run_id: str, events: Sequence[ev.RunEvent]) -> EvalCase:
    """The eval case of a recorded run.

    Raises:
        ConfigError: the run has not ended, or is a chat (a chat's later messages are
            not in one prompt).
    """
    started = next((e for e in events if isinstance(e, ev.RunStarted)), None)
    finished = next((e for e in events if isinstance(e, ev.RunFinished)), None)
    if started is None or finished is None:
        raise ConfigError(f"run {run_id!r} has not ended: only ended runs can be eval cases")
    if started.chat:
        raise ConfigError(
            f"run {run_id!r} is a chat: an eval case replays a run with one prompt; "
            "choose runs started with `ratchet run`"
        )
    tool_messages = {
        e.message.tool_call_id: e.message
        for e in events
        if isinstance(e, ev.MessageRecorded) and e.message.role == "tool"
    }
    recorded: list[RecordedToolCall] = []
    for e in events:
        if isinstance(e, ev.ToolCallStarted) and (m := tool_messages.get(e.call_id)) is not None:
            recorded.append(
                RecordedToolCall(
                    tool=e.tool,
                    arguments=e.arguments,
                    content=m.content or "",
                    is_error=m.is_error,
                )
            )
    run = _summary(run_id, run_id, events)
    return EvalCase(
        case_id=run_id,
        agent=started.agent,
        prompt=started.prompt,
        model=started.model,
        tenant=started.tenant,
        fixtures=ToolFixtures(calls=recorded, source_run=run_id),
        answer=finished.output,
        completed=finished.outcome == "completed",
        tool_calls=[ToolCallMade(tool=c.tool, arguments=c.arguments) for c in recorded],
        cost_usd=finished.cost_usd,
        seconds=run.seconds,
        tokens=run.tokens,
    )


def case_run_of(case_id: str, run_id: str, events: Sequence[ev.RunEvent]) -> CaseRun:
    """What the run ``run_id`` of case ``case_id`` did."""
    return _summary(case_id, run_id, events)


def _summary(case_id: str, run_id: str, events: Sequence[ev.RunEvent]) -> CaseRun:
    started = next((e for e in events if isinstance(e, ev.RunStarted)), None)
    finished = next((e for e in events if isinstance(e, ev.RunFinished)), None)
    calls: list[ToolCallMade] = []
    unrecorded: list[ToolCallMade] = []
    ran: list[str] = []
    for e in events:
        if isinstance(e, ev.ToolCallStarted):
            calls.append(ToolCallMade(tool=e.tool, arguments=e.arguments))
            if not e.replayed:
                ran.append(e.tool)
        elif isinstance(e, ev.ToolCallRejected) and e.reason.startswith(NO_RECORDED_RESULT):
            made = ToolCallMade(tool=e.tool, arguments=_parsed(e.arguments))
            calls.append(made)
            unrecorded.append(made)
    usage = finished.usage if finished is not None else None
    seconds = (
        (finished.at - started.at).total_seconds()
        if started is not None and finished is not None
        else 0.0
    )
    return CaseRun(
        case_id=case_id,
        run_id=run_id,
        completed=finished is not None and finished.outcome == "completed",
        answer=finished.output if finished is not None else None,
        error=(
            f"{finished.error_type or finished.outcome}: {finished.error or ''}".rstrip(": ")
            if finished is not None and finished.outcome != "completed"
            else None
        ),
        tool_calls=calls,
        unrecorded=unrecorded,
        tools_ran=ran,
        cost_usd=(finished.cost_usd or 0.0) if finished is not None else 0.0,
        seconds=seconds,
        tokens=usage.total_tokens if usage is not None else 0,
    )


def _parsed(arguments: str) -> dict[str, Any]:
    try:
        value = json.loads(arguments)
    except ValueError:
        return {"(unparsed)": arguments}
    return value if isinstance(value, dict) else {"(unparsed)": arguments}
