"""Runs, a page at a time, filtered in the visibility query itself.

The filters (agent, status, tenant, start time) become the Temporal visibility query,
and the page token is the server's own, so paging is exact and a tenant's listing
never sees another tenant's run, not even to skip it.

Order: the server's, running runs first, then the others by close time, newest first.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
from dataclasses import dataclass
from datetime import UTC, datetime

from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest
from temporalio.client import WorkflowExecution
from temporalio.common import SearchAttributeKey
from temporalio.service import RPCError

from .._protocol import WORKFLOW_TYPE
from .._runs import TEMPORAL_ONLY_STATES, RunInfo, check_status, run_info
from .._search import AGENT, STATUS
from ..agent import check_agent_name
from ..client import AgentClient
from ..errors import ConfigError
from ._roles import check_tenant

__all__ = ["TENANT", "ListedRun", "RunLister", "RunPage"]

TENANT = SearchAttributeKey.for_keyword("RatchetTenant")
"""The run's tenant in visibility. Until a namespace has it registered, tenants are
read from each run's input and filtered after the query (slower, same result)."""


@dataclass(frozen=True)
class ListedRun:
    info: RunInfo
    tenant: str | None


@dataclass(frozen=True)
class RunPage:
    runs: list[ListedRun]
    next_page_token: str | None


@dataclass(frozen=True)
class _Indexed:
    ratchet: bool
    """The namespace has ratchet's agent/status/usage attributes."""
    tenant: bool
    """It has ``RatchetTenant``."""


class RunLister:
    """Lists runs of one client; remembers which search attributes its namespace has."""

    def __init__(self, client: AgentClient) -> None:
        self.client = client
        self._indexed: _Indexed | None = None

    async def indexed(self) -> bool:
        """Whether the namespace has ratchet's search attributes (status is queryable)."""
        return (await self._attributes()).ratchet

    async def _attributes(self) -> _Indexed:
        if self._indexed is None:
            temporal = self.client.temporal
            try:
                response = await temporal.operator_service.list_search_attributes(
                    ListSearchAttributesRequest(namespace=temporal.namespace)
                )
                names = set(response.custom_attributes)
            except RPCError:  # no permission to list them (Temporal Cloud API keys)
                names = set()
            self._indexed = _Indexed(
                ratchet={AGENT.name, STATUS.name} <= names, tenant=TENANT.name in names
            )
        return self._indexed

    async def page(
        self,
        *,
        agent: str | None = None,
        status: str | None = None,
        tenant: str | None = None,
        started_after: datetime | None = None,
        started_before: datetime | None = None,
        page_size: int = 50,
        page_token: str | None = None,
    ) -> RunPage:
        """One page of runs matching every filter given.

        Raises:
            ConfigError: a bad filter value or page token.
        """
        indexed = await self._attributes()
        query = f"WorkflowType = '{WORKFLOW_TYPE}'"
        if agent is not None:
            check_agent_name(agent)
            if indexed.ratchet:
                query += f" AND {AGENT.name} = '{agent}'"
        if status is not None:
            status = check_status(status)
            if status in TEMPORAL_ONLY_STATES:  # closed by Temporal: never reported by the run
                query += f" AND ExecutionStatus = '{TEMPORAL_ONLY_STATES[status]}'"
            elif indexed.ratchet:
                query += f" AND {STATUS.name} = '{status}'"
        if tenant is not None:
            check_tenant(tenant)
            if indexed.tenant:
                query += f" AND {TENANT.name} = '{tenant}'"
        for op, at in ((">=", started_after), ("<=", started_before)):
            if at is not None:
                query += f" AND StartTime {op} '{_rfc3339(at)}'"
        found = self.client.temporal.list_workflows(
            query, page_size=page_size, next_page_token=_decode_token(page_token)
        )
        await found.fetch_next_page()
        executions = list(found.current_page or ())
        runs = await asyncio.gather(*(self._listed(wf, indexed.tenant) for wf in executions))
        kept = [
            r
            for r in runs
            if r is not None
            # Filters the query could not hold (attributes missing from the namespace).
            and (agent is None or r.info.agent == agent)
            and (status is None or r.info.status == status)
            and (tenant is None or r.tenant == tenant)
        ]
        token = found.next_page_token
        return RunPage(kept, base64.urlsafe_b64encode(token).decode() if token else None)

    async def _listed(self, wf: WorkflowExecution, tenant_indexed: bool) -> ListedRun | None:
        info = await run_info(wf)
        if info is None:
            return None  # an earlier execution of a long run: its latest one is listed
        if tenant_indexed:
            tenant = wf.typed_search_attributes.get(TENANT)
        else:
            tenant = (await self.client.get(wf.id).input()).tenant
        return ListedRun(info, tenant)


def _rfc3339(at: datetime) -> str:
    if at.tzinfo is None:
        raise ConfigError(f"time {at.isoformat()} has no UTC offset: add one, e.g. +00:00")
    return at.astimezone(UTC).isoformat()


def _decode_token(token: str | None) -> bytes | None:
    if not token:
        return None
    try:
        return base64.urlsafe_b64decode(token.encode())
    except (binascii.Error, ValueError):
        raise ConfigError(
            "bad page_token: pass the next_page_token of the previous page as it was"
        ) from None
