"""`ratchet worker`: a shell over :func:`ratchet.worker.run_worker`."""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer

from .._protocol import DEFAULT_TASK_QUEUE
from .._worker_settings import DEFAULT_DRAIN_SECONDS
from ..tools import busy_tool_threads
from ._common import Address, Namespace, TaskQueue, TranscriptStoreUrl, _run, err


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
    deps: Annotated[
        str | None,
        typer.Option(
            help="What tools get as ToolContext.deps, as module:attribute: an object, a "
            "mapping of agent name to object, or a function (Agent) -> object called once "
            "per agent.",
        ),
    ] = None,
    nexus: Annotated[
        bool,
        typer.Option(
            "--nexus",
            help="Also serve the agents as the ratchet.nexus Nexus service, for Nexus "
            "endpoints that target this task queue.",
        ),
    ] = False,
    drain_seconds: Annotated[
        float,
        typer.Option(
            envvar="RATCHET_DRAIN_SECONDS",
            help="On SIGTERM or Ctrl-C, let model and tool calls in flight finish for up to "
            "this many seconds; those still running then go to another worker. A second "
            "signal stops at once.",
        ),
    ] = DEFAULT_DRAIN_SECONDS,
) -> None:
    """Run a worker that hosts the agents of an app until SIGTERM or Ctrl-C."""
    from ..worker import WorkerSettings, run_worker

    settings = WorkerSettings.from_flags(
        app=app_spec,
        task_queue=task_queue,
        rate_limits=rate_limit or (),
        model_queues=model_queue or (),
        providers=provider or (),
        address=address,
        namespace=namespace,
        metrics_port=metrics_port,
        metrics_host=metrics_host,
        otlp_endpoint=otlp_endpoint,
        transcript_store_url=transcript_store,
        deps=deps,
        nexus=nexus,
        drain_seconds=drain_seconds,
    )

    def ready(lines: list[str]) -> None:
        err.print("worker " + "; ".join(lines) + "; Ctrl-C to stop", markup=False)
        if metrics_port is not None:
            err.print(f"metrics on http://{metrics_host}:{metrics_port}/metrics")
        if otlp_endpoint:
            err.print(f"traces to {otlp_endpoint}")

    def stopping(in_flight: int) -> None:
        if in_flight == 0:
            err.print("worker stopping: no calls in flight", markup=False)
            return
        err.print(
            f"worker stopping: letting {_calls(in_flight)} in flight finish (up to "
            f"{drain_seconds:g} s; signal again to stop now). Calls still running then go "
            "back to the server, which retries them on another worker while they have "
            "attempts left",
            markup=False,
        )

    cut_off = 0

    def drained(count: int) -> None:
        nonlocal cut_off
        cut_off = count

    await run_worker(settings, on_ready=ready, on_stopping=stopping, on_drained=drained)
    stopped = "worker stopped"
    if cut_off:
        stopped += f"; handed back {_calls(cut_off)} still running after the drain"
    left = busy_tool_threads()
    if left:
        # A sync tool cut off by the drain still holds its thread, which nothing can
        # interrupt, and Python would wait for it at exit; its call is already back
        # with the server, so the process ends now instead.
        err.print(
            f"{stopped}; leaving {left} sync tool call(s) that are still running in their threads",
            markup=False,
        )
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    err.print(stopped, markup=False)


def _calls(count: int) -> str:
    return "1 call" if count == 1 else f"{count} calls"
