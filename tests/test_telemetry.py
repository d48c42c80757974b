"""Tracing (OpenTelemetry) and metrics (Prometheus) against a real server and real workers."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer

from ratchet import (
    Agent,
    AgentClient,
    AgentWorkflow,
    ConfigError,
    Limits,
    Price,
    connect,
    telemetry,
    tool,
)
from ratchet.local._proc import free_port
from ratchet.telemetry import configure_tracing, metrics_runtime, record_cost, tracing_interceptor
from ratchet.testing import ScriptedModelServer, ScriptedUsage, call, error, reply, tool_calls
from ratchet.worker import workflow_runner

from .conftest import API_KEY, ROOT, hosted

FAST = Limits(model_retry_initial_seconds=0.1, model_retry_max_seconds=0.5, max_turns=5)
PRICES = {"openai:gpt-test": Price(input=2.0, output=8.0)}


@tool
def lookup_order(order_id: int) -> dict[str, object]:
    """Look up an order.

    Args:
        order_id: the order number.
    """
    return {"id": order_id, "status": "shipped"}


@tool
def inventory(sku: str) -> str:
    """Check stock for a SKU."""
    raise ValueError(f"inventory database locked while reading {sku}")


def observed_agent(name: str = "observed") -> Agent:
    return Agent(
        name,
        instructions="You are a support agent.",
        model="openai:gpt-test",
        tools=[lookup_order, inventory],
        limits=FAST,
    )


cli_agents = [observed_agent("cli-observed")]
"""Hosted by the `ratchet worker` subprocess of the CLI test."""


def script_one_run(server: ScriptedModelServer) -> None:
    """Model, then two tools in parallel (one fails), then the final answer."""
    server.add(
        tool_calls(
            call("lookup_order", {"order_id": 1042}, id="call_lookup"),
            call("inventory", {"sku": "A-1"}, id="call_inventory"),
            usage=ScriptedUsage(120, 15),
        ),
        reply("Order 1042 has shipped.", usage=ScriptedUsage(200, 8)),
    )


def address(env: WorkflowEnvironment) -> str:
    return env.client.service_client.config.target_host


# --- tracing ---------------------------------------------------------------------------------


def by_name(spans: tuple[ReadableSpan, ...], name: str) -> list[ReadableSpan]:
    return [s for s in spans if s.name == name]


def only(spans: tuple[ReadableSpan, ...], name: str) -> ReadableSpan:
    found = by_name(spans, name)
    assert len(found) == 1, f"{len(found)} spans named {name!r}: {sorted(s.name for s in spans)}"
    return found[0]


def parent_of(span: ReadableSpan, spans: tuple[ReadableSpan, ...]) -> ReadableSpan:
    assert span.parent is not None, f"{span.name} has no parent"
    parents = [s for s in spans if s.context.span_id == span.parent.span_id]
    assert len(parents) == 1, f"the parent of {span.name} was not recorded"
    return parents[0]


async def test_one_run_yields_the_span_tree_without_duplicates_on_replay(
    temporal_env: WorkflowEnvironment, model_server: ScriptedModelServer
) -> None:
    exporter = InMemorySpanExporter()
    provider = configure_tracing(exporter=exporter, set_global=False)
    interceptor = tracing_interceptor(provider)
    client = await connect(address(temporal_env), interceptors=[interceptor])
    script_one_run(model_server)
    # No workflow cache: every workflow task replays the run from its first event.
    async with hosted(
        client, [observed_agent()], model_server, max_cached_workflows=0, prices=PRICES
    ) as agents:
        handle = await agents.start("observed", "Where is order 1042?")
        result = await handle.result()
    assert result.output == "Order 1042 has shipped."
    spans = exporter.get_finished_spans()

    # Replaying the whole history again (as a new worker would) records no span either.
    history = await client.get_workflow_handle(handle.id).fetch_history()
    replayer = Replayer(
        workflows=[AgentWorkflow],
        interceptors=[interceptor],
        data_converter=pydantic_data_converter,
        workflow_runner=workflow_runner(),
    )
    await replayer.replay_workflow(history)
    assert len(exporter.get_finished_spans()) == len(spans)
    names = Counter(s.name for s in spans)

    # One span per step, however often the workflow replayed.
    assert names["chat gpt-test"] == 2, names
    assert names["execute_tool lookup_order"] == 1, names
    assert names["execute_tool inventory"] == 1, names
    assert names["StartActivity:ratchet.call_model"] == 2, names
    assert names["RunActivity:ratchet.call_model"] == 2, names
    assert names["StartActivity:ratchet.run_tool"] == 2, names
    assert names["RunActivity:ratchet.run_tool"] == 2, names
    assert names["StartActivity:ratchet.snapshot_agent"] == 1, names
    assert names["RunActivity:ratchet.snapshot_agent"] == 1, names
    assert names["RunWorkflow:ratchet.Agent"] == 1, names
    assert len({s.context.trace_id for s in spans}) == 1, "one run, one trace"

    # The client's StartWorkflow span is the root. The workflow's spans hang from it
    # (RunWorkflow, StartActivity..., CompleteWorkflow are zero-length and created once,
    # never on replay), each RunActivity hangs from its StartActivity, and ratchet's
    # GenAI spans from their RunActivity.
    start = only(spans, "StartWorkflow:ratchet.Agent")
    assert start.parent is None and start.kind == SpanKind.CLIENT
    run = only(spans, "RunWorkflow:ratchet.Agent")
    assert parent_of(run, spans) is start
    assert parent_of(only(spans, "CompleteWorkflow:ratchet.Agent"), spans) is start
    for activity in ("snapshot_agent", "call_model", "run_tool"):
        for span in by_name(spans, f"RunActivity:ratchet.{activity}"):
            scheduled = parent_of(span, spans)
            assert scheduled.name == f"StartActivity:ratchet.{activity}"
            assert parent_of(scheduled, spans) is start
            assert (scheduled.start_time or 0) >= (run.start_time or 0)

    chats = sorted(by_name(spans, "chat gpt-test"), key=lambda s: s.start_time or 0)
    for chat in chats:
        assert parent_of(chat, spans).name == "RunActivity:ratchet.call_model"
        assert chat.kind == SpanKind.CLIENT
    first, second = (dict(c.attributes or {}) for c in chats)
    assert first == {
        "gen_ai.operation.name": "chat",
        "gen_ai.system": "openai",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "gpt-test",
        "gen_ai.agent.name": "observed",
        "gen_ai.response.model": "gpt-test",
        "gen_ai.usage.input_tokens": 120,
        "gen_ai.usage.output_tokens": 15,
        "gen_ai.response.finish_reasons": ("tool_calls",),
        "ratchet.turn": 1,
        "ratchet.attempt": 1,
        "ratchet.cost_usd": pytest.approx((120 * 2.0 + 15 * 8.0) / 1e6),
    }
    assert second["gen_ai.usage.input_tokens"] == 200
    assert second["gen_ai.usage.output_tokens"] == 8
    assert second["gen_ai.response.finish_reasons"] == ("stop",)
    assert second["ratchet.turn"] == 2

    lookup = only(spans, "execute_tool lookup_order")
    assert parent_of(lookup, spans).name == "RunActivity:ratchet.run_tool"
    assert dict(lookup.attributes or {}) == {
        "gen_ai.operation.name": "execute_tool",
        "gen_ai.tool.name": "lookup_order",
        "gen_ai.tool.call.id": "call_lookup",
        "gen_ai.tool.type": "function",
        "gen_ai.agent.name": "observed",
        "ratchet.attempt": 1,
    }
    assert lookup.status.status_code == StatusCode.UNSET
    failed = only(spans, "execute_tool inventory")
    assert failed.attributes is not None
    assert failed.attributes["gen_ai.tool.call.id"] == "call_inventory"
    assert failed.attributes["error.type"] == "ToolError"
    assert failed.status.status_code == StatusCode.ERROR
    assert "inventory database locked" in (failed.status.description or "")


async def test_a_failed_model_call_attempt_is_an_error_span(
    temporal_env: WorkflowEnvironment, model_server: ScriptedModelServer
) -> None:
    exporter = InMemorySpanExporter()
    provider = configure_tracing(exporter=exporter, set_global=False)
    client = await connect(address(temporal_env), interceptors=[tracing_interceptor(provider)])
    model_server.add(error(503), reply("fine now"))
    async with hosted(client, [observed_agent()], model_server) as agents:
        assert (await agents.run("observed", "hi")).output == "fine now"
    chats = sorted(exporter.get_finished_spans(), key=lambda s: s.start_time or 0)
    chats = [s for s in chats if s.name == "chat gpt-test"]
    assert [c.attributes and c.attributes["ratchet.attempt"] for c in chats] == [1, 2]
    assert chats[0].status.status_code == StatusCode.ERROR
    assert chats[0].attributes and chats[0].attributes["error.type"] == "ModelServerError"
    assert chats[1].status.status_code == StatusCode.UNSET


async def test_tracing_is_off_without_the_interceptor(
    temporal_client: Client, model_server: ScriptedModelServer
) -> None:
    """Off by default: inside the activities of a plain worker no span code runs at all."""
    seen: list[object] = []

    @tool
    def probe() -> str:
        """Report what the activity sees."""
        seen.append(telemetry._tracer.get())
        seen.append(trace.get_current_span().is_recording())
        return "ok"

    agent = Agent("plain", instructions="x", model="openai:gpt-test", tools=[probe], limits=FAST)
    model_server.add(tool_calls(call("probe", {})), reply("done"))
    async with hosted(temporal_client, [agent], model_server) as agents:
        await agents.run("plain", "probe")
    assert seen == [None, False]


def test_configure_tracing_needs_a_destination(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", raising=False)
    with pytest.raises(ConfigError, match="OTEL_EXPORTER_OTLP_ENDPOINT"):
        configure_tracing(set_global=False)
    with pytest.raises(ConfigError, match="bad OTLP endpoint"):
        configure_tracing("collector:4318", set_global=False)


def test_ratchet_works_without_opentelemetry() -> None:
    """The otel extra is optional: without it ratchet imports, and tracing says what to install."""
    code = """
