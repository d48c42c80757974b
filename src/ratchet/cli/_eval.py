"""`ratchet eval`: run recorded runs again against a changed agent and score them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from .._protocol import DEFAULT_TASK_QUEUE
from ..client import AgentClient
from ..errors import ConfigError
from ..transcripts import store_from_url
from ._common import Address, Namespace, TaskQueue, TranscriptStoreUrl, _run, err, out


@_run
async def eval_runs(
    agent: Annotated[
        str | None,
        typer.Option(help="The agent to run the cases against (e.g. a new version)."),
    ] = None,
    run: Annotated[
        list[str] | None, typer.Option("--run", help="A recorded run to use as a case (repeat).")
    ] = None,
    from_agent: Annotated[
        str | None, typer.Option(help="Use the latest completed runs of this agent as cases.")
    ] = None,
    query: Annotated[
        str | None,
        typer.Option(help="Choose the recorded runs by a visibility query (Temporal's syntax)."),
    ] = None,
    limit: Annotated[int, typer.Option(help="At most this many recorded runs.")] = 20,
    model: Annotated[str | None, typer.Option(help="Override the model of every case.")] = None,
    contains: Annotated[
        list[str] | None, typer.Option("--contains", help="The answer must contain this.")
    ] = None,
    regex: Annotated[
        list[str] | None, typer.Option("--regex", help="The answer must match this.")
    ] = None,
    json_schema: Annotated[
        Path | None, typer.Option(help="A JSON schema file the answer must be valid against.")
    ] = None,
    exact: Annotated[bool, typer.Option(help="The answer must equal the recorded one.")] = False,
    tool_calls: Annotated[
        bool,
        typer.Option(
            "--tool-calls/--any-tool-calls",
            help="Require the recorded tool calls with the same arguments.",
        ),
    ] = True,
    max_cost: Annotated[
        float | None, typer.Option(help="Most a case's run may cost (USD).")
    ] = None,
    max_seconds: Annotated[
        float | None, typer.Option(help="Longest a case's run may take (seconds).")
    ] = None,
    judge: Annotated[
        str | None,
        typer.Option(help="An LLM judge: 'local' (the embedded model) or 'openai:NAME'."),
    ] = None,
    rubric: Annotated[
        str | None, typer.Option(help="What the judge checks in each answer.")
    ] = None,
    baseline: Annotated[
        Path | None,
        typer.Option(
            help="A previous report (--json) to compare with (default: the recorded runs)."
        ),
    ] = None,
    compare: Annotated[
        tuple[str, str] | None,
        typer.Option(help="Run the cases against two agents A B and show them side by side."),
    ] = None,
    json_path: Annotated[
        Path | None, typer.Option("--json", help="Write the report as JSON.")
    ] = None,
    junit: Annotated[Path | None, typer.Option(help="Write the report as JUnit XML.")] = None,
    parallel: Annotated[int, typer.Option(help="Cases running at once.")] = 4,
    eval_id: Annotated[
        str | None, typer.Option("--id", help="The eval's id (the same id attaches to it).")
    ] = None,
    transcript_store: TranscriptStoreUrl = None,
    task_queue: TaskQueue = DEFAULT_TASK_QUEUE,
    address: Address = None,
    namespace: Namespace = None,
) -> None:
    """Run recorded runs again against a changed agent (their tool results replayed: no
    tool runs), score them, and exit 1 on a regression against the baseline."""
    from ..evals import Checks, EvalReport, recorded_cases, run_eval

    if (agent is None) == (compare is None):
        raise ConfigError("name the agent to evaluate (--agent NAME), or two (--compare A B)")
    schema = None
    if json_schema is not None:
        try:
            schema = json.loads(json_schema.read_text())
        except (OSError, ValueError) as e:
            raise ConfigError(f"cannot read the JSON schema {str(json_schema)!r}: {e}") from e
    checks = Checks(
        contains=tuple(contains or ()),
        regex=tuple(regex or ()),
        json_schema=schema,
        exact=exact,
        same_tool_calls=tool_calls,
        max_cost_usd=max_cost,
        max_seconds=max_seconds,
        judge=judge,
        **({"rubric": rubric} if rubric else {}),
    )
    checks.evaluators()  # refuse a bad check before any case runs
    before = None
    if baseline is not None:
        try:
            before = EvalReport.model_validate_json(baseline.read_text())
        except (OSError, ValueError) as e:
            raise ConfigError(
                f"cannot read the baseline report {str(baseline)!r}: {e}; give a report "
                "written by `ratchet eval --json`"
            ) from e
    client = await AgentClient.connect(address, namespace=namespace, task_queue=task_queue)
    store = store_from_url(transcript_store)
    cases = await recorded_cases(
        client, runs=run or (), agent=from_agent, query=query, limit=limit, store=store
    )
    out.print(f"{len(cases)} case(s) from recorded runs")
    if compare is not None:
        first = await run_eval(
            client, compare[0], cases, checks, model=model, max_parallel=parallel, store=store
        )
        second = await run_eval(
            client,
            compare[1],
            cases,
            checks,
            model=model,
            baseline=first,
            max_parallel=parallel,
            store=store,
        )
        out.print(first.table(second))
        report = second
    else:
        assert agent is not None
        report = await run_eval(
            client,
            agent,
            cases,
            checks,
            model=model,
            baseline=before,
            eval_id=eval_id,
            max_parallel=parallel,
            store=store,
        )
        out.print(report.table())
    if json_path is not None:
        json_path.write_text(report.model_dump_json(indent=2))
    if junit is not None:
        junit.write_text(report.junit_xml())
    out.print(
        f"{report.passed}/{len(report.cases)} passed, {len(report.changed)} answer(s) changed, "
        f"{len(report.regressions)} regression(s) against {report.baseline}; eval {report.eval_id}"
    )
    if report.regressions:
        for c in report.regressions:
            err.print(f"regression: case {c.case_id} (run {c.run_id}): {c.regression}")
        raise typer.Exit(1)
