"""Provider limits that hold across worker processes: RPM, TPM, a shared Retry-After pause.

Real `ratchet worker` subprocesses share one dev server and one scripted
OpenAI-compatible server, which records the arrival time and tokens of every
request. Windows are scaled down from 60 s to 2 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHandle
from temporalio.service import RPCError

from ratchet import (
    Agent,
    AgentClient,
    ConfigError,
    RateLimit,
    RunCancelled,
    create_model_worker,
    create_worker,
)
from ratchet._limiter_protocol import (
    LIMITER_REQUEST_SIGNAL,
    LIMITER_SETTLE_SIGNAL,
    LIMITER_TICKET_QUERY,
    LIMITER_WORKFLOW_TYPE,
    CapacityRequest,
    LimiterInput,
    SettleRequest,
    TicketState,
    limiter_id,
)
from ratchet._protocol import MODEL_ACTIVITY
from ratchet.testing import (
    RecordedRequest,
    ScriptedModelServer,
    Step,
    call,
    error,
    hang,
    reply,
)
from ratchet.testing import tool_calls as tool_calls_step

from .conftest import API_KEY, scripted_provider
from .test_cli import address, assert_clean_error, ratchet
from .workers import WorkerProcess, wait_for

WINDOW = 2.0
PROMPT = "Which of these products are in stock? " + "x" * 360


@pytest.fixture
async def provider(temporal_client: Client) -> AsyncIterator[str]:
    """A fresh provider name; its limiter workflow is ended after the test.

    A limiter left running outlives its workers, and ``client.limits()`` in later
    tests would wait on it.
    """
    name = f"p{uuid.uuid4().hex[:8]}"
    yield name
    with contextlib.suppress(RPCError):  # never started, or the test ended it
        await temporal_client.get_workflow_handle(limiter_id(name)).terminate("test over")


def start_workers(
    client: Client,
    server: ScriptedModelServer,
    tmp: Path,
    provider: str,
    rate_limit: str,
    *,
    count: int = 2,
    model_queue: str | None = None,
    queue: str | None = None,
) -> tuple[str, list[WorkerProcess]]:
    """``count`` worker processes hosting tests.limits_app, ready to work."""
    queue = queue or f"test-{uuid.uuid4().hex[:8]}"
    args = ["--provider", f"{provider}={server.base_url}", "--rate-limit", rate_limit]
    env = {"LIMITS_PROVIDER": provider, f"{provider.upper()}_API_KEY": API_KEY}
    if model_queue is not None:
        args += ["--model-queue", f"{provider}={model_queue}"]
        env["LIMITS_MODEL_QUEUE"] = model_queue
    started = [
        WorkerProcess(
            address(client), queue, server, tmp, app="tests.limits_app:agents", args=args, env=env
        )
        for _ in range(count)
    ]
    try:
        for w in started:
            wait_for(lambda w=w: "Ctrl-C to stop" in Path(w.log.name).read_text(), 60, "a worker")
    except BaseException:
        for w in started:  # not handed to the test's fixture yet: stop them here
            w.stop()
        raise
    return queue, started


async def model_workers(client: Client, run_ids: list[str]) -> set[str]:
    """The identities of the workers that ran the runs' model calls."""
    identities: set[str] = set()
    for run_id in run_ids:
        scheduled: set[int] = set()
        async for e in client.get_workflow_handle(run_id).fetch_history_events():
            if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
                if e.activity_task_scheduled_event_attributes.activity_type.name == MODEL_ACTIVITY:
                    scheduled.add(e.event_id)
            elif e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
                attrs = e.activity_task_started_event_attributes
                if attrs.scheduled_event_id in scheduled:
                    identities.add(attrs.identity)
    return identities


async def run_all(client: AgentClient, prompts: list[str]) -> list[str]:
    handles = [await client.start("limited", p) for p in prompts]
    await asyncio.wait_for(asyncio.gather(*(h.result() for h in handles)), 180)
    return [h.id for h in handles]