import sys
sys.modules["opentelemetry"] = None  # as if not installed
import ratchet, ratchet.cli, ratchet.worker
from ratchet.telemetry import configure_tracing, metrics_runtime, record_cost, tracing_interceptor
record_cost("a", "local", 0.1)  # outside an activity: nothing to do
for f in (configure_tracing, tracing_interceptor):
    try:
        f("http://127.0.0.1:4318") if f is configure_tracing else f()
    except ratchet.ConfigError as e:
        assert "pip install 'ratchet[otel]'" in str(e), e
    else:
        raise AssertionError(f"{f.__name__} did not fail")
print("ok")
"""
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert out.stdout.strip() == "ok", out.stderr


# --- metrics ---------------------------------------------------------------------------------

_SAMPLE = re.compile(r"^(?P<name>[a-zA-Z_:][\w:]*)(?:\{(?P<labels>.*)\})?\s+(?P<value>\S+)$")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def scrape(port: int) -> list[tuple[str, dict[str, str], float]]:
    """The samples of a Prometheus text exposition."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    samples = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        assert m, line
        labels = dict(_LABEL.findall(m["labels"] or ""))
        samples.append((m["name"], labels, float(m["value"])))
    return samples


def value(samples: list[tuple[str, dict[str, str], float]], name: str, **labels: str) -> float:
    """The sum of the samples named ``name`` whose labels include ``labels``."""
    return sum(
        v for n, ls, v in samples if n == name and all(ls.get(k) == x for k, x in labels.items())
    )


