"""Structured output, unit by unit: each supported output type's recorded schema, the
workflow's check of a final answer, the repair message the model gets, and how the
request asks for the type (native final_result tool, json_schema envelope)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, Field
from typing_extensions import TypedDict

from ratchet import Agent, ConfigError, RunResult, Usage, tool
from ratchet._final_answer import (
    ACCEPTED,
    NOT_RUN,
    accepted_messages,
    answer_text,
    offered_answer,
    rejected_problem,
    repair_messages,
)
from ratchet._runs import typed_result
from ratchet._schema import check_arguments, check_value
from ratchet.agent import AgentSpec
from ratchet.messages import Message, ToolCall
from ratchet.models import WireFormat, envelope_schema, parse_envelope, render_wire_request
from ratchet.models._json_mode import json_mode_messages
from ratchet.output import OUTPUT_TOOL, output_spec

from .conftest import mypy_strict


class Shipment(BaseModel):
    """Where an order is."""

    order_id: int = Field(ge=1)
    shipped: bool
    carrier: str | None = None


@dataclasses.dataclass
class Parcel:
    weight_kg: float
    fragile: bool = False


class Address(TypedDict):
    city: str
    zip: str


NATIVE = WireFormat(model="m", tool_mode="native", structured=True)
ENVELOPE = WireFormat(model="m", tool_mode="json_schema", structured=True)


def spec_of(output_type: Any, **kw: Any) -> AgentSpec:
    return Agent("a", instructions="Answer.", output_type=output_type, **kw).spec()


def final_call(arguments: Any, *, id: str = "c1") -> ToolCall:
    text = arguments if isinstance(arguments, str) else json.dumps(arguments)
    return ToolCall(id=id, name=OUTPUT_TOOL, arguments=text)


# --- each supported type: its schema, and a valid and an invalid answer ------------------

CASES: list[tuple[Any, str, bool, Any, Any, str]] = [
    # (type, name, wrapped, a valid value, an invalid value, words of the problem)
    (
        Shipment,
        "Shipment",
        False,
        {"order_id": 7, "shipped": True},
        {"order_id": "seven", "shipped": True},
        "order_id: expected integer, got 'seven'",
    ),
    (
        Parcel,
        "Parcel",
        False,
        {"weight_kg": 1.5},
        {"fragile": True},
        "missing required field 'weight_kg'",
    ),
    (Address, "Address", False, {"city": "Oslo", "zip": "0150"}, {"city": 3}, "expected string"),
    (
        list[Shipment],
        "list[Shipment]",
        True,
        [{"order_id": 1, "shipped": False}, {"order_id": 2, "shipped": True}],
        [{"order_id": 1}],
        "missing required field 'shipped'",
    ),
    (list[Parcel], "list[Parcel]", True, [{"weight_kg": 2}], [{"weight_kg": "x"}], "expected"),
    (list[Address], "list[Address]", True, [], {"city": "Oslo"}, "expected array"),
    (int, "int", True, 42, 4.5, "expected integer, got 4.5"),
    (float, "float", True, 4.5, "4.5", "expected number"),
    (bool, "bool", True, True, 1, "expected boolean, got 1"),
    (str, "str", True, "shipped", 7, "expected string, got 7"),
]


@pytest.mark.parametrize(
    ("output_type", "name", "wrapped", "valid", "invalid", "problem"),
    CASES,
    ids=[c[1] for c in CASES],
)
def test_each_supported_type(
    output_type: Any, name: str, wrapped: bool, valid: Any, invalid: Any, problem: str
) -> None:
    spec = spec_of(output_type)
    output = spec.output
    assert output is not None and output.name == name and output.wrapped is wrapped
    # The recorded schema is pydantic's own.
    adapter, _ = output_spec(output_type)
    assert output.json_schema == adapter.json_schema()
    # The final-answer tool's arguments are always an object.
    parameters = output.tool().parameters
    assert parameters["type"] == "object"
    arguments = {"result": valid} if wrapped else valid
    assert output.tool().name == OUTPUT_TOOL
    # A valid answer through the tool, unwrapped.
    message = Message.assistant(None, [final_call(arguments)])
    offered = offered_answer(spec, message, NATIVE)
    assert offered is not None and offered.problem is None and offered.value == valid
    assert json.loads(answer_text(spec, offered.value)) == valid
    # ... and through the json_schema envelope.
    envelope = parse_envelope(json.dumps({"answer": valid}), 1, structured=True)
    offered = offered_answer(spec, envelope, ENVELOPE)
    assert offered is not None and offered.problem is None and offered.value == valid
    # An invalid one: the problem names the field and how it is wrong.
    bad = {"result": invalid} if wrapped else invalid
    offered = offered_answer(spec, Message.assistant(None, [final_call(bad)]), NATIVE)
    assert offered is not None and offered.problem is not None
    if not isinstance(bad, dict):  # not even an object: the arguments must be one
        assert "must be a JSON object" in offered.problem
    else:
        assert problem in offered.problem, offered.problem
        assert f"not a valid {name}" in offered.problem
    envelope = parse_envelope(json.dumps({"answer": invalid}), 1, structured=True)
    offered = offered_answer(spec, envelope, ENVELOPE)
    assert offered is not None and offered.problem is not None
    assert problem in offered.problem, offered.problem
    # pydantic agrees with the workflow's checker on both.
    adapter.validate_python(valid)
    with pytest.raises(ValueError):
        adapter.validate_python(invalid, strict=True)


def test_models_documentation_reaches_the_model() -> None:
    output = spec_of(Shipment).output
    assert output is not None
    assert output.description == "Where an order is."
    assert "Where an order is." in output.tool().description
    assert output.typed_check  # a model's validators are the worker's to run
    # Only a docstring of the user's own: none for these (pydantic's, dict's and the
    # signature dataclass writes are not theirs).
    assert [spec_of(t).output.description for t in (Parcel, Address, int)] == ["", "", ""]  # type: ignore[union-attr]

    class Bare(BaseModel):
        x: int

    assert spec_of(Bare).output.description == ""  # type: ignore[union-attr]
    assert not spec_of(int).output.typed_check  # type: ignore[union-attr]
    assert not spec_of(list[str]).output.typed_check  # type: ignore[union-attr]


def test_a_wrapped_schema_keeps_its_definitions_at_the_root() -> None:
    output = spec_of(list[Shipment]).output
    assert output is not None
    parameters = output.parameters()
    assert parameters["required"] == ["result"]
    assert parameters["properties"]["result"]["items"] == {"$ref": "#/$defs/Shipment"}
    assert "Shipment" in parameters["$defs"]
    assert check_value(parameters, {"result": [{"order_id": 1, "shipped": True}]}, path="a") == []


def test_constraints_are_checked_for_output_only() -> None:
    """``Field(ge=1)`` is in the schema: an output is checked against it, tool arguments
    are not (runs recorded before it sent such calls to the tool, which still judges)."""
    schema = output_spec(Shipment)[1].json_schema
    assert check_value(schema, {"order_id": 0, "shipped": True}, path="answer") == [
        "answer.order_id: must be >= 1, got 0"
    ]
    assert check_arguments(schema, {"order_id": 0, "shipped": True}) == []

    class Bounded(BaseModel):
        code: str = Field(pattern=r"^[A-Z]{3}$", max_length=3)
        tags: list[str] = Field(min_length=1)
        ratio: float = Field(gt=0, lt=1, multiple_of=0.25)

    bounded = output_spec(Bounded)[1].json_schema
    assert check_value(bounded, {"code": "OSL", "tags": ["a"], "ratio": 0.5}, path="x") == []
    # Float multiples within rounding, as pydantic has them (0.3 / 0.1 is not exactly 3).
    tenths = output_spec(Tenths)[1].json_schema
    assert check_value(tenths, {"r": 0.3}, path="x") == []
    assert check_value(tenths, {"r": 0.35}, path="x") == [
        "x.r: must be a multiple of 0.1, got 0.35"
    ]
    problems = check_value(bounded, {"code": "oslo", "tags": [], "ratio": 0.3}, path="x")
    assert problems == [
        "x.code: at most 3 characters, got 4",
        "x.code: 'oslo' does not match the pattern '^[A-Z]{3}$'",
        "x.tags: at least 1 items, got 0",
        "x.ratio: must be a multiple of 0.25, got 0.3",
    ]


class Tenths(BaseModel):
    r: float = Field(multiple_of=0.1)


# --- the repair messages -------------------------------------------------------------------


def test_repair_after_invalid_json_through_the_tool() -> None:
    spec = spec_of(Shipment)
    other = ToolCall(id="c2", name="lookup", arguments="{}")
    message = Message.assistant(None, [final_call('{"order_id": 7,'), other])
    offered = offered_answer(spec, message, NATIVE)
    assert offered is not None and offered.problem is not None
    assert offered.problem.startswith(f"the arguments of {OUTPUT_TOOL} are not valid JSON (")
    assert f"Call {OUTPUT_TOOL} again with arguments matching this schema: {{" in offered.problem
    repair = repair_messages(message, offered, offered.problem)
    # Every call of the reply gets its result: the final answer's error, and "not run".
    assert [(m.role, m.tool_call_id, m.is_error) for m in repair] == [
        ("tool", "c1", True),
        ("tool", "c2", True),
    ]
    assert repair[0].content == f"error: {offered.problem}"
    assert repair[1].content == NOT_RUN


def test_repair_after_invalid_json_in_the_envelope() -> None:
    spec = spec_of(Shipment)
    message = parse_envelope('{"answer": {"order_id": 7, "shi', 2, structured=True)
    assert message.content == '{"answer": {"order_id": 7, "shi'  # kept as it came
    offered = offered_answer(spec, message, ENVELOPE)
    assert offered is not None and offered.problem is not None
    assert offered.problem.startswith("the final answer is not valid JSON (")
    assert "Answer again with only JSON matching this schema: {" in offered.problem
    [repair] = repair_messages(message, offered, offered.problem)
    assert repair.role == "user" and repair.content == f"error: {offered.problem}"


def test_repair_after_a_schema_violation_names_the_field() -> None:
    spec = spec_of(Shipment)
    message = Message.assistant(None, [final_call({"order_id": "7", "shipped": "yes"})])
    offered = offered_answer(spec, message, NATIVE)
    assert offered is not None and offered.problem is not None
    assert offered.problem.startswith(
        "the final answer is not a valid Shipment: arguments.order_id: expected integer, "
        "got '7'; arguments.shipped: expected boolean, got 'yes'. "
        f"Call {OUTPUT_TOOL} again with arguments matching this schema: "
    )


def test_a_text_answer_in_native_mode_is_told_to_use_the_tool() -> None:
    spec = spec_of(Shipment)
    offered = offered_answer(spec, Message.assistant("Order 7 has shipped."), NATIVE)
    assert offered is not None and offered.problem is not None
    assert offered.problem.startswith(
        f"the final answer must be a Shipment. Call the {OUTPUT_TOOL} tool with the answer"
    )
    # A text answer that is the type's JSON is taken (a provider without tool_choice).
    text = Message.assistant('{"order_id": 7, "shipped": true}')
    offered = offered_answer(spec, text, NATIVE)
    assert offered is not None and offered.problem is None
    # A provider that ignored the output type (no wire, or not structured): the model
    # saw no schema, so the repair gives it.
    for wire in (None, WireFormat(model="m")):
        offered = offered_answer(spec, Message.assistant("It shipped."), wire)
        assert offered is not None and offered.problem is not None
        assert offered.problem.startswith("the final answer is not valid JSON (")
        assert "Answer again with only JSON matching this schema: {" in offered.problem
    # A str output takes plain text as it is.
    offered = offered_answer(spec_of(str), Message.assistant("It shipped."), NATIVE)
    assert offered is not None and offered.value == "It shipped."


def test_a_validators_rejection_and_acceptance() -> None:
    spec = spec_of(Shipment)
    message = Message.assistant(None, [final_call({"order_id": 7, "shipped": True})])
    offered = offered_answer(spec, message, NATIVE)
    assert offered is not None
    assert rejected_problem("known_order", "no order 7.", offered) == (
        f"the final answer was rejected by known_order: no order 7. "
        f"Call {OUTPUT_TOOL} again with a corrected answer."
    )
    [accepted] = accepted_messages(message, offered)
    assert accepted.content == ACCEPTED and not accepted.is_error
    text = offered_answer(spec_of(None), Message.assistant("hi"), None)
    assert text is not None
    assert rejected_problem("polite", "say please", text).endswith("Answer again, corrected.")
    assert accepted_messages(Message.assistant("hi"), text) == []


def test_tool_turns_are_not_final_answers() -> None:
    spec = spec_of(Shipment, tools=[lookup])
    message = Message.assistant(None, [ToolCall(id="c1", name="lookup", arguments="{}")])
    assert offered_answer(spec, message, NATIVE) is None
    plain = spec_of(None)
    assert plain.output is None
    offered = offered_answer(plain, Message.assistant("Hello."), None)
    assert offered is not None and offered.value == "Hello." and offered.problem is None
    assert answer_text(plain, "Hello.") == "Hello."


# --- asking the model ------------------------------------------------------------------------


@tool
def lookup(order_id: int) -> str:
    """Look up an order."""
    return "shipped"


def test_native_requests_offer_the_final_answer_tool() -> None:
    spec = spec_of(Shipment, tools=[lookup])
    body = render_wire_request(
        [Message.system("Answer."), Message.user("Where is 7?")],
        spec.tools,
        temperature=None,
        max_tokens=None,
        wire=NATIVE,
        output=spec.output,
    )
    assert [t["function"]["name"] for t in body["tools"]] == ["lookup", OUTPUT_TOOL]
    assert body["tools"][1]["function"]["parameters"] == spec.output.json_schema  # type: ignore[union-attr]
    assert body["tool_choice"] == "required"
    text_ok = spec_of(str)
    body = render_wire_request(
        [], [], temperature=None, max_tokens=None, wire=NATIVE, output=text_ok.output
    )
    assert body["tool_choice"] == "auto"
    assert body["tools"][0]["function"]["parameters"]["properties"] == {
        "result": {"type": "string"}
    }


def test_a_structured_wire_needs_its_output() -> None:
    with pytest.raises(ValueError, match="output="):
        render_wire_request([], [], temperature=None, max_tokens=None, wire=NATIVE)


def test_json_schema_requests_constrain_the_answer_to_the_output() -> None:
    spec = spec_of(list[Shipment], tools=[lookup])
    assert spec.output is not None
    schema = envelope_schema(spec.tools, spec.output)
    answer = schema["anyOf"][-1]["properties"]["answer"]
    assert answer == {"type": "array", "items": {"$ref": "#/$defs/Shipment"}}
    assert set(schema["$defs"]["Shipment"]["properties"]) == {"order_id", "shipped", "carrier"}
    assert "title" not in schema["$defs"]["Shipment"]
    messages = [Message.system("Answer."), Message.user("Orders?")]
    rendered = json_mode_messages(messages, spec.tools, output=spec.output)
    assert rendered[0]["content"].endswith(
        'To give the final answer: {"answer": [{"order_id": integer, "shipped": boolean, '
        '"carrier": string or null}, ...]}.'
    )
    # Without tools the envelope is the answer alone.
    no_tools = spec_of(int)
    body = render_wire_request(
        messages, [], temperature=None, max_tokens=None, wire=ENVELOPE, output=no_tools.output
    )
    assert body["messages"][0]["content"] == 'Answer.\n\nReply with JSON only: {"answer": integer}.'
    assert body["response_format"]["json_schema"]["schema"] == {
        "anyOf": [
            {
                "type": "object",
                "properties": {"answer": {"type": "integer"}},
                "required": ["answer"],
                "additionalProperties": False,
            }
        ]
    }


def test_after_a_tool_result_the_answer_is_still_constrained() -> None:
    """The local provider asks for the answer alone after a tool result (answer_only):
    with an output type that answer is still the type's JSON, enforced."""
    spec = spec_of(Shipment, tools=[lookup])
    call = ToolCall(id="c1", name="lookup", arguments='{"order_id": 7}')
    messages = [
        Message.system("Answer."),
        Message.user("Where is 7?"),
        Message.assistant(None, [call]),
        Message.tool(call, "shipped"),
    ]
    wire = ENVELOPE.model_copy(update={"answer_only": True})
    body = render_wire_request(
        messages, spec.tools, temperature=None, max_tokens=None, wire=wire, output=spec.output
    )
    assert body["messages"] == [
        {
            "role": "system",
            "content": 'Answer.\n\nReply with JSON only: {"answer": {"order_id": integer, '
            '"shipped": boolean, "carrier": string or null}}.',
        },
        {"role": "user", "content": "Where is 7?\n\n(lookup(order_id=7) returned: shipped)"},
    ]
    [option] = body["response_format"]["json_schema"]["schema"]["anyOf"]
    assert option["required"] == ["answer"]


