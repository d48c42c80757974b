"""The eval workflow's input and output (``ratchet.evals``): names and shapes are
contracts, as in ``_protocol``: fields are only ever added, with defaults."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from ._protocol import EVAL_WORKFLOW_TYPE
from ._tool_fixtures import ToolFixtures
from .messages import Usage

__all__ = ["EVAL_WORKFLOW_TYPE", "EvalCaseOutcome", "EvalCaseRun", "EvalInput", "EvalRunResult"]


class EvalCaseRun(BaseModel):
    """One case to run: a recorded run's prompt, with its tool results to replay."""

    model_config = ConfigDict(frozen=True)

    case_id: str
    """Unique within the eval (the recorded run's id)."""
    prompt: str
    fixtures: ToolFixtures
    model: str | None = None
    """The recorded run's model override, kept unless the eval overrides the model."""
    tenant: str | None = None


class EvalInput(BaseModel):
    """Input of the eval workflow: which agent runs the cases, and the cases."""

    model_config = ConfigDict(frozen=True)

    version: int = 1
    agent: str
    cases: list[EvalCaseRun]
    model: str | None = None
    """Overrides the model of every case's run."""
    max_parallel: int = 4
    """Case runs at once (the agent's own concurrency caps and rate limits apply too)."""
    run_version: int = 2
    """``RunInput.version`` of the case runs (what the queue's workers run)."""
    search_attributes: bool = False
    """Whether the namespace has ratchet's search attributes."""
    case_timeout_seconds: float | None = None
    """A case's run is stopped after this long (None: no limit but the agent's own)."""


class EvalCaseOutcome(BaseModel):
    """How one case's run ended."""

    model_config = ConfigDict(frozen=True)

    case_id: str
    run_id: str
    """The case's run (a child workflow of the eval); read its events to score it."""
    completed: bool
    output: str | None = None
    usage: Usage = Usage()
    cost_usd: float = 0.0
    error_type: str | None = None
    error: str | None = None


class EvalRunResult(BaseModel):
    """Output of the eval workflow: every case's outcome, in case order."""

    model_config = ConfigDict(frozen=True)

    agent: str
    model: str | None = None
    cases: list[EvalCaseOutcome]
