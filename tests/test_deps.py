"""Dependencies for tools: ``create_worker(deps=...)`` gives tools their clients through
``ToolContext.deps``, looked up in the worker, never written to a run's history."""

from __future__ import annotations

import sqlite3
import textwrap
from pathlib import Path

import pytest
from temporalio.client import Client

from ratchet import Agent, ConfigError, ToolContext, create_worker, tool
from ratchet._deps import resolve_deps
from ratchet.testing import ScriptedModelServer, call, reply, tool_calls
from ratchet.worker import WorkerSettings

from .conftest import decoded_history_text, hosted, mypy_strict

SECRET = "dsn=postgres://deps-secret-7f3a@db"


class Shop:
    """A real SQLite connection, and a secret that must never reach the history."""

    def __init__(self, path: Path) -> None:
        # The tool runs in a thread (sync tools do): the connection is shared with it.
        self.db = sqlite3.connect(path, check_same_thread=False)
        self.db.execute("create table orders (id integer primary key, status text)")
        self.db.execute("insert into orders values (7, 'shipped'), (8, 'packing')")
        self.db.commit()
        self.secret = SECRET

    def __repr__(self) -> str:
        return f"Shop({self.secret})"


@tool
def order_status(order_id: int, ctx: ToolContext[Shop]) -> str:
    """Look up an order's status.

    Args:
        order_id: the order number.
    """
    row = ctx.deps.db.execute("select status from orders where id = ?", (order_id,)).fetchone()
    return "no such order" if row is None else str(row[0])


def shop_agent(name: str = "shop") -> Agent:
    return Agent(
        name, instructions="Answer about orders.", model="openai:test", tools=[order_status]
    )


async def test_a_tool_reads_a_real_database_from_deps_and_the_history_never_holds_them(
    temporal_client: Client, model_server: ScriptedModelServer, tmp_path: Path
) -> None:
    shop = Shop(tmp_path / "shop.sqlite")
    model_server.add(
        tool_calls(call("order_status", {"order_id": 8})),
        reply("Order 8 is being packed."),
    )
    async with hosted(temporal_client, [shop_agent()], model_server, deps=shop) as client:
        handle = await client.start("shop", "Where is order 8?")
        result = await handle.result()
    model_server.verify()
    assert result.output == "Order 8 is being packed."
    # The tool's answer came from the database, and the model saw it.
    tool_message = model_server.requests[1].messages[-1]
    assert tool_message["role"] == "tool" and tool_message["content"] == "packing"
    history = await temporal_client.get_workflow_handle(handle.id).fetch_history()
    raw = decoded_history_text(history.to_json_dict())
    assert "packing" in raw  # the search can find what the history does hold
    assert SECRET not in raw and repr(shop) not in raw and "Shop(" not in raw
    shop.db.close()


async def test_deps_per_agent_by_mapping_and_by_factory(
    temporal_client: Client, model_server: ScriptedModelServer, tmp_path: Path
) -> None:
    seen: list[str] = []

    @tool
    def whoami(ctx: ToolContext[str]) -> str:
        """Say whose deps these are."""
        return ctx.deps

    def agent(name: str) -> Agent:
        return Agent(name, instructions="x", model="openai:test", tools=[whoami])

    def factory(a: Agent) -> str:
        seen.append(a.name)
        return f"deps of {a.name}"

    model_server.add(tool_calls(call("whoami", {})), reply("done"))
    model_server.add(tool_calls(call("whoami", {})), reply("done"))
    async with hosted(
        temporal_client, [agent("one"), agent("two")], model_server, deps=factory
    ) as client:
        await client.run("two", "who?")
        assert seen == ["one", "two"]  # once per agent, when the worker was built
        async with hosted(
            temporal_client, [agent("three")], model_server, deps={"three": "mapped"}
        ) as mapped:
            await mapped.run("three", "who?")
    model_server.verify()
    results = [
        r.messages[-1]["content"] for r in model_server.requests if r.messages[-1]["role"] == "tool"
    ]
    assert results == ["deps of two", "mapped"]


async def test_a_deps_mapping_naming_an_unknown_agent_is_a_config_error(
    temporal_client: Client,
) -> None:
    with pytest.raises(ConfigError, match=r"deps names agent\(s\) 'shipping'.*hosted: shop"):
        create_worker(temporal_client, [shop_agent()], deps={"shop": 1, "shipping": 2})


def test_how_deps_are_read() -> None:
    agents = {"a": shop_agent("a"), "b": shop_agent("b")}

    class Callable_:
        def __call__(self, agent: Agent) -> str:
            return "called"

    shared = Callable_()
    # A callable object or a class is the deps itself; only functions are factories.
    assert resolve_deps(shared, agents) == {"a": shared, "b": shared}
    assert resolve_deps(Callable_, agents) == {"a": Callable_, "b": Callable_}
    assert resolve_deps(lambda a: a.name.upper(), agents) == {"a": "A", "b": "B"}
    assert resolve_deps(None, agents) == {}
    assert resolve_deps({"a": 1}, agents) == {"a": 1}

    def broken(agent: Agent) -> object:
        raise RuntimeError("no database")

    with pytest.raises(ConfigError, match="raised RuntimeError for agent 'a': no database"):
        resolve_deps(broken, agents)

    async def not_sync(agent: Agent) -> object:
        return object()

    with pytest.raises(ConfigError, match="is async"):
        resolve_deps(not_sync, agents)


def test_worker_flag_loads_deps(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "deps_app.py").write_text(
        textwrap.dedent(
            """
            from ratchet import Agent
            agent = Agent("flagged", instructions="x")
            def make_deps(agent):
                return {"for": agent.name}
            """
        )
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    settings = WorkerSettings.from_flags(app="deps_app:agent", deps="deps_app:make_deps")
    assert resolve_deps(settings.deps, {a.name: a for a in settings.agents}) == {
        "flagged": {"for": "flagged"}
    }
    with pytest.raises(ConfigError, match="module 'deps_app' has no attribute 'nope'"):
        WorkerSettings.from_flags(app="deps_app:agent", deps="deps_app:nope")


def test_tool_context_is_typed_by_its_deps(tmp_path: Path) -> None:
    """``ToolContext[Shop]`` types ``ctx.deps`` for mypy; a bare ``ToolContext`` still works."""
    snippet = tmp_path / "typed_deps.py"
    snippet.write_text(
        textwrap.dedent(
            """
            from ratchet import ToolContext

            class Db:
                def query(self) -> int:
                    return 1

            def typed(ctx: ToolContext[Db]) -> int:
                return ctx.deps.query()

            def wrong(ctx: ToolContext[Db]) -> str:
                return ctx.deps.query()

            def bare(ctx: ToolContext) -> None:
                ctx.deps.anything()
            """
        )
    )
    out = mypy_strict(snippet)
    errors = [line for line in out.stdout.splitlines() if ": error:" in line]
    # Exactly one error: returning the typed deps' int as str.
    assert len(errors) == 1 and "typed_deps.py:12" in errors[0], out.stdout + out.stderr
