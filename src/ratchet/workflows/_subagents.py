"""Sub-agent calls: another agent's run as a Temporal child workflow of this one.

The child has its own history (and its own continue-as-new); this run's history
records only the child's start and its result (the final answer and its totals).
The child may spend at most the budgets this run has left, its totals roll up into
this run's, and cancelling this run cancels it (and, through it, its own children).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.exceptions import (
    ApplicationError,
    CancelledError,
    ChildWorkflowError,
    TerminatedError,
    TimeoutError,
    WorkflowAlreadyStartedError,
)
from temporalio.workflow import ParentClosePolicy

with workflow.unsafe.imports_passed_through():
    from .._protocol import WORKFLOW_TYPE, AgentSpec, RunInput, RunResult
    from .._search import AGENT, STATUS, TENANT
    from ..errors import RunErrorType
    from ..messages import Message, ToolCall, Usage
    from ..team import subagent_run_id
    from ..tools import ToolSpec

from ._budgets import Budgets
from ._status import Status

__all__ = ["SubAgents"]

_FATAL_CHILD_ERRORS: tuple[RunErrorType, ...] = ("UnknownAgent", "ConfigError")

_SHARED_BUDGETS = ("max_total_tokens", "max_cost_usd", "max_wall_seconds")
"""Budgets a child shares with its parent (capped by what the parent has left): one
spent in the child is spent for the parent too. A child's own ``max_turns`` is not:
the parent's model reads that failure like any tool error."""
"""A child failing with these fails this run too: no model turn can mend them."""


class SubAgents:
    """The sub-agent runs this run starts."""

    def __init__(self, inp: RunInput, status: Status, budgets: Budgets) -> None:
        self._input = inp
        self._status = status
        self._budgets = budgets

    async def call(
        self,
        spec: AgentSpec,
        tool: ToolSpec,
        activity_id: str,
        call: ToolCall,
        arguments: dict[str, Any],
        *,
        shares: int = 1,
    ) -> Message:
        """Run the sub-agent for one call; its final answer (or failure) as the tool message.

        A budget of this run (tokens, cost, wall time) spent anywhere in the child's
        tree fails this run with ``BudgetExceeded``, naming the run that spent it.
        ``shares``: sub-agents this turn calls at once (they split the budgets left).
        """
        assert tool.agent is not None
        me = workflow.info().workflow_id
        run_id = subagent_run_id(me, activity_id)
        child = RunInput(
            # The parent's: a parent started as version 1 (older workers on its queue)
            # starts its children so too.
            version=self._input.version,
            agent=tool.agent,
            prompt=str(arguments["input"]),
            # A run's model override is the whole tree's (e.g. every agent on a test model).
            model=self._input.model,
            search_attributes=self._input.search_attributes,
            tenant=self._input.tenant,
            inherited=self._budgets.left_for_child(spec, parent_run=me, shares=shares),
        )
        try:
            result: RunResult = await workflow.execute_child_workflow(
                WORKFLOW_TYPE,
                child,
                id=run_id,
                result_type=RunResult,
                # A failed or terminated parent stops its children (cancellation of this
                # run reaches them anyway, through the awaited call).
                parent_close_policy=ParentClosePolicy.REQUEST_CANCEL,
                execution_timeout=(
                    timedelta(seconds=tool.timeout_seconds) if tool.timeout_seconds > 0 else None
                ),
                task_timeout=timedelta(seconds=5),
                memo={
                    "agent": tool.agent,
                    "parent": me,
                    **({"tenant": self._input.tenant} if self._input.tenant else {}),
                },
                search_attributes=self._search_attributes(tool.agent),
                static_summary=f"{tool.agent} (sub-agent of {me})",
            )
        except ChildWorkflowError as e:
            return self._failed(tool, run_id, call, e)
        except WorkflowAlreadyStartedError:
            return Message.tool(
                call,
                f"error: sub-agent {tool.agent!r} could not start: a run with id {run_id!r} "
                "already exists (not this call's).",
                is_error=True,
            )
        self._status.subagent_finished(result.usage, result.cost_usd, result.unpriced_calls)
        return Message.tool(call, result.output)

    def _failed(
        self, tool: ToolSpec, run_id: str, call: ToolCall, error: ChildWorkflowError
    ) -> Message:
        """What a failed child means for this run: it ends it, or the model is told."""
        cause = error.cause
        agent = tool.agent
        if isinstance(cause, ApplicationError):
            details = _details(cause)
            spent = details.get("spent") or {}
            self._status.subagent_finished(
                Usage.model_validate(spent.get("usage") or {}),
                float(spent.get("cost_usd") or 0.0),
                int(spent.get("unpriced_calls") or 0),
            )
            spender = str(details.get("run_id") or run_id)
            if cause.type == "BudgetExceeded" and details.get("budget") in _SHARED_BUDGETS:
                budget: dict[str, Any] = {
                    k: details[k] for k in ("budget", "used", "limit") if k in details
                }
                self._status.fail(
                    "BudgetExceeded",
                    f"sub-agent {agent!r} (run {run_id}) stopped: run {spender} spent its "
                    f"budget: {cause.message}",
                    details={**budget, "run_id": spender},
                )
            if cause.type in _FATAL_CHILD_ERRORS:
                self._status.fail(
                    "ConfigError",
                    f"sub-agent {agent!r} (run {run_id}) could not start: {cause.message}",
                    details={"run_id": spender},
                )
            why = f"{cause.type}: {cause.message}"
        elif isinstance(cause, CancelledError):
            why = "its run was cancelled"
        elif isinstance(cause, TerminatedError):
            why = "its run was terminated"
        elif isinstance(cause, TimeoutError):
            why = f"it did not finish within its timeout ({tool.timeout_seconds:g} s)"
        else:
            why = str(cause or error)
        self._status.set_step(f"sub-agent {agent} failed")
        return Message.tool(
            call, f"error: sub-agent {agent!r} (run {run_id}) failed: {why}", is_error=True
        )

    def _search_attributes(self, agent: str) -> TypedSearchAttributes | None:
        if not self._input.search_attributes:
            return None
        pairs: list[SearchAttributePair[str]] = [
            SearchAttributePair(AGENT, agent),
            # "running" from the start: the run upserts only when its state changes
            # (RunInput.version 2), so it need not say so again.
            SearchAttributePair(STATUS, "running"),
        ]
        tenant = workflow.info().typed_search_attributes.get(TENANT)
        if tenant is not None:
            # Set only when this run has it, i.e. the namespace indexes it.
            pairs.append(SearchAttributePair(TENANT, tenant))
        return TypedSearchAttributes(pairs)


def _details(error: ApplicationError) -> dict[str, Any]:
    first = error.details[0] if error.details else None
    return first if isinstance(first, dict) else {}
