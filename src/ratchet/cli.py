"""The ``ratchet`` command: a thin shell over :class:`ratchet.AgentClient` and ``ratchet.local``."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import getpass
import importlib
import json
import os
import signal
import sys
import time
from collections.abc import Callable, Coroutine
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from temporalio.client import WorkflowQueryFailedError
from temporalio.service import RPCError

from ._connect import DEFAULT_ADDRESS
from ._limiter_protocol import LimiterStatus, RateLimit
from ._protocol import DEFAULT_TASK_QUEUE
from ._render import describe_message, shorten
from .agent import PROVIDER_RE, Agent, parse_model
from .client import AgentClient, RunHandle
from .errors import ConfigError, RatchetError, RunFailed
from .models import OpenAICompatible, Provider
from .payloads import describe_storage

app = typer.Typer(
    help="Durable AI agents on Temporal.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
out = Console(highlight=False, soft_wrap=True)
# Errors stay on one line whatever the terminal width, so scripts can grep them.
err = Console(stderr=True, highlight=False, soft_wrap=True)

T = TypeVar("T")

Address = Annotated[
    str | None,
    typer.Option(help="Temporal address (default: TEMPORAL_ADDRESS, else 127.0.0.1:7233)."),
]
Namespace = Annotated[str | None, typer.Option(help="Temporal namespace (default: 'default').")]
TaskQueue = Annotated[str, typer.Option(help="Task queue the agent's workers poll.")]
TranscriptStoreUrl = Annotated[
    str | None,
    typer.Option(
        envvar="RATCHET_TRANSCRIPT_STORE",
        help="Transcript store: sqlite:///path.sqlite or postgresql://... "
        "(default: transcripts.sqlite in ratchet's data directory).",
    ),
]


def _run(coro_fn: Callable[..., Coroutine[Any, Any, T]]) -> Callable[..., T]:
    """Run an async command; turn every expected error into one line on stderr, exit 1."""

    @functools.wraps(coro_fn)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        try:
            return asyncio.run(coro_fn(*args, **kwargs))
        except RunFailed as e:
            err.print(f"[red]error:[/] {escape(f'{e.error_type}: {e.message} (run {e.run_id})')}")
        except (RatchetError, RPCError) as e:
            err.print(f"[red]error:[/] {escape(str(e))}")
        except (RuntimeError, ValueError, FileNotFoundError) as e:
            message = _payload_store_problem(e)
            if message is None:
                raise
            err.print(f"[red]error:[/] {escape(message)}")
        except KeyboardInterrupt:
            err.print("interrupted")
            raise typer.Exit(130) from None
        raise typer.Exit(1)

    return wrapper


def _payload_store_problem(e: BaseException) -> str | None:
    """What to do when a history's large payloads cannot be read here, or None."""
    text = str(e)
    same_store = (
        "set RATCHET_PAYLOAD_STORE to the store the run's workers use (a directory "
        "shared with them, or s3://BUCKET)"
    )
    if "TMPRL1105" in text:  # the SDK: a reference to external storage, none configured
        return (
            "this run keeps large payloads outside its history, but RATCHET_PAYLOAD_STORE "
            f"is off here: {same_store}"
        )
    if isinstance(e, ValueError) and text.startswith("No driver found with name"):
        # The run's workers used another kind of store (say S3, while this is local).
        return f"this run's large payloads are in a store not set up here ({text}): {same_store}"
    if isinstance(e, RuntimeError) and text.startswith("S3StorageDriver retrieve failed"):
        cause = f": {e.__cause__}" if e.__cause__ else ""
        return (
            f"cannot read this run's large payloads from S3 ({text}{cause}). Check the AWS "
            "credentials, region and AWS_ENDPOINT_URL_S3, and that the bucket's lifecycle "
            "rules did not expire the object"
        )
    if isinstance(e, FileNotFoundError) and "payload store" in text:
        return f"{text} (set RATCHET_PAYLOAD_STORE to the workers' store)"
    return None


def _ui_url(run_id: str, address: str | None, namespace: str | None) -> str | None:
    """The Web UI page of a run: ``$RATCHET_UI_URL``, else the embedded server's UI when
    the run is on the embedded server."""
    base = os.environ.get("RATCHET_UI_URL")
    if base is None:
        from .local import services_status

        local = services_status().get("temporal", {})
        target = address or os.environ.get("TEMPORAL_ADDRESS") or DEFAULT_ADDRESS
        if target != local.get("address"):
            return None
        base = local.get("ui_url")
    if not base:
        return None
    return f"{base.rstrip('/')}/namespaces/{namespace or 'default'}/workflows/{run_id}"


