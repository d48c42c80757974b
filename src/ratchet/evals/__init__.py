"""Evals from recorded runs: run them again against a changed agent, and score them.

- **Cases.** :func:`recorded_cases` turns recorded runs (named, or chosen by agent or
  visibility query) into :class:`EvalCase` objects: the prompt, and the tool results
  the run got, kept as fixtures.
- **Re-running.** :func:`run_eval` runs every case against an agent (new
  instructions, model, tools or policy) as one durable eval workflow (``ratchet.Eval``)
  whose cases are child runs: they go through concurrency caps and rate limits like
  any run, and the eval survives a worker crash. A case's run answers its tool calls
  from the recorded results (``RunInput.fixtures``): no tool runs, so nothing has side
  effects and the inputs are those the recorded run saw. A call the recorded run never
  made gets an error, and the case says so.
- **Scoring.** pydantic-evals runs the :class:`Checks`: contains, regex, exact; a
  JSON schema; the same tool calls with the same arguments; cost and time; an LLM
  judge on any model (``local``, the embedded one, included).
- **Comparing.** The :class:`EvalReport` flags the answers that changed and the
  cases that regressed against a baseline: the recorded runs scored with the same
  checks, or a previous report. ``ratchet eval`` prints it, writes JSON and JUnit
  XML, and exits non-zero on a regression.
"""

from ._cases import CaseRun, EvalCase, ToolCallMade, case_of, case_run_of
from ._evaluators import (
    AnswerChanged,
    Checks,
    MatchesJsonSchema,
    MatchesRegex,
    MaxCost,
    MaxSeconds,
    NoUnrecordedCalls,
    SameToolCalls,
    judge_model,
)
from ._report import CaseResult, EvalReport
from ._run import (
    CaseInput,
    evaluate_runs,
    recorded_cases,
    recorded_runs,
    run_cases,
    run_eval,
    score,
    score_recorded,
)

__all__ = [
    "AnswerChanged",
    "CaseInput",
    "CaseResult",
    "CaseRun",
    "Checks",
    "EvalCase",
    "EvalReport",
    "MatchesJsonSchema",
    "MatchesRegex",
    "MaxCost",
    "MaxSeconds",
    "NoUnrecordedCalls",
    "SameToolCalls",
    "ToolCallMade",
    "case_of",
    "case_run_of",
    "evaluate_runs",
    "judge_model",
    "recorded_cases",
    "recorded_runs",
    "run_cases",
    "run_eval",
    "score",
    "score_recorded",
]
