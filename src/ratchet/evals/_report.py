"""An eval's report: each case's checks, its answer against the recorded one, and its
regressions against a baseline; as a terminal table, JSON and JUnit XML."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from xml.etree import ElementTree as ET

from pydantic import BaseModel, Field
from pydantic_evals.reporting import EvaluationReport
from rich.table import Table

from ._cases import CaseRun, EvalCase, ToolCallMade

__all__ = ["BaselineCase", "CaseResult", "EvalReport", "baseline_from", "report_of"]


class CaseResult(BaseModel):
    """One case of an eval."""

    case_id: str
    """The recorded run the case comes from."""
    run_id: str
    """The case's run (read it with ``ratchet trace``)."""
    prompt: str
    recorded_answer: str | None = None
    answer: str | None = None
    changed: bool = False
    """The answer differs from the recorded one."""
    passed: bool
    """Every check passed (and the run completed)."""
    checks: dict[str, bool] = Field(default_factory=dict)
    reasons: dict[str, str] = Field(default_factory=dict)
    """Why a check decided as it did, when it says."""
    scores: dict[str, float] = Field(default_factory=dict)
    error: str | None = None
    """Why the case's run did not complete, or a check could not run."""
    unrecorded_calls: list[ToolCallMade] = Field(default_factory=list)
    tools_ran: list[str] = Field(default_factory=list)
    """Tools a worker ran for the case (always empty: cases replay recorded results)."""
    cost_usd: float = 0.0
    seconds: float = 0.0
    baseline_passed: bool | None = None
    """Whether the case passed in the baseline (None: not in it)."""
    regression: str | None = None
    """Why the case regressed against the baseline; None: it did not."""


class EvalReport(BaseModel):
    """An eval's outcome: save it (``model_dump_json``) to be the next eval's baseline."""

    agent: str
    """The agent the cases ran against (``recorded runs`` for the recorded ones)."""
    model: str | None = None
    eval_id: str | None = None
    """The eval workflow's id."""
    baseline: str | None = None
    """What the cases were compared with."""
    cases: list[CaseResult]

    @property
    def regressions(self) -> list[CaseResult]:
        return [c for c in self.cases if c.regression is not None]

    @property
    def changed(self) -> list[CaseResult]:
        return [c for c in self.cases if c.changed]

    @property
    def passed(self) -> int:
        return sum(1 for c in self.cases if c.passed)

    def junit_xml(self) -> str:
        """The cases as a JUnit XML test suite: a failed check or a regression is a
        failure, a run that did not complete an error."""
        suite = ET.Element(
            "testsuite",
            name=f"ratchet eval {self.agent}",
            tests=str(len(self.cases)),
            failures=str(sum(1 for c in self.cases if not c.passed and c.error is None)),
            errors=str(sum(1 for c in self.cases if c.error is not None)),
            time=f"{sum(c.seconds for c in self.cases):.3f}",
        )
        for c in self.cases:
            case = ET.SubElement(
                suite, "testcase", classname=self.agent, name=c.case_id, time=f"{c.seconds:.3f}"
            )
            failed = [n for n, ok in c.checks.items() if not ok]
            if c.error is not None:
                ET.SubElement(case, "error", message=c.error).text = c.error
            elif failed or c.regression:
                message = c.regression or "failed: " + ", ".join(failed)
                details = [f"{n}: {c.reasons.get(n, 'failed')}" for n in failed]
                ET.SubElement(case, "failure", message=message).text = "\n".join(
                    [*details, f"answer: {c.answer}", f"run: {c.run_id}"]
                )
            ET.SubElement(case, "system-out").text = c.answer or ""
        return ET.tostring(suite, encoding="unicode", xml_declaration=True)

    def table(self, other: EvalReport | None = None) -> Table:
        """The cases as a table; with ``other`` (another agent on the same cases), side
        by side."""
        title = f"eval of {self.agent}" + (f" vs {other.agent}" if other else "")
        t = Table(title=title, title_justify="left")
        t.add_column("case")
        agents = [self] if other is None else [self, other]
        for r in agents:
            suffix = f" ({r.agent})" if other else ""
            t.add_column("answer" + suffix)
            t.add_column("checks, cost, time" + suffix)
        t.add_column("regression" + (f" ({other.agent})" if other else ""))
        theirs = {c.case_id: c for c in other.cases} if other else {}
        for c in self.cases:
            row = [c.case_id]
            sides: list[CaseResult | None] = [c, theirs.get(c.case_id)] if other else [c]
            for side in sides:
                row += _cells(side)
            last = sides[-1]
            # The failed checks are in the row already; the reason is in the JSON.
            row.append("[red]✗ regression[/]" if last and last.regression else "")
            t.add_row(*row)
        return t