@app.command()
def up(
    llm: Annotated[bool, typer.Option(help="Also start the embedded local LLM.")] = True,
) -> None:
    """Start the embedded Temporal dev server (Web UI on :8233) and the local LLM."""
    from .local import LocalServiceError
    from .local import up as local_up

    try:
        services = local_up(llm=llm, on_progress=lambda line: err.print(f"  {line}", markup=False))
    except LocalServiceError as e:
        err.print(f"[red]error:[/] {escape(str(e))}")
        raise typer.Exit(1) from None
    if services.temporal_address:
        asyncio.run(_register(services.temporal_address))
    out.print(f"Temporal  {services.temporal_address}   Web UI {services.ui_url}")
    if services.llm_base_url:
        out.print(f"local LLM {services.llm_base_url}")


async def _register(address: str) -> None:
    from ._connect import connect
    from ._search import register_search_attributes

    await register_search_attributes(await connect(address))


@app.command()
def down() -> None:
    """Stop the embedded services that `ratchet up` started."""
    from .local import down as local_down

    lines = local_down()
    for line in lines or ["nothing to stop"]:
        out.print(line)


def load_agents(spec: str) -> list[Agent]:
    """Resolve ``module:attr`` to agents: an Agent, a list, or a callable returning either."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ConfigError(
            f"bad app spec {spec!r}: expected 'module:attribute', e.g. examples.support:agent"
        )
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise ConfigError(f"cannot import module {module_name!r} of app {spec!r}: {e}") from e
    except Exception as e:  # the app's own import-time error
        raise ConfigError(
            f"importing {module_name!r} of app {spec!r} raised {type(e).__name__}: {e}"
        ) from e
    try:
        obj = getattr(module, attr)
    except AttributeError:
        raise ConfigError(f"module {module_name!r} has no attribute {attr!r}") from None
    if callable(obj) and not isinstance(obj, Agent):
        try:
            obj = obj()
        except Exception as e:
            raise ConfigError(f"calling {spec!r} raised {type(e).__name__}: {e}") from e
    agents = [obj] if isinstance(obj, Agent) else list(obj) if isinstance(obj, list | tuple) else []
    if not agents or not all(isinstance(a, Agent) for a in agents):
        raise ConfigError(f"{spec!r} is not an Agent or a list of Agents")
    return agents


def parse_rate_limit(text: str) -> tuple[str, RateLimit]:
    """``openai:rpm=500,tpm=200000[,window=60,margin=1,max_tokens=1024]`` → (provider, limit)."""
    provider, sep, rest = text.partition(":")
    names = {
        "rpm": "rpm",
        "tpm": "tpm",
        "window": "window_seconds",
        "margin": "margin_seconds",
        "max_tokens": "default_max_tokens",
    }
    fields: dict[str, str] = {}
    for part in rest.split(",") if sep else []:
        key, eq, value = part.partition("=")
        if not eq or key.strip() not in names:
            fields = {}
            break
        fields[names[key.strip()]] = value.strip()
    if not fields or not PROVIDER_RE.match(provider):
        raise ConfigError(
            f"bad --rate-limit {text!r}: expected PROVIDER:rpm=N,tpm=N (optional window=S, "
            "margin=S, max_tokens=N), e.g. openai:rpm=500,tpm=200000"
        )
    try:
        return provider, RateLimit.model_validate(fields)
    except ValueError as e:
        raise ConfigError(f"bad --rate-limit {text!r}: {e}") from e


def parse_provider(text: str) -> tuple[str, Provider]:
    """``NAME=BASE_URL`` → an OpenAI-compatible provider whose key is in ``$NAME_API_KEY``."""
    name, eq, url = text.partition("=")
    if not eq or not PROVIDER_RE.match(name) or "://" not in url:
        raise ConfigError(
            f"bad --provider {text!r}: expected NAME=BASE_URL, e.g. vllm=http://gpu:8000/v1"
        )
    key_env = f"{name.upper().replace('-', '_')}_API_KEY"
    return name, OpenAICompatible(base_url=url, api_key_env=key_env)


@app.command()
@_run
async def worker(
    app_spec: Annotated[
        str | None,
        typer.Option(
            "--app", help="Agents to host, as module:attribute (omit for a model-only worker)."
        ),
    ] = None,
    task_queue: TaskQueue = DEFAULT_TASK_QUEUE,
    rate_limit: Annotated[
        list[str] | None,
        typer.Option(
            help="Limits shared by every worker: PROVIDER:rpm=N,tpm=N (optional window=S, "
            "margin=S, max_tokens=N). Repeat for several providers.",
        ),
    ] = None,
    model_queue: Annotated[
        list[str] | None,
        typer.Option(
            help="Also serve PROVIDER's model calls on its own task queue "
            "(ratchet.model.PROVIDER, or PROVIDER=QUEUE), rate-limited by the server. Repeatable.",
        ),
    ] = None,
    provider: Annotated[
        list[str] | None,
        typer.Option(
            help="Register an OpenAI-compatible provider: NAME=BASE_URL (key from "
            "$NAME_API_KEY). Repeatable.",
        ),
    ] = None,
    address: Address = None,
    namespace: Namespace = None,
    metrics_port: Annotated[
        int | None,
        typer.Option(
            envvar="RATCHET_METRICS_PORT",
            help="Serve Prometheus metrics on http://METRICS_HOST:PORT/metrics (default: off).",
        ),
    ] = None,
    metrics_host: Annotated[
        str, typer.Option(envvar="RATCHET_METRICS_HOST", help="Address the metrics port binds.")
    ] = "127.0.0.1",
    otlp_endpoint: Annotated[
        str | None,
        typer.Option(
            envvar="OTEL_EXPORTER_OTLP_ENDPOINT",
            help="Export traces to this OTLP/HTTP collector, e.g. http://127.0.0.1:4318 "
            "(default: off; needs the otel extra).",
        ),
    ] = None,
    transcript_store: TranscriptStoreUrl = None,
) -> None:
    """Run a worker that hosts the agents of an app until Ctrl-C."""
    from ._connect import connect
    from .telemetry import configure_tracing, metrics_runtime, tracing_interceptor
    from .transcripts import store_from_url
    from .worker import create_model_worker, create_worker
    from .worker import model_queue as default_model_queue

    if app_spec is None and not model_queue:
        raise ConfigError("nothing to host: give --app module:attribute and/or --model-queue")
    agents = load_agents(app_spec) if app_spec is not None else []
    limits = dict(parse_rate_limit(r) for r in rate_limit or [])
    providers = dict(parse_provider(p) for p in provider or [])
    queues: dict[str, str] = {}
    for q in model_queue or []:
        name, eq, queue = q.partition("=")
        if not PROVIDER_RE.match(name) or (eq and not queue):
            raise ConfigError(f"bad --model-queue {q!r}: expected PROVIDER or PROVIDER=QUEUE")
        queues[name] = queue or default_model_queue(name)
    runtime = None if metrics_port is None else metrics_runtime(metrics_port, host=metrics_host)
    tracing = [tracing_interceptor(configure_tracing(otlp_endpoint))] if otlp_endpoint else []
    client = await connect(address, namespace=namespace, interceptors=tracing, runtime=runtime)
    store = store_from_url(transcript_store)
    workers = []
    lines = []
    if agents:
        workers.append(
            create_worker(
                client,
                agents,
                task_queue=task_queue,
                providers=providers,
                rate_limits=limits,
                transcript_store=store,
            )
        )
        lines.append(f"hosting {', '.join(a.name for a in agents)} on task queue {task_queue!r}")
    for name, queue in queues.items():
        workers.append(
            create_model_worker(
                client,
                name,
                task_queue=queue,
                rate_limit=limits.get(name),
                providers=providers,
                transcript_store=store,
            )
        )
        lines.append(f"serving {name} model calls on task queue {queue!r}")
    for name, limit in limits.items():
        lines.append(f"limits of {name}: {_describe_limit(limit)} (shared by every worker)")
    lines.append(describe_storage(client.data_converter.external_storage))
    try:
        async with contextlib.AsyncExitStack() as stack:
            for w in workers:
                await stack.enter_async_context(w)
            err.print("worker " + "; ".join(lines) + "; Ctrl-C to stop", markup=False)
            if runtime is not None:
                err.print(f"metrics on http://{metrics_host}:{metrics_port}/metrics")
            if otlp_endpoint:
                err.print(f"traces to {otlp_endpoint}")
            await _until_terminated()
    except RuntimeError as e:  # e.g. the namespace does not exist
        detail = str(e.__cause__ or e).split(": Status {")[0]
        raise ConfigError(f"the worker could not start: {detail}") from e


def _describe_limit(limit: RateLimit) -> str:
    per = "min" if limit.window_seconds == 60 else f"{limit.window_seconds:g} s"
    rpm = "-" if limit.rpm is None else f"{limit.rpm}"
    tpm = "-" if limit.tpm is None else f"{limit.tpm}"
    return f"{rpm} requests/{per}, {tpm} tokens/{per}"


async def _until_terminated() -> None:
    """Wait for SIGTERM or SIGINT; leaving the `async with` shuts the worker down gracefully."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


