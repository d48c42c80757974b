"""The checks of an eval: pydantic-evals evaluators, and ratchet's own for what only
ratchet's run events know (tool calls, cost, time of a run).

pydantic-evals' own tool-call evaluators read OpenTelemetry spans of the task; a
case's tool calls are in its run's history instead, so :class:`SameToolCalls` reads
them from the case's attributes (set from the run's events).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from pydantic_evals.evaluators import (
    Contains,
    EqualsExpected,
    EvaluationReason,
    Evaluator,
    EvaluatorContext,
    LLMJudge,
)

from .._schema import check_value
from .._tool_fixtures import fixture_key
from ..errors import ConfigError

__all__ = [
    "AnswerChanged",
    "Checks",
    "MatchesJsonSchema",
    "MatchesRegex",
    "MaxCost",
    "MaxSeconds",
    "NoUnrecordedCalls",
    "SameToolCalls",
    "judge_model",
]


@dataclass(repr=False)
class AnswerChanged(Evaluator[object, object, object]):
    """Labels the answer ``same`` or ``changed`` against the recorded one (a label, not
    an assertion: new instructions may change an answer's words and still be right)."""

    def evaluate(self, ctx: EvaluatorContext[object, object, object]) -> dict[str, str]:
        return {"answer": "same" if ctx.output == ctx.expected_output else "changed"}


@dataclass(repr=False)
class SameToolCalls(Evaluator[object, object, object]):
    """The case's run made the recorded run's tool calls, with the same arguments
    (in any order)."""

    def get_default_evaluation_name(self) -> str:
        return "same tool calls"

    def evaluate(self, ctx: EvaluatorContext[object, object, object]) -> EvaluationReason:
        made = Counter(_keys(ctx.attributes.get("tool_calls", [])))
        recorded = Counter(_keys(ctx.attributes.get("recorded_tool_calls", [])))
        if made == recorded:
            return EvaluationReason(True)
        missing, extra = recorded - made, made - recorded
        parts = []
        if missing:
            parts.append("not made: " + ", ".join(_show(k) for k in missing.elements()))
        if extra:
            parts.append("new: " + ", ".join(_show(k) for k in extra.elements()))
        return EvaluationReason(False, "; ".join(parts))


@dataclass(repr=False)
class NoUnrecordedCalls(Evaluator[object, object, object]):
    """Every tool call had a recorded result to replay (else the model read an error)."""

    def get_default_evaluation_name(self) -> str:
        return "recorded results"

    def evaluate(self, ctx: EvaluatorContext[object, object, object]) -> EvaluationReason:
        missed = ctx.attributes.get("unrecorded", [])
        if not missed:
            return EvaluationReason(True)
        return EvaluationReason(
            False, "no recorded result for: " + ", ".join(_show(k) for k in _keys(missed))
        )


@dataclass(repr=False)
class MatchesRegex(Evaluator[object, object, object]):
    """The answer matches a regular expression (``re.search``)."""

    pattern: str
    evaluation_name: str | None = field(default=None)

    def evaluate(self, ctx: EvaluatorContext[object, object, object]) -> bool:
        return re.search(self.pattern, str(ctx.output)) is not None

    def get_default_evaluation_name(self) -> str:
        return self.evaluation_name or f"regex {self.pattern!r}"


@dataclass(repr=False)
class MatchesJsonSchema(Evaluator[object, object, object]):
    """The answer is JSON valid against a JSON schema (ratchet's own schema check, as
    tool arguments and structured answers are checked)."""

    schema: dict[str, Any]

    def evaluate(self, ctx: EvaluatorContext[object, object, object]) -> EvaluationReason:
        try:
            value = json.loads(str(ctx.output))
        except ValueError as e:
            return EvaluationReason(False, f"not JSON: {e}")
        problems = check_value(self.schema, value, path="answer")
        return EvaluationReason(not problems, "; ".join(problems) or None)


@dataclass(repr=False)
class MaxCost(Evaluator[object, object, object]):
    """The run cost at most ``usd`` (its model calls', sub-agents' included)."""

    usd: float

    def evaluate(self, ctx: EvaluatorContext[object, object, object]) -> EvaluationReason:
        cost = float(ctx.metrics.get("cost_usd", 0.0))
        return EvaluationReason(cost <= self.usd, f"${cost:.6f} (max ${self.usd:g})")


@dataclass(repr=False)
class MaxSeconds(Evaluator[object, object, object]):
    """The run took at most ``seconds``, from its start to its end."""

    seconds: float

    def evaluate(self, ctx: EvaluatorContext[object, object, object]) -> EvaluationReason:
        took = float(ctx.metrics.get("seconds", 0.0))
        return EvaluationReason(took <= self.seconds, f"{took:.2f} s (max {self.seconds:g} s)")


@dataclass(frozen=True)
class Checks:
    """What an eval checks in each case's answer and run. Every check is an assertion
    (a case passes when all pass), but for the judge's score."""

    contains: tuple[str, ...] = ()
    regex: tuple[str, ...] = ()
    json_schema: dict[str, Any] | None = None
    exact: bool = False
    """The answer must equal the recorded one."""
    same_tool_calls: bool = True
    """The recorded tool calls, with the same arguments."""
    max_cost_usd: float | None = None
    max_seconds: float | None = None
    judge: str | None = None
    """A model that judges each answer against ``rubric``: ``local`` (the embedded
    model), ``openai:NAME`` (``OPENAI_BASE_URL``, any OpenAI-compatible endpoint), or
    any model string pydantic-ai knows."""
    rubric: str = "The answer responds to the user's request helpfully and correctly."

    def evaluators(self) -> list[Evaluator[object, object, object]]:
        out: list[Evaluator[object, object, object]] = [AnswerChanged(), NoUnrecordedCalls()]
        if self.same_tool_calls:
            out.append(SameToolCalls())
        if self.exact:
            out.append(EqualsExpected(evaluation_name="exact"))
        out += [Contains(text, evaluation_name=f"contains {text!r}") for text in self.contains]
        for pattern in self.regex:
            try:
                re.compile(pattern)
            except re.error as e:
                raise ConfigError(f"bad regular expression {pattern!r}: {e}") from e
            out.append(MatchesRegex(pattern))
        if self.json_schema is not None:
            out.append(MatchesJsonSchema(self.json_schema))
        if self.max_cost_usd is not None:
            out.append(MaxCost(self.max_cost_usd))
        if self.max_seconds is not None:
            out.append(MaxSeconds(self.max_seconds))
        if self.judge is not None:
            out.append(
                LLMJudge(
                    rubric=self.rubric,
                    model=judge_model(self.judge),
                    include_input=True,
                    score={"evaluation_name": "judge score"},
                    assertion={"evaluation_name": "judge", "include_reason": True},
                )
            )
        return out


def judge_model(name: str) -> Any:
    """The pydantic-ai model of an LLM judge: ``local``, ``openai:NAME`` (on
    ``OPENAI_BASE_URL``), or a pydantic-ai model string, passed on as it is.

    Raises:
        ConfigError: ``local`` while the embedded model is not running.
    """
    import os

    from pydantic_ai.models.openai import OpenAIChatModel
    from pydantic_ai.providers.openai import OpenAIProvider

    if name == "local":
        from ..local import local_llm_base_url

        base_url = local_llm_base_url()
        if base_url is None:
            raise ConfigError(
                "the judge 'local' is the embedded model, which is not running: start it "
                "with `ratchet up`, or judge with another model (--judge openai:NAME)"
            )
        return OpenAIChatModel(
            "SmolLM2-135M-Instruct", provider=OpenAIProvider(base_url=base_url, api_key="local")
        )
    if name.startswith("openai:"):
        return OpenAIChatModel(
            name.removeprefix("openai:"),
            provider=OpenAIProvider(
                base_url=os.environ.get("OPENAI_BASE_URL"),
                api_key=os.environ.get("OPENAI_API_KEY"),
            ),
        )
    return name


def _keys(calls: list[dict[str, Any]]) -> list[str]:
    return [fixture_key(str(c.get("tool")), dict(c.get("arguments") or {})) for c in calls]


def _show(key: str) -> str:
    tool, _, arguments = key.partition("\x00")
    return f"{tool}({arguments})"