async def test_rpm_and_tpm_hold_across_worker_processes_and_change_live(
    temporal_client: Client, workers: list[Any], tmp_path: Path, provider: str
) -> None:
    # Each call uses ~122 tokens and reserves ~140 (prompt estimate + max_tokens=20):
    # 3 calls fill the 450-token budget; rpm=6 (also 3/s handed out by the server on
    # the model queue) is not what binds at first.
    server = ScriptedModelServer(expected_api_key=API_KEY, handler=lambda r: reply("ok")).start()
    try:
        queue, started = start_workers(
            temporal_client,
            server,
            tmp_path,
            provider,
            # The margin covers the lag from a worker sending a call to the server
            # stamping it, which grows on a loaded machine.
            f"{provider}:rpm=6,tpm=450,window={WINDOW},margin=1.0",
            model_queue=f"model-{uuid.uuid4().hex[:8]}",
        )
        workers.extend(started)
        client = AgentClient(temporal_client, task_queue=queue)
        first = await run_all(client, [f"{PROMPT} {i}" for i in range(12)])

        status = await client.limits_of(provider)
        assert (status.limit.rpm, status.limit.tpm, status.granted_total) == (6, 450, 12)
        assert [s.provider for s in await client.limits() if s.provider == provider] == [provider]
        # Live: one request per window from now on, tokens unchanged.
        changed = await client.set_limits(provider, rpm=1)
        assert (changed.limit.rpm, changed.limit.tpm) == (1, 450)
        since = time.time()
        second = await run_all(client, [f"{PROMPT} again {i}" for i in range(4)])
    finally:
        server.stop()

    requests = server.requests
    assert len(requests) == 16 and all(r.status == 200 for r in requests)
    peak_requests, peak_tokens = server.peak_in_window(WINDOW)
    assert peak_requests <= 6 and peak_tokens <= 450, (peak_requests, peak_tokens)
    # The token budget was what bounded the first batch: windows did fill up.
    assert peak_tokens > 300, [
        (round(r.received_at - requests[0].received_at, 2), r.tokens) for r in requests
    ]
    assert server.peak_in_window(WINDOW, since=since)[0] == 1
    assert len(await model_workers(temporal_client, first + second)) == 2


async def test_a_429_with_retry_after_pauses_every_worker(
    temporal_client: Client, workers: list[Any], tmp_path: Path, provider: str
) -> None:
    counter = {"n": 0}

    def script(r: RecordedRequest) -> Step:
        counter["n"] += 1
        if counter["n"] == 10:
            return error(429, headers={"Retry-After": "4"})
        # Three searches, then the answer: a steady flow of calls from every run.
        if len(r.messages) < 2 + 2 * 3:
            return tool_calls_step(call("search", {"q": "shoes"}), delay=0.05)
        return reply("done", delay=0.05)

    server = ScriptedModelServer(expected_api_key=API_KEY, handler=script).start()
    try:
        queue, started = start_workers(
            temporal_client, server, tmp_path, provider, f"{provider}:rpm=1000,window={WINDOW}"
        )
        workers.extend(started)
        client = AgentClient(temporal_client, task_queue=queue)
        runs = await run_all(client, [f"find shoes {i}" for i in range(8)])
        status = await client.limits_of(provider)
    finally:
        server.stop()

    requests = server.requests
    [limited] = [r for r in requests if r.status == 429]
    t = limited.received_at
    others = [r.received_at - t for r in requests if r is not limited]
    # Calls already granted may land just after the 429 (later on a loaded machine,
    # as the pause starts when the limiter handles the signal); then nobody calls
    # until the pause is over, although every run still had calls to make.
    assert not [d for d in others if 1.5 < d < 3.7], sorted(others)
    assert len([d for d in others if d >= 3.7]) >= 5, sorted(others)
    assert len(requests) == 8 * 4 + 1
    assert status.pauses_total == 1
    assert len(await model_workers(temporal_client, runs)) == 2


async def ticket_state(handle: WorkflowHandle[Any, Any], grant: str) -> TicketState:
    state: TicketState = await handle.query(LIMITER_TICKET_QUERY, grant, result_type=TicketState)
    return state


async def wait_granted(handle: WorkflowHandle[Any, Any], grant: str) -> float:
    """Seconds until ``grant`` is granted: under 25, which still tells a grant freed by
    a dead holder's lease from one held for the default 30 s lease (a loaded machine
    may take seconds for what takes milliseconds alone)."""
    started = time.monotonic()
    while not (await ticket_state(handle, grant)).granted:
        assert time.monotonic() - started < 25, f"{grant} not granted within 25 s"
        await asyncio.sleep(0.05)
    return time.monotonic() - started