async def follow_run(handle: RunHandle, console: Console = out) -> None:
    """Print each step of a run as it is recorded.

    On a terminal a live line below the steps shows the turn, the current step, the
    elapsed time and the tokens so far; elsewhere (pipes, CI logs) only the steps are
    printed, one plain line each.
    """
    live = console.status("starting…") if console.is_terminal else None
    ticker = asyncio.create_task(_progress(handle, live)) if live is not None else None
    if live is not None:
        live.start()
    try:
        turn = 0
        async for message in handle.follow():
            if message.role == "assistant":
                turn += 1
            if line := describe_message(message, turn):
                console.print(line, markup=False)
    finally:
        if ticker is not None:
            ticker.cancel()
        if live is not None:
            live.stop()


async def _progress(handle: RunHandle, live: Any) -> None:
    started = time.monotonic()
    while True:
        try:
            s = await handle.status()
            live.update(
                escape(
                    f"turn {s.turn} · {s.step} · {time.monotonic() - started:.1f} s · "
                    f"{s.usage.total_tokens} tokens"
                )
            )
        except Exception:  # no worker yet, or the run just closed: keep the last line
            live.update(f"waiting · {time.monotonic() - started:.1f} s")
        await asyncio.sleep(0.5)


async def _warn_if_no_worker(handle: RunHandle, task_queue: str) -> None:
    await asyncio.sleep(5)
    if not await handle.picked_up():
        err.print(
            f"waiting: no worker has picked up the run yet; is one running on task queue "
            f"{task_queue!r}? (`ratchet worker --app module:agent`)"
        )


