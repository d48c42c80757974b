"""Running an eval: choose recorded runs, run them again as the eval workflow's cases,
score both with pydantic-evals, and compare with a baseline."""

from __future__ import annotations

import builtins
import uuid
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict
from pydantic_evals import Case, Dataset
from pydantic_evals.dataset import increment_eval_metric, set_eval_attribute
from pydantic_evals.reporting import EvaluationReport
from temporalio.client import WorkflowFailureError

from .._eval_protocol import EVAL_WORKFLOW_TYPE, EvalCaseRun, EvalInput, EvalRunResult
from .._hosting import check_hosted
from .._protocol import WORKFLOW_TYPE
from .._search import AGENT, RUN_ATTRIBUTES
from ..agent import check_agent_name
from ..client import AgentClient, _run_version
from ..errors import ConfigError
from ..events import RunEvent
from ..transcripts import TranscriptStore
from ._cases import CaseRun, EvalCase, case_of, case_run_of
from ._evaluators import Checks
from ._report import EvalReport, baseline_from, report_of

__all__ = [
    "CaseInput",
    "evaluate_runs",
    "recorded_cases",
    "recorded_runs",
    "run_cases",
    "run_eval",
    "score",
    "score_recorded",
]


class CaseInput(BaseModel):
    """What a case gives the agent (pydantic-evals' ``Case.inputs``)."""

    model_config = ConfigDict(frozen=True)

    case_id: str
    prompt: str


async def recorded_cases(
    client: AgentClient,
    *,
    runs: Sequence[str] = (),
    agent: str | None = None,
    query: str | None = None,
    limit: int = 20,
    store: TranscriptStore | None = None,
) -> list[EvalCase]:
    """Eval cases from recorded runs: the runs named, or the latest completed runs of
    ``agent`` and/or matching a visibility ``query`` (e.g. ``"StartTime > '2026-11-01'"``).

    Raises:
        ConfigError: no run chosen or found, or a chosen run that cannot be a case
            (still running, a chat).
    """
    ids = list(runs)
    if not ids:
        if agent is None and query is None:
            raise ConfigError(
                "choose the recorded runs to evaluate: name them (--run ID), or give an "
                "agent (--from-agent NAME) or a visibility query (--query ...)"
            )
        ids = await _completed_runs(client, agent, query, limit)
        if not ids:
            where = " and ".join(
                p for p in (f"agent {agent!r}" if agent else "", query and f"{query!r}") if p
            )
            raise ConfigError(
                f"no completed run matches {where} on namespace "
                f"{client.temporal.namespace!r}: record runs first (`ratchet run`)"
            )
        # Listed runs that cannot be cases (chats) are left out; named ones are refused.
        listed = []
        for i in ids:
            try:
                listed.append(case_of(i, await _events(client, i, store)))
            except ConfigError:
                continue
        return listed
    return [case_of(i, await _events(client, i, store)) for i in ids]


async def _completed_runs(
    client: AgentClient, agent: str | None, query: str | None, limit: int
) -> list[str]:
    if agent is not None:
        check_agent_name(agent)
    indexed = await client.has_search_attributes()
    where = f"WorkflowType = '{WORKFLOW_TYPE}' AND ExecutionStatus = 'Completed'"
    if agent is not None and indexed:
        where += f" AND {AGENT.name} = '{agent}'"
    if query:
        where += f" AND ({query})"
    ids: list[str] = []
    async for execution in client.temporal.list_workflows(where):
        memo = await execution.memo()
        if "eval" in memo:
            continue  # an eval's own case run
        if agent is not None and memo.get("agent") != agent:
            continue
        ids.append(execution.id)
        if len(ids) >= limit:
            break
    return ids


async def _events(client: AgentClient, run_id: str, store: TranscriptStore | None) -> list[Any]:
    events: list[RunEvent] = []
    async for e in client.get(run_id).events(follow=False, store=store, tokens=False):
        events.append(e)
    return events


async def run_cases(
    client: AgentClient,
    agent: str,
    cases: Sequence[EvalCase],
    *,
    model: str | None = None,
    eval_id: str | None = None,
    max_parallel: int = 4,
    store: TranscriptStore | None = None,
) -> tuple[str, list[CaseRun]]:
    """Run ``cases`` against ``agent`` as one durable eval workflow (its cases are child
    runs that replay the recorded tool results), wait for it, and read each case's run.

    ``eval_id`` names the eval workflow: the same id again attaches to it (e.g. after
    the client stopped). Returns the eval's id and each case's run, in case order.
    """
    check_agent_name(agent)
    if not cases:
        raise ConfigError("an eval needs at least one case")
    eval_id = eval_id or f"eval-{agent}-{uuid.uuid4().hex[:10]}"
    # Refused here, not in 20 failed cases, when no worker on the queue hosts the agent.
    hosting = await check_hosted(client.temporal, client.task_queue, agent)
    inp = EvalInput(
        agent=agent,
        model=model,
        max_parallel=max_parallel,
        run_version=_run_version(hosting),
        search_attributes=await client._registered_attributes() >= RUN_ATTRIBUTES,
        cases=[
            EvalCaseRun(
                case_id=c.case_id,
                prompt=c.prompt,
                fixtures=c.fixtures,
                model=c.model,
                tenant=c.tenant,
            )
            for c in cases
        ],
    )
    from temporalio.common import WorkflowIDConflictPolicy

    handle = await client.temporal.start_workflow(
        EVAL_WORKFLOW_TYPE,
        inp,
        id=eval_id,
        task_queue=client.task_queue,
        result_type=EvalRunResult,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        memo={"eval_agent": agent},
        static_summary=f"eval of {agent}: {len(cases)} case(s)",
    )
    try:
        result = await handle.result()
    except WorkflowFailureError as e:
        raise ConfigError(f"eval {eval_id!r} failed: {e.cause or e}") from e
    runs = [
        case_run_of(o.case_id, o.run_id, await _events(client, o.run_id, store))
        for o in result.cases
    ]
    return eval_id, runs


