"""The eval workflow: every case of an eval as a child run of the agent under test.

An eval is durable like any run: its cases are child workflows (``ratchet.Agent``
runs with ``RunInput.fixtures``), so they go through the agent's concurrency caps and
the providers' rate limits like any run, and a worker that dies mid-eval costs
nothing: the next worker replays this workflow, the finished cases keep their
results, and the running ones go on. Scoring is not done here: the client reads each
case's run (``ratchet.evals``).
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.exceptions import ApplicationError, ChildWorkflowError
from temporalio.workflow import ParentClosePolicy

with workflow.unsafe.imports_passed_through():
    from .._eval_protocol import (
        EVAL_WORKFLOW_TYPE,
        EvalCaseOutcome,
        EvalCaseRun,
        EvalInput,
        EvalRunResult,
    )
    from .._protocol import WORKFLOW_TYPE, RunInput, RunResult
    from .._search import AGENT, STATUS

__all__ = ["EvalWorkflow"]


@workflow.defn(name=EVAL_WORKFLOW_TYPE)
class EvalWorkflow:
    """Runs an eval's cases against one agent and collects how each ended."""

    def __init__(self) -> None:
        self._done = 0

    @workflow.query(name="ratchet.eval_progress")
    def progress(self) -> int:
        """How many cases have ended."""
        return self._done

    @workflow.run
    async def run(self, inp: EvalInput) -> EvalRunResult:
        gate = asyncio.Semaphore(max(1, inp.max_parallel))

        async def one(index: int, case: EvalCaseRun) -> EvalCaseOutcome:
            async with gate:
                outcome = await self._case(inp, index, case)
            self._done += 1
            return outcome

        outcomes = await asyncio.gather(*(one(i, c) for i, c in enumerate(inp.cases)))
        return EvalRunResult(agent=inp.agent, model=inp.model, cases=list(outcomes))

    async def _case(self, inp: EvalInput, index: int, case: EvalCaseRun) -> EvalCaseOutcome:
        me = workflow.info().workflow_id
        run_id = f"{me}.case{index}"
        child = RunInput(
            version=inp.run_version,
            agent=inp.agent,
            prompt=case.prompt,
            model=inp.model or case.model,
            search_attributes=inp.search_attributes,
            tenant=case.tenant,
            fixtures=case.fixtures,
        )
        try:
            result: RunResult = await workflow.execute_child_workflow(
                WORKFLOW_TYPE,
                child,
                id=run_id,
                result_type=RunResult,
                parent_close_policy=ParentClosePolicy.REQUEST_CANCEL,
                execution_timeout=(
                    timedelta(seconds=inp.case_timeout_seconds)
                    if inp.case_timeout_seconds
                    else None
                ),
                task_timeout=timedelta(seconds=5),
                memo={"agent": inp.agent, "eval": me, "case": case.case_id},
                search_attributes=_search_attributes(inp),
                static_summary=f"eval case {case.case_id} ({inp.agent}, eval {me})",
            )
        except ChildWorkflowError as e:
            cause = e.cause
            error_type = cause.type if isinstance(cause, ApplicationError) else None
            message = cause.message if isinstance(cause, ApplicationError) else str(cause or e)
            return EvalCaseOutcome(
                case_id=case.case_id,
                run_id=run_id,
                completed=False,
                error_type=error_type or type(cause).__name__,
                error=message,
            )
        return EvalCaseOutcome(
            case_id=case.case_id,
            run_id=run_id,
            completed=True,
            output=result.output,
            usage=result.usage,
            cost_usd=result.cost_usd,
        )


def _search_attributes(inp: EvalInput) -> TypedSearchAttributes | None:
    """A case's run is listed as a run of the agent under test, as any run is."""
    if not inp.search_attributes:
        return None
    return TypedSearchAttributes(
        [SearchAttributePair(AGENT, inp.agent), SearchAttributePair(STATUS, "running")]
    )