@app.command()
@_run
async def run(
    agent: Annotated[str, typer.Argument(help="Name of the agent.")],
    prompt: Annotated[str, typer.Argument(help="What to ask the agent.")],
    id: Annotated[
        str | None, typer.Option("--id", help="Run id; reusing one attaches to that run.")
    ] = None,
    model: Annotated[
        str | None, typer.Option(help="Override the model, e.g. openai:gpt-4o-mini.")
    ] = None,
    wait: Annotated[bool, typer.Option(help="Follow the run until it ends.")] = True,
    task_queue: TaskQueue = DEFAULT_TASK_QUEUE,
    address: Address = None,
    namespace: Namespace = None,
) -> None:
    """Start a run of AGENT and follow its progress."""
    if not prompt.strip():
        raise ConfigError("the prompt is empty: tell the agent what to do")
    if model is not None:
        parse_model(model)
    client = await AgentClient.connect(address, namespace=namespace, task_queue=task_queue)
    handle = await client.start(agent, prompt, id=id, model=model)
    if not wait:
        out.print(handle.id)
        return
    out.print(f"run {handle.id}")
    hint = asyncio.create_task(_warn_if_no_worker(handle, task_queue))
    try:
        await follow_run(handle)
    finally:
        hint.cancel()
    result = await handle.result()
    out.print(f"\nanswer: {result.output}", markup=False)
    out.print(
        f"run:    {handle.id}  ({result.turns} turns, {result.tool_calls} tool calls, "
        f"{result.usage.total_tokens} tokens)"
    )
    if url := _ui_url(handle.id, address, namespace):
        out.print(f"history: {url}")


@app.command()
@_run
async def trace(
    run_id: Annotated[str, typer.Argument(help="The run's id (see `ratchet ls`).")],
    full: Annotated[
        bool, typer.Option("--full", help="Show whole messages, not shortened.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the trace as JSON.")] = False,
    address: Address = None,
    namespace: Namespace = None,
    transcript_store: TranscriptStoreUrl = None,
) -> None:
    """Show a run's timeline from its event history: every prompt, call, result and retry."""
    from ._connect import connect
    from .trace import build_trace
    from .transcripts import store_from_url

    if not run_id.strip():
        raise ConfigError("the run id is empty")
    store = store_from_url(transcript_store)
    try:
        t = await build_trace(await connect(address, namespace=namespace), run_id, store=store)
    finally:
        await store.close()
    if as_json:
        print(t.model_dump_json(indent=2))
        return
    for line in render_trace(t, full=full):
        out.print(line, markup=False)


