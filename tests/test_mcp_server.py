"""ratchet agents as an MCP server, driven by the `mcp` SDK's own client: over stdio
(``ratchet mcp serve`` as a subprocess, as a desktop assistant starts it), over
streamable HTTP (with API keys), and in process. A real Temporal dev server, an
in-process worker and the scripted model server answer the runs."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx2 as httpx
import mcp_types as types
import pytest
from mcp import Client, MCPError, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from temporalio.client import Client as TemporalClient

from ratchet import AgentClient
from ratchet.http import KeyStore
from ratchet.mcp import RUN_META_KEY, create_mcp_server
from ratchet.output import OUTPUT_TOOL
from ratchet.testing import ScriptedModelServer, call, reply, tool_calls

from .conftest import ROOT, hosted
from .http_kit import bearer
from .mcp_app import agents

LOOKUP = tool_calls(call("lookup_order", {"order_id": 1042}))
SHIPPED = "Order 1042 has shipped."


def address(client: TemporalClient) -> str:
    return client.service_client.config.target_host


def text_of(result: types.CallToolResult | types.ReadResourceResult) -> str:
    if isinstance(result, types.ReadResourceResult):
        content = result.contents[0]
        assert isinstance(content, types.TextResourceContents)
        return content.text
    block = result.content[0]
    assert isinstance(block, types.TextContent)
    return block.text


async def read_json(mcp: Client, uri: str) -> Any:
    return json.loads(text_of(await mcp.read_resource(uri)))


class Progress:
    """A progress callback that keeps the messages."""

    def __init__(self) -> None:
        self.messages: list[str] = []
        self.values: list[float] = []

    async def __call__(self, progress: float, total: float | None, message: str | None) -> None:
        self.values.append(progress)
        self.messages.append(message or "")

    def saw(self, *parts: str) -> bool:
        return all(any(p in m for m in self.messages) for p in parts)


def serve_command(client: AgentClient, temporal: TemporalClient, *options: str) -> list[str]:
    return [
        "-m",
        "ratchet.cli",
        "mcp",
        "serve",
        *options,
        "--address",
        address(temporal),
        "--task-queue",
        client.task_queue,
    ]


async def test_over_stdio_a_desktop_assistant_runs_agents(
    temporal_client: TemporalClient, model_server: ScriptedModelServer
) -> None:
    model_server.add(
        LOOKUP,
        reply(SHIPPED),
        # Named by --agents only, the tracker still answers with structured content.
        tool_calls(call(OUTPUT_TOOL, {"order_id": 1042, "status": "shipped"})),
    )
    async with hosted(temporal_client, agents(), model_server) as client:
        params = StdioServerParameters(
            command=sys.executable,
            args=serve_command(client, temporal_client, "--agents", "helper,tracker"),
            cwd=str(ROOT),
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        # A desktop assistant speaks the initialize handshake (mode="legacy").
        async with Client(params, mode="legacy", read_timeout_seconds=120) as mcp:
            tools = {t.name: t for t in (await mcp.list_tools()).tools}
            progress = Progress()
            answer = await mcp.call_tool(
                "helper",
                {"prompt": "Where is order 1042?", "run_id": "mcp-stdio-1"},
                progress_callback=progress,
            )
            tracked = await mcp.call_tool("tracker", {"prompt": "Track order 1042."})
            again = await mcp.call_tool(
                "helper", {"prompt": "Where is order 1042?", "run_id": "mcp-stdio-1"}
            )
    model_server.verify()
    assert sorted(tools) == ["helper", "tracker"]
    helper = tools["helper"]
    assert helper.input_schema["required"] == ["prompt"]
    assert set(helper.input_schema["properties"]) == {"prompt", "run_id"}
    assert helper.output_schema is None
    assert not answer.is_error and text_of(answer) == SHIPPED
    assert answer.meta is not None
    run = answer.meta[RUN_META_KEY]
    assert run["id"] == "mcp-stdio-1" and run["uri"] == "ratchet://runs/mcp-stdio-1"
    assert run["turns"] == 2 and run["tool_calls"] == 1
    assert progress.saw("run mcp-stdio-1 started", "lookup_order(order_id=1042) started")
    assert progress.saw("model turn 2: answer Order 1042 has shipped.", "run mcp-stdio-1 completed")
    assert progress.values == sorted(set(progress.values))  # strictly increasing
    assert not tracked.is_error
    assert tracked.structured_content == {"order_id": 1042, "status": "shipped"}
    assert json.loads(text_of(tracked)) == {"order_id": 1042, "status": "shipped"}
    # The same run id and prompt: the run's answer again, no second run (nor model call).
    assert text_of(again) == SHIPPED


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@asynccontextmanager
async def mcp_over_http(url: str, key: str, mode: str = "auto") -> AsyncIterator[Client]:
    """A client of ``url`` sending ``key``; by default it negotiates the newest protocol
    (one self-contained POST per request), ``legacy`` runs the initialize handshake and
    a stateful session (``Mcp-Session-Id``), as most clients do today."""
    async with (
        httpx.AsyncClient(headers=bearer(key), timeout=120) as http,
        Client(
            streamable_http_client(url, http_client=http), mode=mode, read_timeout_seconds=120
        ) as mcp,
    ):
        yield mcp


async def wait_for_status(mcp: Client, uri: str, status: str) -> dict[str, Any]:
    view: dict[str, Any] = {}
    for _ in range(300):
        try:
            view = await read_json(mcp, uri)
        except MCPError as e:  # the call has not started the run yet
            assert "no run with id" in str(e)
        if view.get("status") == status:
            return view
        await asyncio.sleep(0.1)
    raise AssertionError(f"{uri} never reached {status}: {view}")


async def test_over_http_with_api_keys_progress_and_approval_resources(
    temporal_client: TemporalClient, model_server: ScriptedModelServer, tmp_path: Path
) -> None:
    store = KeyStore(tmp_path / "keys.sqlite")
    _, operator = store.create("ops", "operator")
    _, viewer = store.create("watcher", "viewer")
    _, acme = store.create("acme-ops", "operator", "mcp-acme")  # a tenant no other test uses
    store.close()
    port = free_port()
    url = f"http://127.0.0.1:{port}/mcp"
    model_server.add(
        LOOKUP,
        reply(SHIPPED),
        tool_calls(call("refund", {"order_id": 1042, "amount": 50})),
        reply("Refunded $50 on order 1042."),
        tool_calls(call(OUTPUT_TOOL, {"order_id": "not a number"})),
    )
    async with hosted(temporal_client, agents(), model_server) as client:
        command = serve_command(
            client,
            temporal_client,
            "--app",
            "tests.mcp_app:agents",
            "--transport",
            "http",
            "--port",
            str(port),
            "--keys",
            str(tmp_path / "keys.sqlite"),
        )
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            *command,
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            refused = await refusals(url, viewer)
            async with mcp_over_http(url, operator) as mcp:
                tools = {t.name: t for t in (await mcp.list_tools()).tools}
                progress = Progress()
                answer = await mcp.call_tool(
                    "helper", {"prompt": "Where is order 1042?"}, progress_callback=progress
                )

                approval_progress = Progress()
                waiting = asyncio.create_task(
                    mcp.call_tool(
                        "guarded",
                        {"prompt": "Refund $50 on order 1042.", "run_id": "mcp-http-refund"},
                        progress_callback=approval_progress,
                    )
                )
                run_uri = "ratchet://runs/mcp-http-refund"
                status = await wait_for_status(mcp, run_uri, "waiting-approval")
                its_pending = await read_json(mcp, run_uri + "/pending")
                everywhere = await read_json(mcp, "ratchet://pending")
                listed = (await mcp.list_resources()).resources
                templates = (await mcp.list_resource_templates()).resource_templates
                call_id = status["pending_approvals"][0]["call_id"]
                await client.get("mcp-http-refund").approve(call_id, approver="test")
                refunded = await asyncio.wait_for(waiting, timeout=120)
                done = await read_json(mcp, run_uri)
                recent = await read_json(mcp, "ratchet://runs")

                failed = await mcp.call_tool("tracker", {"prompt": "Track order 1042."})
                with pytest.raises(MCPError, match="no run with id 'nobody'"):
                    await mcp.read_resource("ratchet://runs/nobody")
                modern = mcp.protocol_version
            async with mcp_over_http(url, operator, mode="legacy") as legacy:
                legacy_tools = sorted(t.name for t in (await legacy.list_tools()).tools)
                legacy_done = await read_json(legacy, run_uri)
                handshake = legacy.protocol_version
            # A key bound to a tenant sees only its tenant's runs, and cannot attach to
            # another's by its id.
            async with mcp_over_http(url, acme) as tenant:
                with pytest.raises(MCPError, match="no run with id 'mcp-http-refund'"):
                    await tenant.read_resource(run_uri)
                tenant_runs = await read_json(tenant, "ratchet://runs")
                hijack = await tenant.call_tool(
                    "guarded",
                    {"prompt": "Refund $50 on order 1042.", "run_id": "mcp-http-refund"},
                )
        finally:
            proc.send_signal(signal.SIGINT)
            stdout, stderr = await asyncio.wait_for(proc.communicate(), timeout=30)
    model_server.verify()
    assert refused == {"none": 401, "wrong": 401, "viewer": 403}
    assert f"ratchet MCP server on {url}" in stdout.decode()
    assert proc.returncode == 130 and "Traceback" not in stderr.decode(), stderr.decode()

    assert sorted(tools) == ["guarded", "helper", "tracker"] == legacy_tools
    assert (modern, handshake) == ("2026-07-28", "2025-11-25")
    assert legacy_done["output"] == "Refunded $50 on order 1042."
    assert tenant_runs == {"runs": []}
    assert hijack.is_error and "run id 'mcp-http-refund' is taken" in text_of(hijack)
    assert "You are a support agent." in (tools["guarded"].description or "")
    schema = tools["tracker"].output_schema
    assert schema is not None and schema["required"] == ["order_id", "status"]

    assert text_of(answer) == SHIPPED
    assert progress.saw("started", "model turn 1: asking openai:gpt-4o-mini")
    assert progress.saw("lookup_order(order_id=1042) started", "completed")

    assert status["agent"] == "guarded" and status["prompt"] == "Refund $50 on order 1042."
    pending = status["pending_approvals"]
    assert [(p["tool"], p["arguments"]) for p in pending] == [
        ("refund", {"order_id": 1042, "amount": 50})
    ]
    assert status["pending_uri"] == run_uri + "/pending"
    assert its_pending == {"run_id": "mcp-http-refund", "pending": pending}
    assert [p["call_id"] for p in everywhere["pending"] if p["run_id"] == "mcp-http-refund"] == [
        call_id
    ]
    assert {r.uri for r in listed} == {"ratchet://runs", "ratchet://pending"}
    assert {t.uri_template for t in templates} == {
        "ratchet://runs/{run_id}",
        "ratchet://runs/{run_id}/pending",
    }
    assert approval_progress.saw("waiting approval of refund(order_id=1042, amount=50)")
    assert approval_progress.saw("(see ratchet://runs/mcp-http-refund/pending)")
    assert approval_progress.saw(f"approval {call_id} (refund) approved by test")
    assert text_of(refunded) == "Refunded $50 on order 1042."
    assert done["status"] == "completed" and done["output"] == "Refunded $50 on order 1042."
    assert any(r["id"] == "mcp-http-refund" for r in recent["runs"])

    # A failed run is a tool error result that names the error type.
    assert failed.is_error and failed.structured_content is None
    assert text_of(failed).startswith("OutputValidationError: ")
    assert failed.meta is not None and failed.meta[RUN_META_KEY]["error_type"] == (
        "OutputValidationError"
    )


async def refusals(url: str, viewer: str) -> dict[str, int]:
    """Wait for the server; the status codes of requests without a good enough key."""
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
    headers = {"Accept": "application/json, text/event-stream"}
    async with httpx.AsyncClient(timeout=30) as http:
        for _ in range(600):
            try:
                none = await http.post(url, json=body, headers=headers)
                break
            except httpx.TransportError:
                await asyncio.sleep(0.1)
        else:
            raise AssertionError("ratchet mcp serve did not come up")
        assert none.headers["www-authenticate"] == "Bearer"
        assert "needs an API key" in none.json()["detail"]
        wrong = await http.post(url, json=body, headers={**headers, **bearer("rk_wrong")})
        weak = await http.post(url, json=body, headers={**headers, **bearer(viewer)})
        assert "needs the operator role" in weak.json()["detail"]
    return {"none": none.status_code, "wrong": wrong.status_code, "viewer": weak.status_code}


async def test_in_process_the_hosted_agents_are_offered_and_misuse_is_explained(
    temporal_client: TemporalClient, model_server: ScriptedModelServer
) -> None:
    model_server.add(reply("Hello."))
    async with (
        hosted(temporal_client, agents(), model_server) as client,
        # No agents given: the ones the task queue's workers announce.
        Client(create_mcp_server(client)) as mcp,
    ):
        names = sorted(t.name for t in (await mcp.list_tools()).tools)
        empty = await mcp.call_tool("helper", {"prompt": "  "})
        unknown_argument = await mcp.call_tool("helper", {"prompt": "hi", "model": "x"})
        with pytest.raises(MCPError, match="no agent named 'nobody' here"):
            await mcp.call_tool("nobody", {"prompt": "hi"})
        hello = await mcp.call_tool("helper", {"prompt": "Say hello.", "run_id": "mcp-in-1"})
        other_prompt = await mcp.call_tool("helper", {"prompt": "Other.", "run_id": "mcp-in-1"})
    model_server.verify()
    assert names == ["guarded", "helper", "tracker"]
    assert empty.is_error and "'prompt' must be a non-empty string" in text_of(empty)
    assert unknown_argument.is_error and "unknown argument 'model'" in text_of(unknown_argument)
    assert text_of(hello) == "Hello."
    assert other_prompt.is_error and "run 'mcp-in-1' already exists" in text_of(other_prompt)