async def test_limiter_is_fifo_frees_dead_holders_and_continues_as_new(
    temporal_client: Client, provider: str
) -> None:
    queue = f"test-{uuid.uuid4().hex[:8]}"
    limit = RateLimit(rpm=1, window_seconds=1.0, margin_seconds=0.1)
    async with create_model_worker(temporal_client, "openai", task_queue=queue):
        handle = await temporal_client.start_workflow(
            LIMITER_WORKFLOW_TYPE,
            LimiterInput(provider=provider, limit=limit, max_history_events=40),
            id=limiter_id(provider),
            task_queue=queue,
        )
        first_run = handle.result_run_id

        async def request(ticket: str, *, attempt: int = 1, lease: float = 30.0) -> None:
            capacity = CapacityRequest(
                ticket=ticket, attempt=attempt, tokens=10, lease_seconds=lease
            )
            await handle.signal(LIMITER_REQUEST_SIGNAL, capacity)

        async def state(grant: str) -> TicketState:
            return await ticket_state(handle, grant)

        async def granted(grant: str) -> float:
            return await wait_granted(handle, grant)

        async def settle(grant: str) -> None:
            now = datetime.now(UTC)
            await handle.signal(
                LIMITER_SETTLE_SIGNAL, SettleRequest(grant=grant, tokens=10, sent_at=now)
            )

        for ticket in "abc":
            await request(ticket)
        await granted("a#1")
        b, c = await state("b#1"), await state("c#1")
        assert (b.granted, c.granted, b.position, c.position) == (False, False, 0, 1)
        assert b.eta is not None and c.eta is not None and c.eta > b.eta
        await settle("a#1")
        # One request per 1.1 s, served in order: C never overtakes B.
        await granted("b#1")
        assert not (await state("c#1")).granted
        await settle("b#1")
        await granted("c#1")
        await settle("c#1")

        # D dies holding its grant: E waits for D's lease (3 s) plus a window, not forever.
        # The lease also bounds D's own wait in the queue, and D waits about a window
        # (1.1 s) for C's to end: a shorter lease left too little slack on a loaded
        # machine (D's request expired before the window freed and was never granted).
        await request("d", lease=3.0)
        await request("e")
        await granted("d#1")
        assert not (await state("e#1")).granted
        await granted("e#1")  # within 25 s: not held for the 30 s lease by the dead D
        await settle("e#1")

        # F's first attempt dies holding its grant; the retry settles it at once, so
        # the retry waits one window, not the 30 s lease.
        await request("f")
        await granted("f#1")
        await request("f", attempt=2)
        assert await granted("f#2") < 5

        status = await AgentClient(temporal_client).limits_of(provider)
        assert status.granted_total == 7 and status.limit == limit
        assert (await handle.describe()).run_id != first_run, "no continue-as-new"
        await handle.terminate()


async def test_cli_shows_and_changes_limits(temporal_client: Client, provider: str) -> None:
    queue = f"test-{uuid.uuid4().hex[:8]}"
    limit = RateLimit(rpm=60, tpm=1000, window_seconds=60)
    async with create_model_worker(temporal_client, "openai", task_queue=queue):
        handle = await temporal_client.start_workflow(
            LIMITER_WORKFLOW_TYPE,
            LimiterInput(provider=provider, limit=limit),
            id=limiter_id(provider),
            task_queue=queue,
        )
        await handle.signal(LIMITER_REQUEST_SIGNAL, CapacityRequest(ticket="r1", tokens=120))
        await wait_granted(handle, "r1#1")
        where = ("--address", address(temporal_client))
        shown = await ratchet("limits", *where)
        assert shown.returncode == 0, shown.stderr
        [line] = [x for x in shown.stdout.splitlines() if x.startswith(provider)]
        # window, requests and tokens in the window, in flight, queued, granted
        assert line.split()[1:7] == ["60s", "1/60", "120/1000", "1", "0", "1"], line

        changed = await ratchet("limits", "set", provider, "--rpm", "30", "--tpm", "500", *where)
        assert changed.returncode == 0, changed.stderr
        assert f"limits of {provider}: 30 requests/min, 500 tokens/min" in changed.stdout
        status = await AgentClient(temporal_client).limits_of(provider)
        assert (status.limit.rpm, status.limit.tpm) == (30, 500)

        assert_clean_error(
            await ratchet("limits", "set", "nosuchprovider", "--rpm", "5", *where),
            "provider 'nosuchprovider' has no limiter",
        )
        assert_clean_error(await ratchet("limits", "set", provider, *where), "nothing to change")
    # Its only worker is gone: the limiter is named, not silently left out.
    shown = await ratchet("limits", *where)
    assert shown.returncode == 0, shown.stderr
    assert (
        f"{provider}: its limiter runs on task queue '{queue}', but no worker answered"
        in shown.stdout
    ), shown.stdout
    assert not [x for x in shown.stdout.splitlines() if x.startswith(f"{provider} ")]
    await handle.terminate()


