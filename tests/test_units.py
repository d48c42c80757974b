"""Pure pieces: tool schemas and validation, the error taxonomy, json_schema tool mode."""

from __future__ import annotations

import json
from typing import Literal, get_args

import httpx2 as httpx
import openai
import pydantic
import pytest

import ratchet.workflows
from ratchet import Agent, ConfigError, ToolContext, tool
from ratchet._schema import check_arguments
from ratchet.agent import parse_model
from ratchet.errors import (
    MODEL_ERRORS,
    BudgetExceeded,
    ModelErrorType,
    RunCancelled,
    RunErrorType,
)
from ratchet.messages import Message, ToolCall
from ratchet.models import classify_openai_error, envelope_schema, parse_envelope
from ratchet.models._json_mode import json_mode_messages


@tool
def search(query: str, limit: int = 5, mode: Literal["fast", "exact"] = "fast") -> list[str]:
    """Search the catalogue.

    Longer explanation that is not part of the summary.

    Args:
        query: words to look for.
        limit: how many results
            to return at most.
        mode: search strategy.
    """
    return [query] * limit


@tool(side_effects=True, name="charge-card")
async def charge(amount_cents: int, ctx: ToolContext) -> str:
    """Charge the card."""
    return f"{amount_cents}:{ctx.idempotency_key}:{ctx.attempt}"


def test_workflows_package_exports_its_workflows() -> None:
    assert ratchet.workflows.__all__ == [
        "AgentWorkflow",
        "EvalWorkflow",
        "LimiterWorkflow",
        "SlotsWorkflow",
    ]
    assert ratchet.AgentWorkflow is ratchet.workflows.AgentWorkflow


def test_schema_from_type_hints_and_docstring() -> None:
    assert search.description == "Search the catalogue."
    assert search.parameters == {
        "additionalProperties": False,
        "properties": {
            "query": {"description": "words to look for.", "type": "string"},
            "limit": {
                "default": 5,
                "description": "how many results to return at most.",
                "type": "integer",
            },
            "mode": {
                "default": "fast",
                "description": "search strategy.",
                "enum": ["fast", "exact"],
                "type": "string",
            },
        },
        "required": ["query"],
        "type": "object",
    }
    assert not search.is_async and not search.side_effects


def test_context_parameter_is_hidden_from_the_model() -> None:
    assert charge.name == "charge-card" and charge.is_async and charge.side_effects
    assert list(charge.parameters["properties"]) == ["amount_cents"]


async def test_invoke_validates_and_passes_the_context() -> None:
    ctx = ToolContext(idempotency_key="wf/turn1-tool0", run_id="wf", attempt=2)
    assert await charge.invoke({"amount_cents": "150"}, ctx) == "150:wf/turn1-tool0:2"
    assert json.loads(await search.invoke({"query": "kb", "limit": 2}, ctx)) == ["kb", "kb"]
    with pytest.raises(pydantic.ValidationError):
        await search.invoke({"query": "kb", "bogus": 1}, ctx)
    with pytest.raises(pydantic.ValidationError):
        await search.invoke({"query": "kb", "mode": "slow"}, ctx)


def test_bad_definitions_say_what_to_fix() -> None:
    def untyped(x):  # type: ignore[no-untyped-def]
        """No annotation."""

    with pytest.raises(ConfigError, match="parameter 'x' needs a type annotation"):
        tool(untyped)
    with pytest.raises(ConfigError, match="two tools are named 'search'"):
        Agent("a", instructions="x", tools=[search, search])
    with pytest.raises(ConfigError, match="agent name '1bad' is invalid"):
        Agent("1bad", instructions="x")
    with pytest.raises(ConfigError, match="is not a tool"):
        Agent("a", instructions="x", tools=[print])  # type: ignore[list-item]


@pytest.mark.parametrize(
    ("model", "provider", "name"),
    [
        ("local", "local", "local"),
        ("openai:gpt-4o-mini", "openai", "gpt-4o-mini"),
        ("vllm:meta/llama:70b", "vllm", "meta/llama:70b"),
    ],
)
def test_parse_model(model: str, provider: str, name: str) -> None:
    ref = parse_model(model)
    assert (ref.provider, ref.name) == (provider, name)


@pytest.mark.parametrize("model", ["gpt-4o", "openai:", ":x", "Open AI:x", ""])
def test_parse_model_rejects(model: str) -> None:
    with pytest.raises(ConfigError, match="bad model string"):
        parse_model(model)


def test_in_workflow_schema_check_matches_pydantic() -> None:
    schema = search.parameters
    assert check_arguments(schema, {"query": "x"}) == []
    assert check_arguments(schema, {"query": "x", "limit": 3, "mode": "exact"}) == []
    assert "missing required field 'query'" in check_arguments(schema, {})[0]
    assert "expected integer" in check_arguments(schema, {"query": "x", "limit": "3"})[0]
    assert "expected integer" in check_arguments(schema, {"query": "x", "limit": True})[0]
    assert "not one of" in check_arguments(schema, {"query": "x", "mode": "slow"})[0]
    assert "unexpected field 'q'" in check_arguments(schema, {"query": "x", "q": 1})[0]