def render_trace(t: Any, *, full: bool = False) -> list[str]:
    """The human-readable timeline of a :class:`ratchet.trace.Trace`."""
    from .trace import ModelStep

    def text(s: str | None, limit: int = 200) -> str:
        return (s or "") if full else shorten(s or "", limit)

    lines = [f"run {t.run_id} · agent {t.agent} · {t.status}", f"prompt: {text(t.prompt)}"]
    turn = 0
    for step in t.steps:
        if step.turn != turn:
            turn = step.turn
            lines.append(f"── turn {turn}")
        took = "…" if step.duration_seconds is None else f"{step.duration_seconds:.2f} s"
        retry = f", {step.attempts} attempts" if step.attempts > 1 else ""
        if isinstance(step, ModelStep):
            cost = "" if step.cost_usd is None else f", ${step.cost_usd:.6f}"
            lines.append(
                f"  model {step.model} [{step.status}] {took}{retry}, "
                f"{step.input_tokens} in / {step.output_tokens} out tokens{cost}"
            )
            if step.last_retry_error:
                lines.append(f"    last retry error: {text(step.last_retry_error)}")
            for m in step.messages if full else step.messages[-2:]:
                lines.append(f"    sent {m.role}: {text(m.content or _calls(m))}")
            if not full and len(step.messages) > 2:
                lines[-2:-2] = [
                    f"    ({len(step.messages) - 2} earlier messages; --full shows all)"
                ]
            if step.response is not None:
                lines.append(f"    reply: {text(step.response.content or _calls(step.response))}")
        else:
            args = step.arguments if isinstance(step.arguments, str) else json.dumps(step.arguments)
            lines.append(f"  tool {step.tool}({text(args, 120)}) [{step.status}] {took}{retry}")
            if step.last_retry_error:
                lines.append(f"    last retry error: {text(step.last_retry_error)}")
            if step.policy is not None:
                lines.append(f"    policy: {step.policy.decision} by rule {step.policy.rule!r}")
            if step.approval is not None:
                a = step.approval
                lines.append(
                    f"    approved by {a.approver} at {a.at:%Y-%m-%d %H:%M:%S}"
                    + (f": {text(a.reason)}" if a.reason else "")
                )
            marker = "error" if step.is_error else "result"
            lines.append(f"    {marker}: {text(step.result)}")
        if step.error:
            lines.append(f"    failed: {text(step.error, 400)}")
    for a in t.approvals:
        verdict = "approved" if a.approved else "denied"
        why = f": {text(a.reason)}" if a.reason else ""
        rule = f" (rule {a.rule!r})" if a.rule else ""
        raised = f", raised to {a.raise_to:g}" if a.raise_to is not None else ""
        lines.append(
            f"approval {a.call_id} ({a.tool}){rule} {verdict} by {a.approver} "
            f"at {a.at:%Y-%m-%d %H:%M:%S}{raised}{why}"
        )
    tt = t.totals
    wall = "running" if tt.wall_seconds is None else f"{tt.wall_seconds:.2f} s"
    waiting = "" if tt.waiting_seconds is None else f", waiting {tt.waiting_seconds:.2f} s"
    lines += [
        "── totals",
        f"  wall {wall}: model {tt.model_seconds:.2f} s, tools {tt.tool_seconds:.2f} s{waiting}",
        f"  {tt.model_calls} model calls, {tt.tool_calls} tool calls, {tt.attempts} attempts",
        f"  tokens {tt.input_tokens} in / {tt.output_tokens} out, cost ${tt.cost_usd:.6f}"
        + (f" ({tt.unpriced_calls} unpriced calls)" if tt.unpriced_calls else ""),
        f"  slowest: {tt.slowest_step or '-'}",
    ]
    if t.output is not None:
        lines.append(f"answer: {text(t.output, 400)}")
    if t.error is not None:
        lines.append(f"error: {text(t.error, 400)}")
    return lines


def _calls(m: Any) -> str:
    return ", ".join(f"{c.name}({c.arguments})" for c in (m.tool_calls or [])) or ""


@app.command()
@_run
async def chat(
    agent: Annotated[str, typer.Argument(help="Name of the agent.")],
    id: Annotated[str | None, typer.Option("--id", help="Run id of the conversation.")] = None,
    model: Annotated[str | None, typer.Option(help="Override the model.")] = None,
    task_queue: TaskQueue = DEFAULT_TASK_QUEUE,
    address: Address = None,
    namespace: Namespace = None,
) -> None:
    """Talk with an agent: each line you type is a message; Ctrl-D or /exit ends."""
    client = await AgentClient.connect(address, namespace=namespace, task_queue=task_queue)
    handle: RunHandle | None = None
    while True:
        try:
            text = await asyncio.to_thread(input, "you> ")
        except EOFError:
            text = "/exit"
        if text.strip() in ("/exit", "/quit"):
            break
        if not text.strip():
            continue
        if handle is None:
            handle = await client.start(agent, text, id=id, model=model, chat=True)
            out.print(f"(run {handle.id})", markup=False)
            answer = await _first_answer(handle)
        else:
            answer = (await handle.send(text)).output
        out.print(f"{agent}> {answer}", markup=False)
    if handle is not None:
        await handle.end_chat()
        out.print(f"(chat ended; `ratchet trace {handle.id}` shows it)", markup=False)