async def test_worker_metrics_on_a_prometheus_endpoint(
    temporal_env: WorkflowEnvironment, model_server: ScriptedModelServer
) -> None:
    port = free_port()
    client = await connect(address(temporal_env), runtime=metrics_runtime(port))
    model_server.add(error(503))  # one failed attempt, retried
    script_one_run(model_server)
    async with hosted(client, [observed_agent("metered")], model_server, prices=PRICES) as agents:
        await agents.run("metered", "Where is order 1042?")
    samples = scrape(port)

    model = {"agent": "metered", "model": "openai:gpt-test"}
    assert value(samples, "ratchet_model_calls", **model) == 2
    assert value(samples, "ratchet_model_errors", **model, error_type="ModelServerError") == 1
    assert value(samples, "ratchet_model_tokens", **model, type="input") == 320
    assert value(samples, "ratchet_model_tokens", **model, type="output") == 23
    assert value(samples, "ratchet_model_cost_usd_count", **model) == 2
    assert value(samples, "ratchet_model_cost_usd_sum", **model) == pytest.approx(
        (320 * 2.0 + 23 * 8.0) / 1e6
    )
    assert value(samples, "ratchet_tool_calls", agent="metered", tool="lookup_order") == 1
    assert value(samples, "ratchet_tool_calls", agent="metered", tool="inventory") == 1
    assert value(samples, "ratchet_tool_errors", agent="metered", tool="lookup_order") == 0
    assert value(samples, "ratchet_tool_errors", agent="metered", tool="inventory") == 1
    # Temporal's labels come along, and so do Temporal's own metrics.
    calls = [ls for n, ls, _ in samples if n == "ratchet_model_calls"]
    assert calls[0]["activity_type"] == "ratchet.call_model"
    assert calls[0]["task_queue"].startswith("test-")
    names = {n for n, _, _ in samples}
    assert "temporal_activity_execution_latency_count" in names, sorted(names)
    assert (
        value(
            samples, "temporal_activity_execution_latency_count", activity_type="ratchet.run_tool"
        )
        == 2
    )