def _status_error(
    status: int, body: dict[str, object] | None = None, headers: dict[str, str] | None = None
) -> openai.APIStatusError:
    request = httpx.Request("POST", "http://x/v1/chat/completions")
    response = httpx.Response(status, headers=headers or {}, request=request, json=body or {})
    client = openai.OpenAI(api_key="k", base_url="http://x/v1")
    return client._make_status_error_from_response(response)  # the SDK's own mapping


@pytest.mark.parametrize(
    ("status", "kind", "retryable"),
    [
        (408, "ModelServerError", True),
        (409, "ModelServerError", True),
        (429, "ModelRateLimited", True),
        (500, "ModelServerError", True),
        (503, "ModelServerError", True),
        (400, "ModelBadRequest", False),
        (401, "ModelAuthError", False),
        (403, "ModelAuthError", False),
        (404, "ModelNotFound", False),
        (422, "ModelBadRequest", False),
    ],
)
def test_error_taxonomy(status: int, kind: str, retryable: bool) -> None:
    e = classify_openai_error(_status_error(status, {"error": {"message": "boom"}}))
    assert e.type == kind
    assert e.non_retryable is (not retryable)
    assert "boom" in e.message


def test_error_type_names_are_one_closed_set() -> None:
    """The typed names, the model error table and the documented tree agree."""
    model_types = set(get_args(ModelErrorType))
    run_types = set(get_args(RunErrorType))
    assert set(MODEL_ERRORS) == model_types
    assert all(kind.name == name for name, kind in MODEL_ERRORS.items())
    assert model_types < run_types
    assert {"BudgetExceeded", "UnknownAgent", "ConfigError", "TranscriptEntryMissing"} < run_types
    assert BudgetExceeded("r", "m", "max_turns", 1, 1).error_type in run_types
    assert RunCancelled("r").error_type in run_types
    undocumented = [name for name in run_types if name not in (ratchet.errors.__doc__ or "")]
    assert undocumented == []


def test_context_too_long_and_retry_after() -> None:
    e = classify_openai_error(
        _status_error(400, {"error": {"message": "too long", "code": "context_length_exceeded"}})
    )
    assert e.type == "ContextTooLong" and e.non_retryable
    e = classify_openai_error(_status_error(429, headers={"Retry-After": "7"}))
    assert e.next_retry_delay is not None and e.next_retry_delay.total_seconds() == 7
    e = classify_openai_error(_status_error(503, headers={"retry-after-ms": "1500"}))
    assert e.next_retry_delay is not None and e.next_retry_delay.total_seconds() == 1.5
    request = httpx.Request("POST", "http://x")
    assert classify_openai_error(openai.APITimeoutError(request)).type == "ModelTimeout"
    assert (
        classify_openai_error(openai.APIConnectionError(request=request)).type
        == "ModelConnectionError"
    )


def test_json_schema_envelope_round_trip() -> None:
    spec = Agent("a", instructions="Be brief.", tools=[search]).spec()
    schema = envelope_schema(spec.tools)
    assert [o["required"] for o in schema["anyOf"]] == [["tool", "arguments"], ["answer"]]
    msg = parse_envelope('{"tool": "search", "arguments": {"query": "kb"}}', turn=3)
    assert msg.tool_calls == [ToolCall(id="call_t3_0", name="search", arguments='{"query": "kb"}')]
    assert parse_envelope('{"answer": "It shipped."}', turn=1).content == "It shipped."
    cut = parse_envelope('{"tool": "search", "arguments": {"query": "k', turn=1)
    assert cut.tool_calls and cut.tool_calls[0].name == "search"  # the workflow reports bad JSON
    assert parse_envelope('{"answer": "It ship', turn=1).content == "It ship"


def test_json_mode_transcript_rendering() -> None:
    spec = Agent("a", instructions="Be brief.", tools=[search]).spec()
    call = ToolCall(id="c1", name="search", arguments='{"query": "kb"}')
    transcript = [
        Message.system("Be brief."),
        Message.user("find kb"),
        Message.assistant(None, [call]),
        Message.tool(call, '["kb"]'),
    ]
    rendered = json_mode_messages(transcript, spec.tools)
    assert "search(query: string, limit: integer, mode: string)" in rendered[0]["content"]
    assert rendered[2] == {
        "role": "assistant",
        "content": '{"tool": "search", "arguments": {"query": "kb"}}',
    }
    answer = json_mode_messages(transcript, spec.tools, answer_only=True)
    assert answer == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": 'find kb\n\n(search(query="kb") returned: ["kb"])'},
    ]


def test_a_parameter_named_title_survives_json_schema_mode() -> None:
    @tool
    def create_ticket(title: str, body: str) -> str:
        """Open a ticket."""
        return title

    spec = Agent("a", instructions="x", tools=[create_ticket]).spec()
    option = envelope_schema(spec.tools)["anyOf"][0]["properties"]["arguments"]
    assert set(option["properties"]) == {"title", "body"}
    assert option["required"] == ["title", "body"]
    assert "title" not in option["properties"]["title"]  # pydantic's annotation is dropped
