"""Forks: a new run from a step of a recorded one (``AgentClient.fork``, ``ratchet fork``).

Real Temporal dev server, an in-process worker, the scripted OpenAI-compatible server:
the proof is in the requests the model server received.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client

from ratchet import Agent, ConfigError, Limits, RunFailed, tool
from ratchet._history import executions
from ratchet.events import RunStarted, ToolCallRejected, ToolCallStarted
from ratchet.testing import ScriptedModelServer, call, error, reply, tool_calls
from ratchet.trace import build_trace, render_trace

from .conftest import _test_store, decoded_history_text, hosted
from .test_cli import address, ratchet

FAST = Limits(model_retry_initial_seconds=0.1, model_retry_max_seconds=1.0, max_turns=50)
SHIPPED: list[int] = []
"""One row per execution of the ``ship`` tool: its side effect."""


@tool(side_effects=True)
def ship(order: int) -> str:
    """Ship an order.

    Args:
        order: the order number.
    """
    SHIPPED.append(order)
    return f"shipped {order}"


def shop(limits: Limits = FAST) -> Agent:
    return Agent(
        "shop", instructions="You ship orders.", model="openai:m", tools=[ship], limits=limits
    )


async def _shipped_twice(client: Any, server: ScriptedModelServer) -> str:
    """A run of three turns: ship 1, ship 2, answer. Its messages: 0 system, 1 user,
    2 call, 3 result, 4 call, 5 result, 6 answer."""
    server.add(
        tool_calls(call("ship", {"order": 1})),
        tool_calls(call("ship", {"order": 2})),
        reply("Shipped 1 and 2."),
    )
    handle = await client.start("shop", "Ship orders 1 and 2")
    assert (await handle.result()).output == "Shipped 1 and 2."
    return str(handle.id)


@pytest.mark.parametrize(("at", "original"), [("turn2", 1), ("msg:5", 2)])
async def test_a_fork_sends_the_parents_request_at_the_step_and_runs_no_earlier_tool_again(
    temporal_client: Client, model_server: ScriptedModelServer, at: str, original: int
) -> None:
    SHIPPED.clear()
    async with hosted(temporal_client, [shop()], model_server) as client:
        parent = await _shipped_twice(client, model_server)
        assert SHIPPED == [1, 2]
        model_server.add(tool_calls(call("ship", {"order": 3})), reply("Shipped 3 instead."))
        fork = await client.fork(parent, at=at)
        result = await fork.result()
        events = [e async for e in fork.events(follow=False, store=_test_store())]
        transcript = await fork.transcript(store=_test_store())
    model_server.verify()
    assert result.output == "Shipped 3 instead."
    # The fork's first request is the parent's at the step, byte for byte.
    first = model_server.requests[3]
    assert first.body == model_server.requests[original].body
    # The tools before the step ran once, in the parent; the fork's own call ran live.
    assert SHIPPED == [1, 2, 3]
    # The parent's tool results are its own: the fork's events show no call of theirs.
    assert not [e for e in events if isinstance(e, ToolCallRejected)]
    assert [e.tool for e in events if isinstance(e, ToolCallStarted)] == ["ship"]
    [started] = [e for e in events if isinstance(e, RunStarted)]
    assert started.forked_from is not None
    assert (started.forked_from.run_id, started.forked_from.step) == (parent, at)
    # The transcript opens with the parent's messages (read through the store).
    assert [m.content for m in transcript[:2]] == ["You ship orders.", "Ship orders 1 and 2"]
    # The parent's calls before the step, then the fork's own.
    calls = ["assistant", "tool"] * (original + 1)
    assert [m.role for m in transcript] == ["system", "user", *calls, "assistant"]
    # Shared by reference: the parent's tool results are not copied into the fork's history.
    history = await temporal_client.get_workflow_handle(fork.id).fetch_history()
    assert "shipped 1" not in decoded_history_text(history.to_json_dict())
    desc = await temporal_client.get_workflow_handle(fork.id).describe()
    assert desc.search_attributes.get("RatchetForkOf") == [parent]
    assert (await desc.memo_value("forked_from")) == {"run": parent, "step": at}


async def test_a_fork_edits_the_last_user_message_and_changes_model_and_instructions(
    temporal_client: Client, model_server: ScriptedModelServer
) -> None:
    SHIPPED.clear()
    async with hosted(temporal_client, [shop()], model_server) as client:
        parent = await _shipped_twice(client, model_server)
        model_server.add(reply("Only order 9."))
        fork = await client.fork(
            parent,
            at="msg:1",
            edit_message="Ship order 9",
            instructions="You ship orders, carefully.",
            model="openai:m2",
        )
        assert (await fork.result()).output == "Only order 9."
        trace = await build_trace(temporal_client, fork.id)
    original, forked = model_server.requests[0].body, model_server.requests[3].body
    assert forked["model"] == "m2"
    assert forked["messages"] == [
        {"role": "system", "content": "You ship orders, carefully."},
        {"role": "user", "content": "Ship order 9"},
    ]
    assert {k: v for k, v in forked.items() if k not in ("model", "messages")} == {
        k: v for k, v in original.items() if k not in ("model", "messages")
    }
    assert SHIPPED == [1, 2]
    lines = render_trace(trace)
    assert f"forked from {parent} at msg:1 with message edited to 'Ship order 9'" in lines[2]
    assert trace.prompt == "Ship order 9"


async def test_bad_steps_and_edits_say_which_steps_are_valid(
    temporal_client: Client, model_server: ScriptedModelServer
) -> None:
    async with hosted(temporal_client, [shop()], model_server) as client:
        parent = await _shipped_twice(client, model_server)
        with pytest.raises(ConfigError) as bad:
            await client.fork(parent, at="turn9")
        assert "valid steps are turn1, turn2, turn3, msg:1, msg:3, msg:5" in str(bad.value)
        with pytest.raises(ConfigError) as edit:
            await client.fork(parent, at="turn2", edit_message="Ship order 9")
        assert "ends with a tool message" in str(edit.value)
        assert "steps that end with a user message: turn1, msg:1" in str(edit.value)
        with pytest.raises(ConfigError, match="bad step 'model 2'"):
            await client.fork(parent, at="model 2")
    model_server.verify()


async def test_a_run_that_continued_as_new_forks_at_a_step_of_a_later_execution(
    temporal_client: Client, model_server: ScriptedModelServer
) -> None:
    SHIPPED.clear()
    limits = FAST.model_copy(update={"continue_as_new_after_events": 20})
    model_server.add(*[tool_calls(call("ship", {"order": n})) for n in range(1, 7)])
    model_server.add(reply("Shipped six."))
    async with hosted(temporal_client, [shop(limits)], model_server) as client:
        handle = await client.start("shop", "Ship orders 1 to 6")
        await handle.result()
        assert len(await executions(temporal_client, handle.id)) >= 3
        model_server.add(reply("Stopped at five."))
        fork = await client.fork(handle.id, at="turn6")
        assert (await fork.result()).output == "Stopped at five."
    model_server.verify()
    assert model_server.requests[7].body == model_server.requests[5].body
    assert len(model_server.requests[7].body["messages"]) == 12
    assert SHIPPED == [1, 2, 3, 4, 5, 6]


async def test_ratchet_fork_follows_the_fork_and_trace_shows_its_lineage(
    temporal_client: Client, model_server: ScriptedModelServer, tmp_path: Path
) -> None:
    (tmp_path / "careful.txt").write_text("You ship orders, carefully.")
    where = ["--address", address(temporal_client)]
    env = {
        "RATCHET_TRANSCRIPT_STORE": f"sqlite:///{_test_store().path}",
        "RATCHET_PAYLOAD_STORE": "off",
    }
    async with hosted(temporal_client, [shop()], model_server) as client:
        parent = await _shipped_twice(client, model_server)
        model_server.add(reply("Shipped 2 only."))
        forked = await ratchet(
            "fork",
            parent,
            "--at",
            "turn2",
            "--instructions",
            str(tmp_path / "careful.txt"),
            "--id",
            "shop-fork",
            "--wait",
            "--task-queue",
            client.task_queue,
            *where,
            env=env,
        )
        assert forked.returncode == 0, forked.stderr
        assert f"run shop-fork (fork of {parent} at turn2)" in forked.stdout
        assert "answer: Shipped 2 only." in forked.stdout
        traced = await ratchet("trace", "shop-fork", *where, env=env)
        shown = await ratchet("show", "shop-fork", *where, env=env)
    assert traced.returncode == 0, traced.stderr
    assert (
        f"forked from {parent} at turn2 with instructions 'You ship orders, carefully.'"
        in traced.stdout
    )
    assert "── turn 2" in traced.stdout and "── turn 1" not in traced.stdout
    assert f"forked:  from {parent} at turn2" in shown.stdout
    assert model_server.requests[3].body["messages"][0]["content"] == "You ship orders, carefully."


async def test_the_http_api_forks_a_run_of_the_callers_tenant(
    temporal_client: Client, model_server: ScriptedModelServer, tmp_path: Path
) -> None:
    from ratchet.http import AuthSettings, KeyStore, create_app

    from .http_kit import serve

    keys = KeyStore(tmp_path / "keys.sqlite")
    acme, viewer = keys.create("ops", "operator", "acme")[1], keys.create("v", "viewer")[1]
    globex = keys.create("g", "operator", "globex")[1]
    model_server.add(
        tool_calls(call("ship", {"order": 1})), reply("Shipped 1."), reply("Shipped 1 again.")
    )
    async with hosted(temporal_client, [shop()], model_server) as client:
        app = create_app(client, agents=[shop()], auth=AuthSettings(keys=keys))
        with serve(app) as served:
            async with served.client(acme) as http:
                body = {"agent": "shop", "prompt": "Ship order 1", "id": "acme-1"}
                assert (await http.post("/v1/runs", json=body)).status_code == 201
                await client.get("acme-1").result()
                bad = await http.post("/v1/runs/acme-1/fork", json={"at": "turn7"})
                forked = await http.post(
                    "/v1/runs/acme-1/fork", json={"at": "msg:3", "id": "acme-1-fork"}
                )
                taken = await http.post(
                    "/v1/runs/acme-1/fork", json={"at": "msg:3", "id": "acme-1"}
                )
            async with served.client(globex) as http:
                foreign = await http.post("/v1/runs/acme-1/fork", json={"at": "turn1"})
            async with served.client(viewer) as http:
                refused = await http.post("/v1/runs/acme-1/fork", json={"at": "turn1"})
        assert (await client.get("acme-1-fork").result()).output == "Shipped 1 again."
    assert forked.status_code == 201, forked.text
    assert forked.json() == {
        "id": "acme-1-fork",
        "agent": "shop",
        "status": "running",
        "forked_from": "acme-1",
        "step": "msg:3",
    }
    assert bad.status_code == 400
    assert "valid steps are turn1, turn2, msg:1, msg:3" in bad.json()["detail"]
    assert taken.status_code == 409
    assert foreign.status_code == 404 and refused.status_code == 403
    # The fork belongs to the parent's tenant.
    assert (await client.get("acme-1-fork").input()).tenant == "acme"
    assert model_server.requests[2].body == model_server.requests[1].body


async def test_a_run_that_failed_at_a_model_call_is_forked_there_with_another_model(
    temporal_client: Client, model_server: ScriptedModelServer
) -> None:
    SHIPPED.clear()
    model_server.add(tool_calls(call("ship", {"order": 1})), error(400, message="bad model"))
    async with hosted(temporal_client, [shop()], model_server) as client:
        parent = await client.start("shop", "Ship order 1")
        with pytest.raises(RunFailed):
            await parent.result()
        model_server.add(reply("Shipped 1."))
        fork = await client.fork(parent.id, at="turn2", model="openai:m2")
        assert (await fork.result()).output == "Shipped 1."
        # A fork of the fork: its prompt continues the parent's chain, in the store.
        with pytest.raises(ConfigError, match="pass the workers' transcript store"):
            await client.fork(fork.id, at="turn2")
        model_server.add(reply("Shipped 1 again."))
        again = await client.fork(fork.id, at="turn2", store=_test_store())
        assert (await again.result()).output == "Shipped 1 again."
    failed, retried = model_server.requests[1].body, model_server.requests[2].body
    assert retried == {**failed, "model": "m2"}
    assert model_server.requests[3].body == retried
    assert SHIPPED == [1]
