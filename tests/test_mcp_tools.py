"""MCP servers as tool sources, end to end: a third-party server from PyPI
(mcp-server-time) and a fault-injecting one (tests/mcp_faulty.py), real subprocesses
and real HTTP, a real Temporal server, the scripted model choosing the tools."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from temporalio.client import Client

from ratchet import Agent, Limits, Policy, require_approval
from ratchet.events import AgentSnapshotted, ToolCallFinished
from ratchet.mcp import MCPServer
from ratchet.testing import RecordedRequest, ScriptedModelServer, Step, call, reply, tool_calls

from .conftest import ROOT, decoded_history_text, hosted

FAST = Limits(model_retry_initial_seconds=0.1, model_retry_max_seconds=0.5, max_turns=6)
TIME_SERVER = str(Path(sys.executable).parent / "mcp-server-time")


def faulty(log: Path, **options: object) -> MCPServer:
    return MCPServer.stdio(
        sys.executable,
        ["-m", "tests.mcp_faulty"],
        name="faulty",
        cwd=ROOT,
        env={"FAULTY_LOG": str(log), "PYTHONPATH": str(ROOT)},
        **options,  # type: ignore[arg-type]
    )


def calls_logged(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


async def test_a_third_party_mcp_server_serves_a_run(
    temporal_client: Client, model_server: ScriptedModelServer
) -> None:
    agent = Agent(
        "clock",
        instructions="Tell the time.",
        model="openai:test",
        limits=FAST,
        tools=[MCPServer.stdio(TIME_SERVER, ["--local-timezone", "UTC"], name="time")],
    )
    model_server.add(
        tool_calls(call("get_current_time", {"timezone": "Europe/Paris"})),
        reply("It is late in Paris."),
    )
    async with hosted(temporal_client, [agent], model_server) as client:
        handle = await client.start("clock", "What time is it in Paris?")
        result = await handle.result()
        events = [e async for e in handle.events(follow=False)]
    model_server.verify()
    assert result.output == "It is late in Paris."
    # Discovered when the run started, recorded in the snapshot, offered to the model.
    [snapshot] = [e for e in events if isinstance(e, AgentSnapshotted)]
    assert {(t.name, t.mcp_server) for t in snapshot.spec.tools} == {
        ("get_current_time", "time"),
        ("convert_time", "time"),
    }
    offered = [t["function"]["name"] for t in model_server.requests[0].body["tools"]]
    assert sorted(offered) == ["convert_time", "get_current_time"]
    # The server's answer reached the model as the tool message.
    [finished] = [e for e in events if isinstance(e, ToolCallFinished)]
    assert finished.outcome == "completed" and not finished.is_error
    assert json.loads(finished.result or "{}")["timezone"] == "Europe/Paris"
    sent = model_server.requests[1].body["messages"][-1]
    assert sent["role"] == "tool" and "Europe/Paris" in sent["content"]


async def test_filters_prefix_results_errors_and_policy(
    temporal_client: Client, model_server: ScriptedModelServer, tmp_path: Path
) -> None:
    log = tmp_path / "calls.log"
    agent = Agent(
        "mcp-mixed",
        instructions="Use the tools.",
        model="openai:test",
        limits=FAST,
        tools=[faulty(log, allow=["lookup", "refuse", "picture"], prefix="f_")],
        policy=Policy(rules=[require_approval("f_refuse")]),
    )
    model_server.add(
        tool_calls(
            call("f_lookup", {"order_id": 7}),
            call("f_picture", {}),
            call("f_refuse", {"reason": "closed"}),
        ),
        reply("Done."),
    )
    async with hosted(temporal_client, [agent], model_server) as client:
        handle = await client.start("mcp-mixed", "Go.")
        for _ in range(200):
            if await handle.pending():
                break
            time.sleep(0.05)
        [waiting] = await handle.pending()
        assert waiting.tool == "f_refuse"  # the policy applies to MCP tools
        await handle.approve(waiting.call_id, approver="ann")
        result = await handle.result()
        events = [e async for e in handle.events(follow=False)]
    assert result.output == "Done."
    offered = sorted(t["function"]["name"] for t in model_server.requests[0].body["tools"])
    assert offered == ["f_lookup", "f_picture", "f_refuse"]  # allow-list and prefix
    done = {e.tool: e for e in events if isinstance(e, ToolCallFinished)}
    assert done["f_lookup"].result == "order 7 shipped" and not done["f_lookup"].is_error
    assert done["f_refuse"].is_error and done["f_refuse"].result == "refused: closed"
    picture = done["f_picture"].result or ""
    assert picture.startswith("a pixel\n[image image/png, ") and "stored as sha256:" in picture
    # Every call carried its idempotency key (the run id and the activity id) in _meta.
    keys = {line.split()[0]: line.split()[1] for line in calls_logged(log)}
    assert keys["lookup"] == f"key={handle.id}/turn1-tool0"
    assert keys["refuse"] == f"key={handle.id}/turn1-tool2"


async def test_secrets_reach_the_server_but_never_the_history(
    temporal_client: Client, model_server: ScriptedModelServer, tmp_path: Path
) -> None:
    secret = "sk-very-secret-4242"
    os.environ["RATCHET_TEST_MCP_SECRET"] = secret
    try:
        agent = Agent(
            "mcp-secret",
            instructions="Check.",
            model="openai:test",
            limits=FAST,
            tools=[
                faulty(
                    tmp_path / "calls.log",
                    env_from=["RATCHET_TEST_MCP_SECRET"],
                    secrets=lambda: {"FROM_CALLBACK": "cb-secret-777"},
                )
            ],
        )
        model_server.add(
            tool_calls(
                call("env_has", {"name": "RATCHET_TEST_MCP_SECRET"}),
                call("env_has", {"name": "FROM_CALLBACK"}),
            ),
            reply("ok"),
        )
        async with hosted(temporal_client, [agent], model_server) as client:
            handle = await client.start("mcp-secret", "Check.")
            await handle.result()
            events = [e async for e in handle.events(follow=False)]
            raw = await temporal_client.get_workflow_handle(handle.id).fetch_history()
    finally:
        del os.environ["RATCHET_TEST_MCP_SECRET"]
    results = [e.result for e in events if isinstance(e, ToolCallFinished)]
    assert results == ["yes", "yes"]  # the server got both
    history = decoded_history_text(raw.to_json_dict())
    assert secret not in history and "cb-secret-777" not in history
    assert "tests.mcp_faulty" not in history  # nor the command line


async def test_a_crash_mid_call_and_a_slow_call_are_retried_with_the_same_key(
    temporal_client: Client, model_server: ScriptedModelServer, tmp_path: Path
) -> None:
    log = tmp_path / "calls.log"
    agent = Agent(
        "mcp-faults",
        instructions="Use the tools.",
        model="openai:test",
        limits=FAST,
        tools=[faulty(log, timeout=1.0, max_attempts=2)],
    )
    model_server.add(
        tool_calls(call("crash", {}), call("hang", {})),
        reply("Recovered."),
    )
    async with hosted(temporal_client, [agent], model_server) as client:
        handle = await client.start("mcp-faults", "Go.")
        result = await handle.result()
        events = [e async for e in handle.events(follow=False)]
    assert result.output == "Recovered."
    done = {e.tool: e for e in events if isinstance(e, ToolCallFinished)}
    # The server died mid-call: the retry reconnected (a new process) and succeeded.
    assert done["crash"].result == "survived" and done["crash"].attempts == 2
    crashes = [line.split() for line in calls_logged(log) if line.startswith("crash")]
    assert len(crashes) == 2 and crashes[0][1] == crashes[1][1] == f"key={handle.id}/turn1-tool0"
    assert crashes[0][2] != crashes[1][2]  # another process
    # A call that never answers times out on each attempt; the model reads the failure.
    assert done["hang"].is_error or done["hang"].outcome != "completed"
    tool_message = model_server.requests[1].body["messages"][-1]
    assert tool_message["role"] == "tool" and "hang" in tool_message["content"]


@pytest.fixture
def http_faulty(tmp_path: Path) -> Iterator[tuple[str, Path, list[subprocess.Popen[bytes]]]]:
    """The fault-injecting server over streamable HTTP on a free loopback port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = tmp_path / "http.log"
    procs: list[subprocess.Popen[bytes]] = []

    def start() -> None:
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "tests.mcp_faulty", "http", str(port)],
                cwd=ROOT,
                env={**os.environ, "FAULTY_LOG": str(log), "PYTHONPATH": str(ROOT)},
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    return
            time.sleep(0.05)
        raise TimeoutError("the MCP HTTP server did not start")

    start()
    yield f"http://127.0.0.1:{port}/mcp", log, procs
    for p in procs:
        p.kill()
        p.wait()


