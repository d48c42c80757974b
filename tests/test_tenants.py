"""Tenants: a run started for a tenant carries it in the RatchetTenant search attribute, and
a tenant's listing asks the server for that tenant's runs only (the visibility query
itself filters; nothing is fetched and dropped afterwards)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from google.protobuf.duration_pb2 import Duration
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.api.workflowservice.v1 import RegisterNamespaceRequest
from temporalio.client import (
    Client,
    Interceptor,
    ListWorkflowsInput,
    OutboundInterceptor,
    WorkflowExecutionAsyncIterator,
)
from temporalio.service import RPCError

from ratchet import AgentClient, ConfigError, RunInfo, register_search_attributes
from ratchet._search import _INDEXED, RUN_ATTRIBUTES, TENANT, search_attributes_registered
from ratchet.testing import ScriptedModelServer, reply

from .conftest import hosted
from .scenarios import AGENT


class QueryRecorder(Interceptor):
    """Keeps every visibility query the client sends: what the server was asked."""

    def __init__(self) -> None:
        self.queries: list[str] = []

    def intercept_client(self, next: OutboundInterceptor) -> OutboundInterceptor:
        return _Recording(next, self.queries)


class _Recording(OutboundInterceptor):
    def __init__(self, next: OutboundInterceptor, queries: list[str]) -> None:
        super().__init__(next)
        self._queries = queries

    def list_workflows(self, input: ListWorkflowsInput) -> WorkflowExecutionAsyncIterator:
        self._queries.append(input.query or "")
        return super().list_workflows(input)


def recording_client(client: Client) -> tuple[Client, QueryRecorder]:
    recorder = QueryRecorder()
    config: dict[str, Any] = {**client.config(), "interceptors": [recorder]}
    return Client(**config), recorder


async def listed(client: AgentClient, count: int, **filters: Any) -> list[RunInfo]:
    """The listing once it holds ``count`` runs (visibility is eventually consistent)."""
    runs: list[RunInfo] = []
    for _ in range(120):
        runs = await client.list(limit=100, **filters)
        if len(runs) >= count:
            return runs
        await asyncio.sleep(0.25)
    return runs


async def test_a_tenant_lists_only_its_own_runs(
    temporal_client: Client, model_server: ScriptedModelServer
) -> None:
    suffix = uuid.uuid4().hex[:6]
    acme, globex = f"acme-{suffix}", f"globex-{suffix}"
    model_server.add(*[reply("ok") for _ in range(4)])
    recording, recorder = recording_client(temporal_client)
    async with hosted(temporal_client, [AGENT], model_server) as agents:
        client = AgentClient(recording, task_queue=agents.task_queue)
        started = {
            "acme-1": await client.start(AGENT.name, "one", tenant=acme),
            "acme-2": await client.start(AGENT.name, "two", tenant=acme),
            "globex": await client.start(AGENT.name, "three", tenant=globex),
            "nobody": await client.start(AGENT.name, "four"),
        }
        for handle in started.values():
            await handle.result()
        acme_runs = await listed(client, 2, tenant=acme)
        globex_runs = await listed(client, 1, tenant=globex)
        nobody = await started["nobody"].info()
        found = await started["acme-1"].info()
    assert {r.id for r in acme_runs} == {started["acme-1"].id, started["acme-2"].id}
    assert {r.tenant for r in acme_runs} == {acme}
    assert [(r.id, r.tenant) for r in globex_runs] == [(started["globex"].id, globex)]
    assert (found.tenant, nobody.tenant) == (acme, None)
    # The server was asked for the tenant's runs: the filter is in the query itself.
    asked = [q for q in recorder.queries if acme in q]
    assert asked and all(f"{TENANT.name} = '{acme}'" in q for q in asked)


async def test_a_tenants_runs_come_in_pages_and_by_start_time(
    temporal_client: Client, model_server: ScriptedModelServer
) -> None:
    tenant = f"pager-{uuid.uuid4().hex[:6]}"
    model_server.add(*[reply("ok") for _ in range(5)])
    async with hosted(temporal_client, [AGENT], model_server) as client:
        handles = [await client.start(AGENT.name, f"run {i}", tenant=tenant) for i in range(5)]
        for handle in handles:
            await handle.result()
        runs = await listed(client, 5, tenant=tenant)
        pages: list[list[RunInfo]] = []
        token: str | None = None
        while True:
            page = await client.list_page(page_size=2, page_token=token, tenant=tenant)
            pages.append(page.runs)
            if page.next_page_token is None:
                break
            token = page.next_page_token
            assert len(pages) < 10, "paging does not end"
        assert token is not None
        with pytest.raises(ConfigError, match="with the same filters"):
            await client.list_page(page_size=2, page_token=token, tenant=f"{tenant}-other")
        oldest_first = sorted(runs, key=lambda r: r.started or datetime.min.replace(tzinfo=UTC))
        middle = oldest_first[2].started
        assert middle is not None
        later = await client.list(tenant=tenant, started_after=middle)
        earlier = await client.list(tenant=tenant, started_before=middle)
        window = await client.list(
            tenant=tenant, started_after=middle, started_before=middle + timedelta(microseconds=1)
        )
    assert {r.id for r in runs} == {h.id for h in handles}
    assert [len(p) for p in pages[:2]] == [2, 2] and sum(len(p) for p in pages) == 5
    paged = [r.id for p in pages for r in p]
    assert sorted(paged) == sorted(h.id for h in handles)  # each once, none missing
    assert [r.id for r in later] == [r.id for r in reversed(oldest_first[2:])]
    assert [r.id for r in earlier] == [r.id for r in reversed(oldest_first[:2])]
    assert [r.id for r in window] == [oldest_first[2].id]


BAD_TENANTS = [
    "acme' OR RatchetTenant = 'globex",
    "acme'",
    "",
    "a b",
    "acme\n",
    "x" * 65,
    "\u0430cme",  # a Cyrillic 'a'
]


@pytest.mark.parametrize("tenant", BAD_TENANTS)
async def test_a_bad_tenant_is_refused_before_any_query(
    temporal_client: Client, tenant: str
) -> None:
    recording, recorder = recording_client(temporal_client)
    client = AgentClient(recording)
    with pytest.raises(ConfigError, match="bad tenant"):
        await client.list(tenant=tenant)
    with pytest.raises(ConfigError, match="bad tenant"):
        await client.list_page(tenant=tenant)
    with pytest.raises(ConfigError, match="bad tenant"):
        await client.pending(tenant=tenant)
    with pytest.raises(ConfigError, match="bad tenant"):
        await client.start(AGENT.name, "hello", tenant=tenant)
    assert recorder.queries == []


async def test_bad_times_and_pages_are_refused(temporal_client: Client) -> None:
    client = AgentClient(temporal_client)
    with pytest.raises(ConfigError, match="started_after has no time zone"):
        await client.list(started_after=datetime(2026, 1, 1))  # noqa: DTZ001
    now = datetime.now().astimezone()
    with pytest.raises(ConfigError, match="is not before started_before"):
        await client.list(started_after=now, started_before=now - timedelta(hours=1))
    with pytest.raises(ConfigError, match="page_size must be from 1 to 1000"):
        await client.list_page(page_size=0)
    for token in ["not a token!", "AAAA", "AAAAAAAAAAAAAAAAAAAA"]:
        with pytest.raises(ConfigError, match="bad page token"):
            await client.list_page(page_token=token)


async def fresh_namespace(client: Client) -> Client:
    """A new namespace on the dev server, with none of ratchet's search attributes."""
    name = f"tenants-{uuid.uuid4().hex[:8]}"
    await client.workflow_service.register_namespace(
        RegisterNamespaceRequest(
            namespace=name, workflow_execution_retention_period=Duration(seconds=86400)
        )
    )
    config: dict[str, Any] = {**client.config(), "namespace": name}
    return Client(**config)