async def _first_answer(handle: RunHandle) -> str:
    """The reply to the opening message: the first assistant answer in the transcript."""
    while True:
        for m in await handle.transcript():
            if m.role == "assistant" and not m.tool_calls:
                return m.content or ""
        if await handle.temporal_status() != "running":
            return (await handle.result()).output
        await asyncio.sleep(0.2)


@app.command()
@_run
async def send(
    run_id: Annotated[str, typer.Argument(help="The chat run's id.")],
    message: Annotated[str, typer.Argument(help="The message.")],
    address: Address = None,
    namespace: Namespace = None,
) -> None:
    """Send one message to a chat run and print the agent's reply."""
    if not message.strip():
        raise ConfigError("the message is empty")
    client = await AgentClient.connect(address, namespace=namespace)
    reply = await client.get(run_id).send(message)
    out.print(reply.output, markup=False)


@app.command()
@_run
async def pending(
    address: Address = None,
    namespace: Namespace = None,
) -> None:
    """List the tool calls (and spent budgets) waiting for approval, across runs."""
    client = await AgentClient.connect(address, namespace=namespace)
    calls = await client.pending()
    if not calls:
        out.print("nothing is waiting for approval")
    for run_id, call in calls:
        args = json.dumps(call.arguments)
        why = f" ({call.reason})" if call.reason else ""
        out.print(
            f"{run_id} {call.call_id}: {call.tool}({args}) · rule {call.rule}{why} · "
            f"denied at {call.deadline:%Y-%m-%d %H:%M:%S} UTC without an answer",
            markup=False,
        )


Approver = Annotated[
    str | None, typer.Option("--as", help="Who answers (default: $RATCHET_APPROVER or $USER).")
]
Reason = Annotated[str, typer.Option(help="Why; shown to the model and in the audit trail.")]


RunArg = Annotated[str, typer.Argument(help="The run's id.")]
CallArg = Annotated[str, typer.Argument(help="The waiting call's id (see `ratchet pending`).")]


def _approver(name: str | None) -> str:
    if name:
        return name
    try:
        return os.environ.get("RATCHET_APPROVER") or getpass.getuser()
    except (KeyError, OSError):  # no login name in this environment
        raise ConfigError("say who answers: --as NAME (or set RATCHET_APPROVER)") from None


async def _answer(
    approve: bool,
    run_id: str,
    call_id: str,
    reason: str,
    approver: str | None,
    address: str | None,
    namespace: str | None,
    raise_to: float | None = None,
) -> None:
    client = await AgentClient.connect(address, namespace=namespace)
    handle = client.get(run_id)
    who = _approver(approver)
    if approve:
        record = await handle.approve(call_id, approver=who, reason=reason, raise_to=raise_to)
    else:
        record = await handle.deny(call_id, approver=who, reason=reason)
    verb = "approved" if approve else "denied"
    raised = f"; {record.rule} raised to {record.raise_to:g}" if record.raise_to is not None else ""
    out.print(f"{verb} {record.call_id} ({record.tool}) of {run_id} as {record.approver}{raised}")


@app.command()
@_run
async def approve(
    run_id: RunArg,
    call_id: CallArg,
    reason: Reason = "",
    approver: Approver = None,
    raise_to: Annotated[
        float | None,
        typer.Option(
            "--raise-to",
            help="For a spent budget (tool `budget`): its new limit. Default: raised by "
            "its configured amount beyond what the run used.",
        ),
    ] = None,
    address: Address = None,
    namespace: Namespace = None,
) -> None:
    """Approve a tool call (or a spent budget) that waits for approval; the agent goes on."""
    await _answer(True, run_id, call_id, reason, approver, address, namespace, raise_to)


@app.command()
@_run
async def deny(
    run_id: RunArg,
    call_id: CallArg,
    reason: Reason = "",
    approver: Approver = None,
    address: Address = None,
    namespace: Namespace = None,
) -> None:
    """Deny a tool call that waits for approval; the model is told why."""
    await _answer(False, run_id, call_id, reason, approver, address, namespace)


