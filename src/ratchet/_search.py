"""Search attributes: a run's agent, status, turns, tokens, cost and tenant in Temporal
visibility.

They make ``ratchet ls --agent X --status Y`` a server-side query and show up as
columns in the Temporal Web UI. ``RatchetTenant`` is set once, when a run starts for
a tenant: listing a tenant's runs filters on it in the visibility query itself.
``RatchetForkOf`` is set once too, on a fork: its parent run's id.

A namespace must have them registered (``ratchet up`` does it for the embedded
server; ``register_search_attributes`` for any other); a run started where they are
missing simply does not set them, because an upsert of an unknown attribute would
fail the workflow task.
"""

from __future__ import annotations

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import (
    AddSearchAttributesRequest,
    ListSearchAttributesRequest,
)
from temporalio.client import Client
from temporalio.common import SearchAttributeKey
from temporalio.service import RPCError

__all__ = [
    "AGENT",
    "ALL",
    "COST",
    "FORK_OF",
    "RUN_ATTRIBUTES",
    "STATUS",
    "TENANT",
    "TOKENS",
    "TURNS",
    "register_search_attributes",
    "registered_search_attributes",
    "search_attributes_registered",
]

AGENT = SearchAttributeKey.for_keyword("RatchetAgent")
STATUS = SearchAttributeKey.for_keyword("RatchetStatus")
TURNS = SearchAttributeKey.for_int("RatchetTurns")
TOKENS = SearchAttributeKey.for_int("RatchetTokens")
COST = SearchAttributeKey.for_float("RatchetCostUsd")
TENANT = SearchAttributeKey.for_keyword("RatchetTenant")
FORK_OF = SearchAttributeKey.for_keyword("RatchetForkOf")
"""A fork's parent run (``AgentClient.fork``): ``RatchetForkOf = 'RUN'`` lists its forks."""
ALL: list[SearchAttributeKey] = [AGENT, STATUS, TURNS, TOKENS, COST, TENANT, FORK_OF]  # type: ignore[type-arg]

RUN_ATTRIBUTES = frozenset({AGENT.name, STATUS.name, TURNS.name, TOKENS.name, COST.name})
"""The attributes a run keeps up to date itself (``RunInput.search_attributes``).
``RatchetTenant`` came later and is checked on its own: a namespace registered before
it still gets the others."""

_INDEXED = {
    AGENT.name: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
    STATUS.name: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
    TURNS.name: IndexedValueType.INDEXED_VALUE_TYPE_INT,
    TOKENS.name: IndexedValueType.INDEXED_VALUE_TYPE_INT,
    COST.name: IndexedValueType.INDEXED_VALUE_TYPE_DOUBLE,
    TENANT.name: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
    FORK_OF.name: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
}


async def registered_search_attributes(client: Client) -> frozenset[str]:
    """Which of ratchet's search attributes the client's namespace has (none when they
    cannot be listed)."""
    try:
        response = await client.operator_service.list_search_attributes(
            ListSearchAttributesRequest(namespace=client.namespace)
        )
    except RPCError:  # e.g. no permission to list them (Temporal Cloud API keys)
        return frozenset()
    return frozenset(name for name in _INDEXED if name in response.custom_attributes)


async def search_attributes_registered(client: Client) -> bool:
    """Whether the client's namespace has the search attributes runs keep up to date."""
    return await registered_search_attributes(client) >= RUN_ATTRIBUTES


async def register_search_attributes(client: Client) -> None:
    """Register ratchet's search attributes in the client's namespace (idempotent)."""
    response = await client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=client.namespace)
    )
    missing = {k: v for k, v in _INDEXED.items() if k not in response.custom_attributes}
    if missing:
        await client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(namespace=client.namespace, search_attributes=missing)
        )
