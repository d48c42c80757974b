"""How a run is started: its checks, its input and its workflow options.

:meth:`ratchet.AgentClient.start` and the Nexus operation that starts runs
(:mod:`ratchet.nexus`) both start runs through here, so a run looks the same
(search attributes, memo, id policies, summary, fairness) however it was started.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from temporalio.common import (
    Priority,
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)

from ._protocol import RunInput
from ._render import shorten
from ._runs import check_tenant
from ._search import AGENT, RUN_ATTRIBUTES, STATUS, TENANT
from ._unicode import valid_text
from .agent import check_agent_name, parse_model
from .errors import ConfigError

__all__ = ["RunStart", "check_run_request", "new_run_id", "run_start"]


def check_run_request(agent: str, prompt: str, model: str | None, tenant: str | None) -> None:
    """Refuse a run that could never start: a bad agent name, an empty prompt, a bad
    model string or tenant.

    Raises:
        ConfigError: saying which of them is wrong.
    """
    check_agent_name(agent)
    if not prompt.strip():
        raise ConfigError("the prompt is empty: tell the agent what to do")
    if valid_text(prompt) != prompt:
        raise ConfigError(
            "the prompt is not valid unicode: it holds a lone surrogate (on a command line: "
            "bytes that are not UTF-8). Send UTF-8 text"
        )
    if model is not None:
        parse_model(model)
    if tenant is not None:
        check_tenant(tenant)


def new_run_id(agent: str) -> str:
    """The id of a run whose starter gave none: ``<agent>-<12 hex digits>``."""
    return f"{agent}-{uuid.uuid4().hex[:12]}"


@dataclass(frozen=True)
class RunStart:
    """A run's workflow input, and the ``start_workflow`` options that go with it (all
    but the workflow, its id and its task queue)."""

    input: RunInput
    options: dict[str, Any]


def run_start(
    agent: str,
    prompt: str,
    *,
    model: str | None,
    chat: bool,
    tenant: str | None,
    version: int,
    registered: frozenset[str],
) -> RunStart:
    """The input and options of a new run.

    Args:
        version: the run's ``RunInput.version`` (``client._run_version``).
        registered: which of ratchet's search attributes the namespace has.
    """
    indexed = registered >= RUN_ATTRIBUTES
    attributes: list[SearchAttributePair[str]] = []
    if indexed:
        attributes += [
            SearchAttributePair(AGENT, agent),
            # "running" from the start: the run upserts only when its state changes
            # (RunInput.version 2), so it need not say so again.
            SearchAttributePair(STATUS, "running"),
        ]
    if tenant and TENANT.name in registered:
        attributes.append(SearchAttributePair(TENANT, tenant))
    run_input = RunInput(
        version=version,
        agent=agent,
        prompt=prompt,
        model=model,
        search_attributes=indexed,
        chat=chat,
        tenant=tenant,
    )
    options: dict[str, Any] = {
        "id_conflict_policy": WorkflowIDConflictPolicy.USE_EXISTING,
        "id_reuse_policy": WorkflowIDReusePolicy.REJECT_DUPLICATE,
        # Listings read the agent and tenant here when the search attributes lack them.
        "memo": {"agent": agent, **({"tenant": tenant} if tenant else {})},
        "search_attributes": TypedSearchAttributes(attributes) if attributes else None,
        # A worker that dies holding a workflow task (milliseconds of work) hands
        # it to another after this, not after Temporal's 10 s default.
        "task_timeout": timedelta(seconds=5),
        "static_summary": f"{agent}: {shorten(prompt, 200)}",
        "priority": Priority(fairness_key=tenant) if tenant else Priority.default,
    }
    return RunStart(run_input, options)