async def test_a_tenant_filter_needs_the_tenant_search_attribute(temporal_client: Client) -> None:
    namespace = await fresh_namespace(temporal_client)
    # Registered before RatchetTenant existed: the run attributes, not the tenant.
    older = {k: v for k, v in _INDEXED.items() if k in RUN_ATTRIBUTES}
    for _ in range(100):  # a new namespace takes a moment to be known everywhere
        try:
            await namespace.operator_service.add_search_attributes(
                AddSearchAttributesRequest(namespace=namespace.namespace, search_attributes=older)
            )
            break
        except RPCError:
            await asyncio.sleep(0.1)
    assert await search_attributes_registered(namespace)
    client = AgentClient(namespace)
    assert await client.list() == []  # everything else still works
    with pytest.raises(ConfigError, match=r"has no RatchetTenant search attribute.*Register"):
        await client.list(tenant="acme")
    with pytest.raises(ConfigError, match="has no RatchetTenant"):
        await client.list_page(tenant="acme")
    # The HTTP API refuses a tenant's start there: the run could never be listed.
    assert not await client.tenants_indexed()
    await register_search_attributes(namespace)
    # The same client notices, as a long-lived `ratchet serve` must: no restart needed.
    await asyncio.sleep(1.1)
    assert await client.list(tenant="acme") == []
    assert await client.tenants_indexed()
