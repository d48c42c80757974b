"""Search attributes: a run's agent, status, turns, tokens and cost in Temporal visibility.

They make ``ratchet ls --agent X --status Y`` a server-side query and show up as
columns in the Temporal Web UI. A namespace must have them registered (``ratchet
up`` does it for the embedded server; ``register_search_attributes`` for any
other); a run started where they are missing simply does not set them, because
an upsert of an unknown attribute would fail the workflow task.
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
    "STATUS",
    "TOKENS",
    "TURNS",
    "register_search_attributes",
    "search_attributes_registered",
]

AGENT = SearchAttributeKey.for_keyword("RatchetAgent")
STATUS = SearchAttributeKey.for_keyword("RatchetStatus")
TURNS = SearchAttributeKey.for_int("RatchetTurns")
TOKENS = SearchAttributeKey.for_int("RatchetTokens")
COST = SearchAttributeKey.for_float("RatchetCostUsd")
ALL: list[SearchAttributeKey] = [AGENT, STATUS, TURNS, TOKENS, COST]  # type: ignore[type-arg]

_INDEXED = {
    AGENT.name: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
    STATUS.name: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
    TURNS.name: IndexedValueType.INDEXED_VALUE_TYPE_INT,
    TOKENS.name: IndexedValueType.INDEXED_VALUE_TYPE_INT,
    COST.name: IndexedValueType.INDEXED_VALUE_TYPE_DOUBLE,
}


async def search_attributes_registered(client: Client) -> bool:
    """Whether the client's namespace has all of ratchet's search attributes."""
    try:
        response = await client.operator_service.list_search_attributes(
            ListSearchAttributesRequest(namespace=client.namespace)
        )
    except RPCError:  # e.g. no permission to list them (Temporal Cloud API keys)
        return False
    return all(name in response.custom_attributes for name in _INDEXED)


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