def test_metrics_port_errors() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError, match="cannot serve metrics"):
            metrics_runtime(port)
    with pytest.raises(ConfigError, match="bad metrics port"):
        metrics_runtime(70000)


def test_record_cost_outside_an_activity_does_nothing() -> None:
    record_cost("a", "openai:gpt-test", 0.5)


# --- the CLI ---------------------------------------------------------------------------------


class _Collector(BaseHTTPRequestHandler):
    """A minimal OTLP/HTTP endpoint: keeps the bodies posted to /v1/traces."""

    bodies: list[bytes] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.path == "/v1/traces":
            type(self).bodies.append(body)
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def collector() -> Iterator[tuple[str, list[bytes]]]:
    bodies: list[bytes] = []
    handler = type("Handler", (_Collector,), {"bodies": bodies})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", bodies
    server.shutdown()
    server.server_close()


def wait_until(predicate, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.1)


async def test_cli_worker_serves_metrics_and_exports_traces(
    temporal_env: WorkflowEnvironment,
    model_server: ScriptedModelServer,
    collector: tuple[str, list[bytes]],
    tmp_path: Path,
) -> None:
    endpoint, bodies = collector
    port = free_port()
    queue = f"cli-{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        "OPENAI_BASE_URL": model_server.base_url,
        "OPENAI_API_KEY": API_KEY,
        "PYTHONPATH": str(ROOT),
        "RATCHET_METRICS_PORT": str(port),
        "OTEL_BSP_SCHEDULE_DELAY": "100",  # export spans every 0.1 s instead of 5 s
    }
    log = (tmp_path / "worker.log").open("w")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ratchet.cli",
            "worker",
            "--app",
            "tests.test_telemetry:cli_agents",
            "--task-queue",
            queue,
            "--address",
            address(temporal_env),
            "--otlp-endpoint",
            endpoint,
        ],
        env=env,
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        script_one_run(model_server)
        tracer = configure_tracing(exporter=InMemorySpanExporter(), set_global=False)
        client = await connect(address(temporal_env), interceptors=[tracing_interceptor(tracer)])
        result = await AgentClient(client, task_queue=queue).run("cli-observed", "order 1042?")
        assert result.output == "Order 1042 has shipped."
        samples = scrape(port)
        assert value(samples, "ratchet_model_calls", agent="cli-observed") == 2
        assert value(samples, "ratchet_tool_errors", agent="cli-observed", tool="inventory") == 1
        # The worker's spans reach the collector over OTLP/HTTP (protobuf: the names are
        # plain bytes in the body).
        wait_until(lambda: b"chat gpt-test" in b"".join(bodies), 10, "the chat span")
        wait_until(lambda: b"execute_tool lookup_order" in b"".join(bodies), 10, "tool span")
        assert b"RunActivity:ratchet.call_model" in b"".join(bodies)
        assert b"gen_ai.usage.input_tokens" in b"".join(bodies)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:  # never leave it running into later tests
            proc.kill()
            proc.wait()
        log.close()
    text = (tmp_path / "worker.log").read_text()
    assert f"metrics on http://127.0.0.1:{port}/metrics" in text, text