@app.command()
@_run
async def cancel(
    run_id: Annotated[str, typer.Argument(help="The run's id (see `ratchet ls`).")],
    address: Address = None,
    namespace: Namespace = None,
) -> None:
    """Cancel a run: in-flight calls are cancelled, the transcript is kept."""
    client = await AgentClient.connect(address, namespace=namespace)
    handle = client.get(run_id)
    state = await handle.temporal_status()
    if state != "running":
        raise ConfigError(f"run {run_id!r} is already {state}; only running runs can be cancelled")
    await handle.cancel()
    out.print(f"cancellation requested for {run_id}")


@app.command("ls")
@_run
async def list_runs(
    agent: Annotated[str | None, typer.Option(help="Only runs of this agent.")] = None,
    status: Annotated[
        str | None,
        typer.Option(help="Only runs in this state: running, completed, failed, cancelled."),
    ] = None,
    limit: Annotated[int, typer.Option(help="How many runs to show.", min=1)] = 20,
    address: Address = None,
    namespace: Namespace = None,
) -> None:
    """List recent runs, newest first."""
    client = await AgentClient.connect(address, namespace=namespace)
    runs = await client.list(limit=limit, agent=agent, status=status)
    if not runs:
        out.print("no runs")
        return
    out.print(
        f"{'RUN':<40} {'AGENT':<16} {'STATUS':<12} {'STARTED':<19} TURNS TOKENS COST", markup=False
    )
    for r in runs:
        started = r.started.strftime("%Y-%m-%d %H:%M:%S") if r.started else "-"
        turns = "-" if r.turns is None else str(r.turns)
        tokens = "-" if r.tokens is None else str(r.tokens)
        cost = "-" if r.cost_usd is None else f"${r.cost_usd:.4f}"
        out.print(
            f"{r.id:<40} {r.agent:<16} {r.status:<12} {started:<19} {turns:>5} {tokens:>6} {cost}",
            markup=False,
        )


@app.command()
@_run
async def show(
    run_id: Annotated[str, typer.Argument(help="The run's id (see `ratchet ls`).")],
    address: Address = None,
    namespace: Namespace = None,
) -> None:
    """Show a run: status, final answer or error, turns and tool calls."""
    client = await AgentClient.connect(address, namespace=namespace)
    handle = client.get(run_id)
    state = await handle.temporal_status()
    out.print(f"run:     {run_id}")
    out.print(f"status:  {state}")
    try:
        transcript = await handle.transcript()
    except (RPCError, WorkflowQueryFailedError):
        transcript = []
        out.print("  (steps unavailable: the run is live and no worker answered; start one)")
    turn = 0
    for message in transcript:
        if message.role == "assistant":
            turn += 1
        if line := describe_message(message, turn):
            out.print(f"  {line}", markup=False)
    if state == "completed":
        result = await handle.result()
        out.print(f"answer:  {result.output}", markup=False)
        out.print(
            f"turns:   {result.turns}, tool calls: {result.tool_calls}, "
            f"tokens: {result.usage.total_tokens}"
        )
    elif state == "failed":
        try:
            await handle.result()
        except RunFailed as e:
            out.print(f"error:   {e.error_type}: {shorten(e.message, 400)}", markup=False)
    if url := _ui_url(run_id, address, namespace):
        out.print(f"history: {url}")


limits_app = typer.Typer(
    help="Provider rate limits shared by every worker: show them, change them live.",
    invoke_without_command=True,
    no_args_is_help=False,
)
app.add_typer(limits_app, name="limits")


@limits_app.callback()
def limits_show(
    ctx: typer.Context,
    address: Address = None,
    namespace: Namespace = None,
) -> None:
    """Show each provider's limits, the usage of its current window and its queue depth."""
    if ctx.invoked_subcommand is None:
        _run(_limits_show)(address, namespace)


async def _limits_show(address: str | None, namespace: str | None) -> None:
    client = await AgentClient.connect(address, namespace=namespace)
    statuses, unanswered = await client._all_limiters()
    print_limits(statuses, unanswered)