async def evaluate_runs(
    cases: Sequence[EvalCase],
    runs: Sequence[CaseRun],
    checks: Checks,
    *,
    name: str,
) -> EvaluationReport[CaseInput, str, EvalCase]:
    """Score each case's run with pydantic-evals (``runs`` in case order)."""
    by_case = {r.case_id: r for r in runs}
    recorded = {c.case_id: c for c in cases}

    async def answer_of(inputs: CaseInput) -> str:
        run = by_case[inputs.case_id]
        set_eval_attribute("run_id", run.run_id)
        set_eval_attribute("tool_calls", [c.model_dump() for c in run.tool_calls])
        set_eval_attribute(
            "recorded_tool_calls", [c.model_dump() for c in recorded[inputs.case_id].tool_calls]
        )
        set_eval_attribute("unrecorded", [c.model_dump() for c in run.unrecorded])
        increment_eval_metric("cost_usd", run.cost_usd)
        increment_eval_metric("seconds", round(run.seconds, 3))
        if not run.completed:
            raise CaseRunFailed(f"run {run.run_id} did not complete: {run.error}")
        return run.answer or ""

    dataset: Dataset[CaseInput, str, EvalCase] = Dataset(
        name=name,
        cases=[
            Case(
                name=c.case_id,
                inputs=CaseInput(case_id=c.case_id, prompt=c.prompt),
                expected_output=c.answer,
                metadata=c,
            )
            for c in cases
        ],
        evaluators=checks.evaluators(),
    )
    # Bounded: an LLM judge calls its model once per case.
    return await dataset.evaluate(answer_of, name=name, progress=False, max_concurrency=8)


class CaseRunFailed(Exception):
    """A case's run failed: the case fails (pydantic-evals reports it as an error)."""


def recorded_runs(cases: Sequence[EvalCase]) -> builtins.list[CaseRun]:
    """The recorded runs as case runs, to score the baseline with the same checks."""
    return [
        CaseRun(
            case_id=c.case_id,
            run_id=c.case_id,
            completed=c.completed,
            answer=c.answer,
            tool_calls=c.tool_calls,
            cost_usd=c.cost_usd or 0.0,
            seconds=c.seconds or 0.0,
            tokens=c.tokens,
        )
        for c in cases
    ]


async def score(
    cases: Sequence[EvalCase], runs: Sequence[CaseRun], checks: Checks, *, agent: str
) -> EvalReport:
    """The report of ``runs`` of ``cases`` (in case order) scored with ``checks``, with
    no baseline."""
    scored = await evaluate_runs(cases, runs, checks, name=agent)
    return report_of(scored, cases, runs, agent=agent)


async def score_recorded(cases: Sequence[EvalCase], checks: Checks) -> EvalReport:
    """The recorded runs scored with ``checks``: the default baseline."""
    return await score(cases, recorded_runs(cases), checks, agent="recorded runs")


async def run_eval(
    client: AgentClient,
    agent: str,
    cases: Sequence[EvalCase],
    checks: Checks | None = None,
    *,
    model: str | None = None,
    baseline: EvalReport | None = None,
    eval_id: str | None = None,
    max_parallel: int = 4,
    score_drop: float = 0.1,
    store: TranscriptStore | None = None,
) -> EvalReport:
    """Run ``cases`` against ``agent`` (durably, replaying their tool results), score
    them, and compare with a baseline: a previous report, else the recorded runs
    scored with the same checks.

    A case regresses when it passed in the baseline and fails now, or when a score
    dropped by more than ``score_drop``.
    """
    checks = checks or Checks()
    eval_id, runs = await run_cases(
        client, agent, cases, model=model, eval_id=eval_id, max_parallel=max_parallel, store=store
    )
    report = await evaluate_runs(cases, runs, checks, name=agent)
    if baseline is None:
        baseline = await score_recorded(cases, checks)
    return report_of(
        report,
        cases,
        runs,
        agent=agent,
        model=model,
        eval_id=eval_id,
        baseline=baseline_from(baseline),
        score_drop=score_drop,
    )
