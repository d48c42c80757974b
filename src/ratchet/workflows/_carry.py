"""Carry-over: when a long run hands over to a new execution (continue-as-new), and what
it hands over. Only references and totals: the transcript stays in the transcript store.

The new execution's state objects restore their own parts from ``RunInput.carried``.
"""

from __future__ import annotations

from typing import Literal, NoReturn

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from .._protocol import AgentSpec, Carried, RunInput
    from ..messages import Message, ToolCall

from ._answers import FinalAnswers
from ._approvals import Approvals
from ._budgets import Budgets
from ._history_size import history_full
from ._mcp_sessions import MCPPins
from ._slots import RunSlots
from ._status import Status
from ._tool_calls import ToolCalls
from ._transcript import Transcript

__all__ = ["continue_as_new", "history_is_long"]


def history_is_long(spec: AgentSpec) -> bool:
    """Whether the history is long enough to hand over, with no handler in flight."""
    limits = spec.limits
    return workflow.all_handlers_finished() and history_full(
        limits.continue_as_new_after_events, limits.continue_as_new_after_bytes
    )


def continue_as_new(
    inp: RunInput,
    spec: AgentSpec,
    *,
    agent: str | None,
    status: Status,
    transcript: Transcript,
    budgets: Budgets,
    tools: ToolCalls,
    answers: FinalAnswers,
    approvals: Approvals,
    slots: RunSlots,
    pins: MCPPins,
    resume: Literal["answer", "chat"],
    answer: str,
    calls: list[ToolCall] | None,
    results: dict[str, Message | None] | None,
) -> NoReturn:
    """Hand the run to a new execution with the same id.

    ``spec`` is the run's own snapshot; ``agent`` the one a handoff gave the
    conversation to (None: the run's own).
    """
    done = {k: m for k, m in (results or {}).items() if m is not None}
    kept = transcript.handover(list(done.values()))
    carried_status = status.current.model_copy(
        update={"transcript_offset": kept.seen, "pending_approvals": []}
    )
    carried = Carried(
        spec=spec,
        status=carried_status,
        started=budgets.started,
        head=kept.head,
        pending=kept.pending,
        stored=kept.stored,
        resume=resume,
        answer=answer,
        turns_used=budgets.turns_used,
        repair_streak=tools.repair_streak,
        output_repairs=answers.repair_streak,
        calls=calls or [],
        results=done,
        waiting=list(approvals.deferred.values()),
        slots=list(slots.held),
        budgets=dict(budgets.raised),
        agent=agent,
        mcp_sessions=dict(pins.queues),
    )
    status.set_step(f"continuing as new (execution {carried_status.execution + 1})")
    workflow.continue_as_new(inp.model_copy(update={"carried": carried}))