def _cells(c: CaseResult | None) -> list[str]:
    if c is None:
        return ["-", "-"]
    answer = ("[yellow]changed:[/] " if c.changed else "same: ") + _short(c.answer or "")
    if c.error is not None:
        checks = f"[red]error: {_short(c.error)}[/]"
    else:
        failed = [n for n, ok in c.checks.items() if not ok]
        checks = "[green]✔ all[/]" if not failed else "[red]✗ " + ", ".join(failed) + "[/]"
    return [answer, f"{checks} · ${c.cost_usd:.4f} · {c.seconds:.1f}s"]


def _short(text: str, n: int = 40) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"


class BaselineCase(BaseModel):
    passed: bool
    scores: dict[str, float] = Field(default_factory=dict)


def baseline_from(report: EvalReport) -> tuple[str, dict[str, BaselineCase]]:
    """A report as a baseline: its name, and each case's outcome."""
    name = report.agent if report.eval_id is None else f"{report.agent} (eval {report.eval_id})"
    return name, {c.case_id: BaselineCase(passed=c.passed, scores=c.scores) for c in report.cases}


def report_of(
    report: EvaluationReport[Any, str, EvalCase],
    cases: Sequence[EvalCase],
    runs: Sequence[CaseRun],
    *,
    agent: str,
    model: str | None = None,
    eval_id: str | None = None,
    baseline: tuple[str, Mapping[str, BaselineCase]] | None = None,
    score_drop: float = 0.1,
) -> EvalReport:
    """ratchet's report of a pydantic-evals report of ``cases`` run as ``runs``."""
    by_run = {r.case_id: r for r in runs}
    out: dict[str, CaseResult] = {}
    for rc in report.cases:
        run = by_run[rc.name]
        checks = {n: bool(r.value) for n, r in rc.assertions.items()}
        reasons = {n: r.reason for n, r in rc.assertions.items() if r.reason}
        errors = [f"{f.name}: {f.error_message}" for f in rc.evaluator_failures]
        out[rc.name] = _result(
            rc.metadata,
            run,
            passed=all(checks.values()) and not errors,
            checks=checks,
            reasons=reasons,
            scores={n: float(r.value) for n, r in rc.scores.items()},
            error="; ".join(errors) or None,
        )
    for failure in report.failures:
        run = by_run[failure.name]
        out[failure.name] = _result(
            failure.metadata, run, passed=False, error=run.error or failure.error_message
        )
    results = [out[c.case_id] for c in cases if c.case_id in out]
    name = None
    if baseline is not None:
        name, before = baseline
        results = [_compared(r, before.get(r.case_id), score_drop) for r in results]
    return EvalReport(agent=agent, model=model, eval_id=eval_id, baseline=name, cases=results)


def _result(case: EvalCase | None, run: CaseRun, *, passed: bool, **fields: Any) -> CaseResult:
    recorded = case.answer if case is not None else None
    return CaseResult(
        case_id=run.case_id,
        run_id=run.run_id,
        prompt=case.prompt if case is not None else "",
        recorded_answer=recorded,
        answer=run.answer,
        changed=run.answer != recorded,
        passed=passed,
        unrecorded_calls=run.unrecorded,
        tools_ran=run.tools_ran,
        cost_usd=run.cost_usd,
        seconds=run.seconds,
        **fields,
    )


def _compared(result: CaseResult, before: BaselineCase | None, score_drop: float) -> CaseResult:
    if before is None:
        return result
    why = None
    if before.passed and not result.passed:
        failed = [n for n, ok in result.checks.items() if not ok]
        why = "now fails: " + (", ".join(failed) or result.error or "its run")
    else:
        for name, was in before.scores.items():
            now = result.scores.get(name)
            if now is not None and was - now > score_drop:
                why = f"{name} dropped from {was:g} to {now:g}"
                break
    return result.model_copy(update={"baseline_passed": before.passed, "regression": why})
