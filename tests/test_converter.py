"""ratchet's data converter leaves out the empty fields of ratchet's models, and loses
nothing by it (issue 18: a tenth of a run's history was ``"field":null``)."""

from __future__ import annotations

import importlib
import types
from typing import Any, Union, get_args, get_origin

from pydantic import BaseModel
from temporalio.contrib.pydantic import pydantic_data_converter

from ratchet import Agent
from ratchet._converter import DATA_CONVERTER, WIRE_MODULES
from ratchet._protocol import ModelRequest, RunInput, RunResult, ToolRequest
from ratchet.messages import Message, ToolCall, Usage


def _wire_models() -> list[type[BaseModel]]:
    """The models of the wire modules, and every model their fields can hold."""
    todo: list[Any] = []
    for name in WIRE_MODULES:
        module = importlib.import_module(name)
        todo += [
            v
            for v in vars(module).values()
            if isinstance(v, type) and issubclass(v, BaseModel) and v.__module__ == name
        ]
    found: set[type[BaseModel]] = set()
    while todo:
        item = todo.pop()
        if isinstance(item, type) and issubclass(item, BaseModel):
            if item in found:
                continue
            found.add(item)
            todo += [f.annotation for f in item.model_fields.values()]
        else:
            todo += list(get_args(item))
    return sorted(found, key=lambda m: f"{m.__module__}.{m.__qualname__}")


def _admits_none(annotation: Any) -> bool:
    if annotation is None or annotation is type(None) or annotation is Any:
        return True
    origin = get_origin(annotation)
    if origin in (Union, types.UnionType):
        return any(_admits_none(a) for a in get_args(annotation))
    return False


def test_every_optional_field_of_ratchets_models_defaults_to_none() -> None:
    """What makes leaving None out lossless: reading fills in the default, None."""
    models = _wire_models()
    assert len(models) > 40  # the walk found the models
    assert {ModelRequest, Message, Usage} <= set(models)
    wrong = [
        f"{m.__module__}.{m.__qualname__}.{name}"
        for m in models
        for name, field in m.model_fields.items()
        if _admits_none(field.annotation)
        and (field.is_required() or field.default is not None)
        and field.default_factory is None
    ]
    assert wrong == [], "optional fields that must default to None: " + ", ".join(wrong)


def _round_trip(value: BaseModel) -> tuple[bytes, BaseModel]:
    payload = DATA_CONVERTER.payload_converter.to_payloads([value])[0]
    (back,) = DATA_CONVERTER.payload_converter.from_payloads([payload], [type(value)])
    assert isinstance(back, type(value))
    return payload.data, back


def test_ratchets_models_are_written_without_their_none_fields_and_read_back_whole() -> None:
    request = ModelRequest(
        agent="support",
        model="openai:gpt-test",
        turn=2,
        messages=[
            Message.user("hi"),
            Message.assistant(None, [ToolCall(id="c", name="t", arguments="{}")]),
        ],
    )
    data, back = _round_trip(request)
    assert b":null" not in data
    assert back == request
    plain = pydantic_data_converter.payload_converter.to_payloads([request])[0].data
    assert b":null" in plain and len(data) < len(plain)
    # A payload the plain converter wrote (histories recorded before) reads the same.
    (old,) = DATA_CONVERTER.payload_converter.from_payloads(
        [pydantic_data_converter.payload_converter.to_payloads([request])[0]], [ModelRequest]
    )
    assert old == request
    run = RunInput(agent="support", prompt="hi")
    assert _round_trip(run)[1] == run
    # The snapshot (a local activity's result, recorded in a marker) too.
    spec = Agent("support", instructions="Help.", model="openai:gpt-test").spec()
    data, back = _round_trip(spec)
    assert b":null" not in data and back == spec


def test_user_data_keeps_its_nulls() -> None:
    """Only a ratchet model's own fields are left out, never a key of a dict it holds."""
    result = RunResult(
        output="{}", turns=1, usage=Usage(), tool_calls=0, data={"note": None, "items": [None]}
    )
    data, back = _round_trip(result)
    assert b'"note":null' in data and b"[null]" in data
    assert back == result
    call = ToolRequest(
        agent="support",
        call=ToolCall(id="c", name="t", arguments='{"x": null}'),
        arguments={"x": None},
    )
    data, back = _round_trip(call)
    assert b'"arguments":{"x":null}' in data
    assert back == call


def test_fields_older_workers_require_are_written_even_when_none() -> None:
    """``Carried.head``, ``HandoffRequest.head`` and ``Condition.value`` were required
    before issue 18: a worker of that release must still read what newer ones write."""
    from ratchet._protocol import HandoffRequest
    from ratchet.policy import Condition

    request = HandoffRequest(
        agent="triage", target="billing", turn=1, call_id="c", instructions="Bill."
    )
    data, back = _round_trip(request)
    assert b'"head":null' in data and back == request
    condition = Condition(arg="x", op="eq", value=None)
    payload = DATA_CONVERTER.payload_converter.to_payloads([condition])[0]
    assert b'"value":null' in payload.data


def test_always_written_fields_keep_the_models_json_schema() -> None:
    """The serializer that writes them must not blank the model's schema (OpenAPI)."""
    from ratchet._protocol import Carried
    from ratchet.policy import Condition

    for model in (Condition, Carried):
        schema = model.model_json_schema(mode="serialization")
        assert schema.get("properties"), model