async def test_model_worker_gets_the_server_side_rate_and_validates(
    temporal_client: Client,
) -> None:
    limit = RateLimit(rpm=120, tpm=10_000)
    worker = create_model_worker(temporal_client, "openai", rate_limit=limit)
    config = worker.config()
    assert config["task_queue"] == "ratchet.model.openai"
    assert config["max_task_queue_activities_per_second"] == 2.0  # 120 per 60 s
    # Heartbeats reach the server at least every second (the SDK would wait 1.6 s
    # with the default 2 s heartbeat timeout, leaving 0.4 s for any stall).
    agent = Agent("a", instructions="x", model="openai:m")
    for hosting in (worker, create_worker(temporal_client, [agent], task_queue="q2")):
        assert hosting.config()["max_heartbeat_throttle_interval"] == timedelta(seconds=1)
    assert [a.__name__ for a in config["activities"]] == ["call_model", "compact_transcript"]
    unlimited = create_model_worker(temporal_client, "openai", task_queue="q")
    assert unlimited.config().get("max_task_queue_activities_per_second") is None
    with pytest.raises(ConfigError, match="no provider named 'nope'"):
        create_model_worker(temporal_client, "nope")
    with pytest.raises(ValueError, match="margin_seconds"):
        RateLimit(tpm=1, window_seconds=1, margin_seconds=1)


async def test_a_call_cancelled_while_waiting_leaves_the_queue(
    temporal_client: Client, model_server: ScriptedModelServer, provider: str
) -> None:
    agent = Agent("waiting", instructions="x", model=f"{provider}:m", max_tokens=10)
    model_server.add(reply("first"))
    queue = f"test-{uuid.uuid4().hex[:8]}"
    worker = create_worker(
        temporal_client,
        [agent],
        task_queue=queue,
        providers={provider: scripted_provider(model_server)},
        rate_limits={provider: RateLimit(rpm=1, window_seconds=60)},
    )
    async with worker:
        client = AgentClient(temporal_client, task_queue=queue)
        assert (await (await client.start("waiting", "one")).result()).output == "first"
        second = await client.start("waiting", "two")
        deadline = time.monotonic() + 20
        while (await client.limits_of(provider)).queued != 1:
            assert time.monotonic() < deadline, "the second call never queued"
            await asyncio.sleep(0.1)
        await second.cancel()
        with pytest.raises(RunCancelled):
            await second.result()
        while (status := await client.limits_of(provider)).queued != 0:
            assert time.monotonic() < deadline, status
            await asyncio.sleep(0.1)
    assert (status.in_flight, status.granted_total) == (0, 1)
    assert len(model_server.requests) == 1


async def test_a_worker_killed_holding_a_grant_does_not_leak_it(
    temporal_client: Client, workers: list[Any], tmp_path: Path, provider: str
) -> None:
    # A grant leaked by the dead worker would stay in flight, counting in every window,
    # until its lease ends (12 minutes here); the retry settles it instead.
    server = ScriptedModelServer(
        [hang(), reply("after the crash")], expected_api_key=API_KEY
    ).start()
    try:
        rate_limit = f"{provider}:rpm=2,window=60,margin=0.5"
        queue, [first] = start_workers(
            temporal_client, server, tmp_path, provider, rate_limit, count=1
        )
        workers.append(first)
        client = AgentClient(temporal_client, task_queue=queue)
        handle = await client.start("limited", "hello")
        await server.wait_for_requests_async(1, timeout=60)
        first.kill9()
        _, second = start_workers(
            temporal_client, server, tmp_path, provider, rate_limit, count=1, queue=queue
        )
        workers.extend(second)
        result = await asyncio.wait_for(handle.result(), 60)
        status = await client.limits_of(provider)
    finally:
        server.stop()
    assert result.output == "after the crash"
    # Both attempts count in the window (the first may have reached the provider);
    # nothing is left in flight or queued.
    assert (status.granted_total, status.requests_in_window) == (2, 2)
    assert (status.in_flight, status.queued) == (0, 0)