def print_limits(
    statuses: list[LimiterStatus], unanswered: list[tuple[str, str]] | None = None
) -> None:
    for provider, queue in unanswered or ():
        out.print(
            f"{provider}: its limiter runs on task queue {queue!r}, but no worker answered "
            "within 5 s; model calls to it wait until a worker polls that queue",
            markup=False,
        )
    if not statuses:
        if not unanswered:
            out.print(
                "no provider limiter is running (one starts with the first model call of a "
                "worker given --rate-limit)"
            )
        return
    out.print(
        f"{'PROVIDER':<16} {'WINDOW':>7} {'RPM':>13} {'TPM':>19} {'IN-FLIGHT':>9} {'QUEUED':>6} "
        f"{'GRANTED':>7} {'429s':>5}  PAUSED",
        markup=False,
    )
    for s in statuses:
        lim = s.limit
        rpm = f"{s.requests_in_window}/{lim.rpm if lim.rpm is not None else '-'}"
        tpm = f"{s.tokens_in_window}/{lim.tpm if lim.tpm is not None else '-'}"
        paused = f"until {s.paused_until:%H:%M:%S}" if s.paused_until else "-"
        out.print(
            f"{s.provider:<16} {lim.window_seconds:>6g}s {rpm:>13} {tpm:>19} {s.in_flight:>9} "
            f"{s.queued:>6} "
            f"{s.granted_total:>7} {s.pauses_total:>5}  {paused}",
            markup=False,
        )


@limits_app.command("set")
@_run
async def limits_set(
    provider: Annotated[str, typer.Argument(help="The provider, e.g. openai.")],
    rpm: Annotated[
        int | None, typer.Option(help="Requests per window (per minute); 0 removes the limit.")
    ] = None,
    tpm: Annotated[
        int | None, typer.Option(help="Tokens per window (per minute); 0 removes the limit.")
    ] = None,
    address: Address = None,
    namespace: Namespace = None,
) -> None:
    """Change a provider's limits live; every worker's next call uses them."""
    if rpm is None and tpm is None:
        raise ConfigError("nothing to change: give --rpm and/or --tpm")
    client = await AgentClient.connect(address, namespace=namespace)
    status = await client.set_limits(provider, rpm=rpm, tpm=tpm)
    out.print(f"limits of {provider}: {_describe_limit(status.limit)}", markup=False)


@app.command("codec-server")
def codec_server(
    port: Annotated[int, typer.Option(help="Port to listen on.", min=0, max=65535)] = 8888,
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    origin: Annotated[
        list[str] | None,
        typer.Option(
            help="Web UI origin allowed by CORS; repeat for several "
            "(default: http://127.0.0.1:8233 and http://localhost:8233)."
        ),
    ] = None,
    no_auth: Annotated[
        bool,
        typer.Option(
            "--no-auth",
            help="Serve without a token (127.0.0.1 only), e.g. for the embedded Web UI, "
            "which sends none.",
        ),
    ] = False,
    generate_key: Annotated[
        bool, typer.Option("--generate-key", help="Print a new 'id:base64key' entry and exit.")
    ] = False,
) -> None:
    """Decode payloads for the Temporal Web UI with the RATCHET_ENCRYPTION_KEYS keys.

    Clients send `Authorization: Bearer $RATCHET_CODEC_TOKEN`. Point the Web UI's
    codec server setting (or `temporal ... --codec-endpoint`) at this address.
    """
    from contextlib import suppress
    from datetime import UTC, datetime

    from .codec import DEFAULT_ORIGINS, TOKEN_ENV, CodecServer, codec_from_env
    from .codec import generate_key as new_key

    if generate_key:
        out.print(f"k{datetime.now(UTC):%Y%m%d}:{new_key()}", markup=False)
        return
    try:
        codec = codec_from_env()
        if codec is None:
            raise ConfigError(
                "no keys: set RATCHET_ENCRYPTION_KEYS (or RATCHET_ENCRYPTION_KEYS_FILE) to the "
                "workers' keys; `ratchet codec-server --generate-key` makes one"
            )
        token = os.environ.get(TOKEN_ENV) or None
        if token is None and not no_auth:
            raise ConfigError(
                f"set {TOKEN_ENV} to the secret clients send as 'Authorization: Bearer <token>', "
                "or pass --no-auth to serve on 127.0.0.1 without one"
            )
        server = CodecServer(
            codec, token=token, origins=origin or DEFAULT_ORIGINS, host=host, port=port
        )
    except ConfigError as e:
        err.print(f"[red]error:[/] {escape(str(e))}")
        raise typer.Exit(1) from None
    auth = "bearer token required" if token else "no token required"
    err.print(
        f"codec server on {server.url} ({auth}; keys {', '.join(codec.key_ids)}, "
        f"active {codec.active_key_id}; origins {', '.join(origin or DEFAULT_ORIGINS)}); "
        "Ctrl-C to stop",
        markup=False,
    )
    with suppress(KeyboardInterrupt):
        server.serve_forever()


def main() -> None:
    try:
        app()
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    sys.stdout.flush()
    sys.stderr.flush()
    # Skip interpreter teardown: the Temporal SDK can crash there in short-lived processes.
    os._exit(code)


if __name__ == "__main__":
    main()