def test_an_earlier_structured_answer_is_shown_as_json() -> None:
    spec = spec_of(Shipment)
    messages = [
        Message.system("Answer."),
        Message.user("Where is 7?"),
        Message.assistant('{"order_id": 7, "shipped": true}'),
        Message.user("And 8?"),
    ]
    rendered = json_mode_messages(messages, [], output=spec.output)
    assert rendered[2] == {
        "role": "assistant",
        "content": '{"answer": {"order_id": 7, "shipped": true}}',
    }


# --- the agent's definition ---------------------------------------------------------------


def test_the_snapshot_records_the_output_and_old_snapshots_have_none() -> None:
    def known_order(s: Shipment) -> str | None:
        return None

    spec = spec_of(Shipment, output_validators=[known_order])
    assert spec.output_validators == ["known_order"]
    again = AgentSpec.model_validate_json(spec.model_dump_json())
    assert again.output == spec.output
    old = AgentSpec.model_validate({"name": "a", "instructions": "x", "model": "local"})
    assert old.output is None and old.output_validators == []


def test_bad_output_definitions_are_config_errors() -> None:
    @tool(name=OUTPUT_TOOL)
    def clash() -> str:
        """Clashes."""
        return ""

    with pytest.raises(ConfigError, match="final-answer tool"):
        Agent("a", instructions="x", tools=[clash], output_type=Shipment)
    with pytest.raises(ConfigError, match="pydantic cannot describe it"):
        Agent("a", instructions="x", output_type=object())

    def check(x: Any) -> None:
        return None

    with pytest.raises(ConfigError, match="two output validators are named 'check'"):
        Agent("a", instructions="x", output_validators=[check, check])
    # A tool may be named final_result on an agent with no output type.
    Agent("a", instructions="x", tools=[clash])