async def test_over_http_a_dropped_session_reconnects(
    temporal_client: Client,
    model_server: ScriptedModelServer,
    http_faulty: tuple[str, Path, list[subprocess.Popen[bytes]]],
) -> None:
    url, log, procs = http_faulty
    agent = Agent(
        "mcp-http",
        instructions="Use the tools.",
        model="openai:test",
        limits=FAST,
        tools=[MCPServer.http(url, name="faulty", headers={"X-Team": "ops"})],
    )
    model_server.add(
        tool_calls(call("lookup", {"order_id": 1})),
        tool_calls(call("lookup", {"order_id": 2})),
        reply("Both shipped."),
    )
    async with hosted(temporal_client, [agent], model_server) as client:
        handle = await client.start("mcp-http", "Orders 1 and 2?")
        await model_server.wait_for_requests_async(2, timeout=30)
        # The server restarts between the two calls: its session with the worker is gone.
        procs[0].kill()
        procs[0].wait()
        command = procs[0].args
        assert isinstance(command, list)
        procs.append(
            subprocess.Popen(
                command,
                cwd=ROOT,
                env={**os.environ, "FAULTY_LOG": str(log), "PYTHONPATH": str(ROOT)},
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        result = await handle.result()
        events = [e async for e in handle.events(follow=False)]
    assert result.output == "Both shipped."
    done = [e for e in events if isinstance(e, ToolCallFinished)]
    assert [e.result for e in done] == ["order 1 shipped", "order 2 shipped"]
    assert [line.split()[0] for line in calls_logged(log)] == ["lookup", "lookup"]


async def test_replaying_a_run_with_mcp_tools_never_contacts_the_server(tmp_path: Path) -> None:
    """Replay runs the workflow code alone, with no worker and no activities: the MCP
    tools come from the snapshot the history recorded, their results from the history."""
    from ratchet.events import events_of

    from .test_determinism import ROOT as HISTORIES
    from .test_determinism import load, replay

    history = load(HISTORIES / "mcp_tools.json")
    assert await replay(history) is None
    events = await events_of(history)
    [snapshot] = [e for e in events if isinstance(e, AgentSnapshotted)]
    assert [(t.name, t.mcp_server, t.mcp_tool) for t in snapshot.spec.tools] == [
        ("lookup", "faulty", "lookup"),
        ("refuse", "faulty", "refuse"),
    ]
    # The two calls ran in parallel: the history has them in the order they finished.
    done = [(e.tool, e.result, e.is_error) for e in events if isinstance(e, ToolCallFinished)]
    assert sorted(done) == [
        ("lookup", "order 5 shipped", False),
        ("refuse", "refused: order 6 cannot be cancelled", True),
    ]
    # Neither the command line nor its environment is in the history.
    assert "mcp_faulty" not in (HISTORIES / "mcp_tools.json").read_text()


async def other_client(client: Client) -> Client:
    """A second connection: one client may run one worker per task queue."""
    return await Client.connect(
        client.service_client.config.target_host,
        namespace=client.namespace,
        data_converter=client.data_converter,
    )


def counting(log: Path, name: str) -> Agent:
    return Agent(
        name,
        instructions="Count.",
        model="openai:test",
        limits=FAST,
        tools=[faulty(log, allow=["counter"], stateful=True, connect_timeout=3.0)],
    )


async def test_a_stateful_server_gives_each_run_its_own_session_on_one_worker(
    temporal_client: Client, model_server: ScriptedModelServer, tmp_path: Path
) -> None:
    log = tmp_path / "calls.log"
    agent = counting(log, "mcp-stateful")
    for _ in range(2):  # two runs, one after the other, two calls each
        model_server.add(
            tool_calls(call("counter", {})), tool_calls(call("counter", {})), reply("ok")
        )
    queue = f"stateful-{os.urandom(4).hex()}"
    second = await other_client(temporal_client)
    async with (
        hosted(temporal_client, [agent], model_server, task_queue=queue) as client,
        hosted(second, [agent], model_server, task_queue=queue),
    ):
        counts: list[list[str]] = []
        for n in range(2):
            handle = await client.start("mcp-stateful", f"Count, run {n}.")
            await handle.result()
            events = [e async for e in handle.events(follow=False)]
            counts.append([e.result or "" for e in events if isinstance(e, ToolCallFinished)])
    for first, second in counts:
        # Each run has its session (a count from 1) and keeps it (the same process).
        assert first.split()[0] == "1" and second.split()[0] == "2", counts
        assert first.split()[1] == second.split()[1], counts
    assert counts[0][0].split()[1] != counts[1][0].split()[1]  # two sessions


async def test_a_stateful_session_on_a_worker_that_is_gone_is_an_error_the_model_reads(
    temporal_client: Client, model_server: ScriptedModelServer, tmp_path: Path
) -> None:
    from ratchet import AgentClient
    from ratchet.testing import in_process_worker

    from .conftest import _test_store

    log = tmp_path / "calls.log"
    agent = counting(log, "mcp-stateful-lost")

    def answer(request: RecordedRequest) -> Step:
        # By the prompt, not by order: a model call retried after its worker left gets
        # the same answer. The second is slow: its worker goes away meanwhile.
        done = sum(1 for m in request.body["messages"] if m["role"] == "tool")
        if done == 3:
            return reply("ok")
        return tool_calls(call("counter", {}), delay=2.0 if done == 1 else 0.0)

    model_server.handler = answer
    queue = f"stateful-{os.urandom(4).hex()}"
    store = _test_store()
    # The first worker is alone when the run starts: it takes the session.
    doomed = in_process_worker(
        await other_client(temporal_client),
        [agent],
        model_server,
        task_queue=queue,
        transcript_store=store,
    )
    await doomed.__aenter__()
    handle = await AgentClient(temporal_client, task_queue=queue).start(
        "mcp-stateful-lost", "Count."
    )
    await model_server.wait_for_requests_async(2, timeout=30)  # the first call is done
    async with hosted(temporal_client, [agent], model_server, task_queue=queue):
        await doomed.__aexit__(None, None, None)  # ...and then it goes away
        result = await handle.result()
        events = [e async for e in handle.events(follow=False)]
    assert result.output == "ok"
    first, lost, fresh = [e for e in events if isinstance(e, ToolCallFinished)]
    assert first.outcome == "completed" and (first.result or "").startswith("1 ")
    # No worker started the second call (its session's worker is gone)...
    assert lost.outcome == "timed_out"
    told = [r.body["messages"][-1] for r in model_server.requests]
    assert any(
        m["role"] == "tool" and "was held by a worker that is gone" in m["content"] for m in told
    )
    # ...and the third got a new session (counting from 1) on the worker left.
    assert fresh.outcome == "completed" and (fresh.result or "").startswith("1 ")
    assert (first.result or "").split()[1] != (fresh.result or "").split()[1]


async def test_ratchet_tools_lists_every_tool_with_its_schema(
    temporal_client: Client, model_server: ScriptedModelServer
) -> None:
    from .test_cli import address, ratchet

    listed = await ratchet("tools", "tool-clock", "--app", "tests.mcp_tool_app:agents", "--json")
    assert listed.returncode == 0, listed.stderr
    tools = {t["name"]: t for t in json.loads(listed.stdout)["tools"]}
    assert {n: t["source"] for n, t in tools.items()} == {
        "note": "function",
        "tool-helper": "sub-agent",
        "transfer_to_tool-desk": "handoff",
        "time_get_current_time": "mcp",  # prefixed; convert_time denied
    }
    assert "timezone" in tools["time_get_current_time"]["parameters"]["properties"]
    assert tools["time_get_current_time"]["detail"] == "mcp server time (tool get_current_time)"
    # Without --app: what the agent's most recent run recorded.
    none_yet = await ratchet("tools", "tool-clock", "--address", address(temporal_client))
    assert none_yet.returncode != 0 and "no run of agent 'tool-clock'" in none_yet.stderr
    from .mcp_tool_app import agents

    model_server.add(reply("noon"))
    async with hosted(temporal_client, agents, model_server) as client:
        run = await client.run("tool-clock", "Time?")
    assert run.output == "noon"
    recorded = await ratchet("tools", "tool-clock", "--address", address(temporal_client))
    assert recorded.returncode == 0, recorded.stderr
    assert "4 tool(s), as recorded by run tool-clock-" in recorded.stdout
    assert "time_get_current_time  [mcp] mcp server time (tool get_current_time)" in (
        recorded.stdout
    )


async def test_tools_are_discovered_again_at_continue_as_new_when_asked(
    temporal_client: Client, model_server: ScriptedModelServer, tmp_path: Path
) -> None:
    log = tmp_path / "calls.log"
    agent = Agent(
        "mcp-refresh",
        instructions="Use the tools.",
        model="openai:test",
        # Continue as new at the first turn boundary after ~20 history events.
        limits=FAST.model_copy(update={"continue_as_new_after_events": 20, "max_turns": 12}),
        tools=[faulty(log, allow=["unlock", "lookup", "extra"], refresh_on_continue_as_new=True)],
    )

    def answer(request: RecordedRequest) -> Step:
        offered = [t["function"]["name"] for t in request.body.get("tools", [])]
        results = [m["content"] for m in request.body["messages"] if m["role"] == "tool"]
        if not results:
            return tool_calls(call("unlock", {}))
        if "extra works" in results:
            return reply("done")
        if "extra" in offered:
            return tool_calls(call("extra", {}))
        assert len(results) < 6, "the run never continued as new with the new tool list"
        return tool_calls(call("lookup", {"order_id": len(results)}))

    model_server.handler = answer
    async with hosted(temporal_client, [agent], model_server) as client:
        handle = await client.start("mcp-refresh", "Unlock, then use the extra tool.")
        result = await handle.result()
        status = await handle.status()
        events = [e async for e in handle.events(follow=False)]
    offered = [
        sorted(t["function"]["name"] for t in r.body["tools"]) for r in model_server.requests
    ]
    assert result.output == "done" and status.execution >= 2
    # The first execution offers what the run started with; after continuing as new,
    # the server's new tool too.
    assert offered[0] == ["lookup", "unlock"]
    assert offered[-1] == ["extra", "lookup", "unlock"]
    # ...and the new list came from the refresh activity, recorded in the history.
    history = decoded_history_text(
        (await temporal_client.get_workflow_handle(handle.id).fetch_history()).to_json_dict()
    )
    assert "ratchet.refresh_mcp_tools" in history
    assert any(
        e.tool == "extra" and e.result == "extra works"
        for e in events
        if isinstance(e, ToolCallFinished)
    )


async def test_discovery_errors_say_what_to_do(tmp_path: Path) -> None:
    """A server that dies at start is a retryable MCPUnavailable (not a bad answer); a
    missing command says how to fix it."""
    from temporalio.exceptions import ApplicationError

    from ratchet.mcp._sessions import MCPSessions
    from ratchet.mcp._tools import discover

    sessions = MCPSessions()
    dying = MCPServer.stdio(sys.executable, ["-c", "raise SystemExit(3)"], name="dying")
    missing = MCPServer.stdio("no-such-mcp-server-xyz", name="missing")
    try:
        with pytest.raises(ApplicationError) as died:
            await discover(sessions, "a", dying, set())
        with pytest.raises(ApplicationError) as absent:
            await discover(sessions, "a", missing, set())
    finally:
        await sessions.close()
    assert died.value.type == "MCPUnavailable" and not died.value.non_retryable
    assert "ExceptionGroup" not in str(died.value)
    assert absent.value.type == "MCPUnavailable"
    assert "on its PATH" in str(absent.value)