def test_typed_results_follow_the_type() -> None:
    result = RunResult(
        output='{"order_id": 7, "shipped": true}',
        turns=1,
        usage=Usage(),
        tool_calls=0,
        output_type="Shipment",
        data={"order_id": 7, "shipped": True},
    )
    typed = typed_result("r", result, Shipment)
    assert typed.output == Shipment(order_id=7, shipped=True)
    assert typed.text == result.output and typed.turns == 1
    assert typed_result("r", result, dict[str, Any]).output == {"order_id": 7, "shipped": True}
    with pytest.raises(ConfigError, match="is not a valid int"):
        typed_result("r", result, int)
    text = RunResult(output="It shipped.", turns=1, usage=Usage(), tool_calls=0)
    assert typed_result("r", text, str).output == "It shipped."


def test_a_type_checker_follows_the_output_type(tmp_path: Path) -> None:
    """``result(output_type=X)`` is ``TypedRunResult[X]`` for mypy, for every kind of type."""
    source = tmp_path / "typed_usage.py"
    source.write_text(
        "from dataclasses import dataclass\n"
        "from pydantic import BaseModel\n"
        "from typing_extensions import TypedDict\n"
        "from ratchet import AgentClient\n"
        "class S(BaseModel):\n    a: int\n"
        "@dataclass\nclass D:\n    a: int\n"
        "class T(TypedDict):\n    a: int\n"
        "async def main(client: AgentClient) -> None:\n"
        "    reveal_type((await client.run('x', 'y', output_type=S)).output)\n"
        "    reveal_type((await client.run('x', 'y', output_type=list[S])).output)\n"
        "    reveal_type((await client.get('x').result(D)).output)\n"
        "    reveal_type((await client.get('x').result(T)).output)\n"
        "    reveal_type((await client.get('x').result(int)).output)\n"
        "    reveal_type((await client.run('x', 'y')).output)\n"
    )
    done = mypy_strict(source)
    revealed = [
        line.split("Revealed type is ")[1]
        for line in done.stdout.splitlines()
        if "Revealed" in line
    ]
    assert revealed == [
        '"typed_usage.S"',
        '"list[typed_usage.S]"',
        '"typed_usage.D"',
        "\"TypedDict(typed_usage.T, {'a': int})\"",
        '"int"',
        '"str"',
    ], done.stdout


def test_a_follower_prints_an_answer_sent_back() -> None:
    from datetime import UTC, datetime

    from ratchet._render import describe_event
    from ratchet.events import OutputChecked

    at = datetime.now(UTC)
    rejected = OutputChecked(
        seq=1, at=at, turn=2, check="known_order", accepted=False, message="no"
    )
    assert describe_event(rejected, "r") == "output    known_order rejected: no"
    accepted = OutputChecked(seq=2, at=at, turn=2, check="schema", accepted=True)
    assert describe_event(accepted, "r") is None
