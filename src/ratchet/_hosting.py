"""Which agents a task queue's workers host, read before a run starts.

Workers announce their agents in their Temporal worker identity
(``"4242@host agents=support,billing"``); the server reports the identity
of every recent poller of a task queue (``DescribeTaskQueue``), so a client
learns in one RPC whether any worker hosts an agent, without starting a run that
could only fail. The server lists a poller for a few minutes after its last poll,
so a worker that just stopped still counts: the check never refuses a run that a
live worker could take, it only catches names and queues nobody serves.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from dataclasses import dataclass

from temporalio.api.enums.v1 import TaskQueueKind, TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from .errors import ConfigError

__all__ = [
    "QueueHosting",
    "announce_agents",
    "announced_agents",
    "check_hosted",
    "hosted_agents",
]

_MARK = " agents="
_LEGACY_MARK = " ratchet agents="
"""How workers before RunInput.version 2 announced their agents: a client that sees one
on a queue starts version-1 runs there (see ``QueueHosting.legacy``)."""
# The identity is recorded in every workflow-task and activity event of a run's history
# (about 23 events for a 5-step run), so the mark is short; identities of workers
# before issue 18 (" ratchet agents=...") end with it too, and read the same.
_MANY = "*"
# Identities travel with every poll; the server caps their length (1000 by default).
_MAX_NAMES_LENGTH = 300


def announce_agents(identity: str, agents: Iterable[str]) -> str:
    """The worker identity that names the agents it hosts (none: a model-only worker)."""
    names = ",".join(sorted(agents))
    return f"{identity}{_MARK}{names if len(names) <= _MAX_NAMES_LENGTH else _MANY}"


def announced_agents(identity: str) -> frozenset[str] | None:
    """The agents an identity announces; None when it does not say (another kind of
    worker, an older ratchet, or too many names to list)."""
    _, mark, names = identity.rpartition(_MARK)
    if not mark or names == _MANY:
        return None
    return frozenset(n for n in names.split(",") if n)


@dataclass(frozen=True)
class QueueHosting:
    """What the recent workflow pollers of a task queue host."""

    agents: frozenset[str]
    """The agents they announce."""
    unannounced: bool
    """Some poller does not say what it hosts (it may host any agent)."""
    pollers: int
    """How many pollers the server reports."""
    legacy: bool = False
    """Some poller is a ratchet worker from before ``RunInput.version`` 2. Such a worker
    ignores the version and would record a version-2 run the old way (patch markers,
    an upsert after every model call), which newer workers could not replay; runs
    started on its queue are version 1 until it is gone."""
    current_version: str | None = None
    """The worker deployment version tasks on the queue go to (``deployment.build``),
    if the queue is versioned: serverless workers (:mod:`ratchet.serverless`) poll
    only while an invocation runs, so an empty queue may still be served."""


async def hosted_agents(client: Client, task_queue: str) -> QueueHosting:
    """What the workers polling ``task_queue`` host, from one ``DescribeTaskQueue`` RPC."""
    response = await client.workflow_service.describe_task_queue(
        DescribeTaskQueueRequest(
            namespace=client.namespace,
            task_queue=TaskQueue(name=task_queue, kind=TaskQueueKind.TASK_QUEUE_KIND_NORMAL),
            task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
        )
    )
    agents: set[str] = set()
    unannounced = False
    legacy = False
    for poller in response.pollers:
        legacy = legacy or _LEGACY_MARK in poller.identity
        names = announced_agents(poller.identity)
        if names is None:
            unannounced = True
        else:
            agents |= names
    current = response.versioning_info.current_deployment_version
    return QueueHosting(
        frozenset(agents),
        unannounced,
        len(response.pollers),
        legacy,
        current_version=f"{current.deployment_name}.{current.build_id}"
        if current.build_id
        else None,
    )


def _problem(hosting: QueueHosting, namespace: str, task_queue: str, agent: str) -> str | None:
    start = f"ratchet worker --app module:attribute --task-queue {task_queue}"
    if hosting.pollers == 0 and hosting.current_version is not None:
        # A worker deployment serves the queue on demand (a serverless function that
        # Temporal invokes when tasks wait): nobody polls between invocations.
        return None
    if hosting.pollers == 0:
        return (
            f"no worker polls task queue {task_queue!r} (namespace {namespace!r}), so "
            f"no run of agent {agent!r} can start: start a worker that hosts it ({start}), "
            "or check the task queue and namespace"
        )
    if agent in hosting.agents or hosting.unannounced:
        return None
    listed = ", ".join(sorted(hosting.agents)) or "(none)"
    return (
        f"UnknownAgent: no worker on task queue {task_queue!r} hosts agent {agent!r}; "
        f"hosted agents: {listed}. Check the name and the task queue, or start a worker "
        f"that hosts it ({start})"
    )


_FIRST_POLL_SECONDS = 5.0


async def check_hosted(client: Client, task_queue: str, agent: str) -> QueueHosting | None:
    """Raise :class:`ConfigError` when no worker on ``task_queue`` hosts ``agent``.

    A start that attaches to an existing run does not call it: it starts nothing.
    A server that refuses to describe task queues (say, an API key without the
    permission) skips the check rather than block every start.
    """
    deadline = time.monotonic() + _FIRST_POLL_SECONDS
    while True:
        try:
            hosting = await hosted_agents(client, task_queue)
        except RPCError as e:
            if e.status in (RPCStatusCode.PERMISSION_DENIED, RPCStatusCode.UNIMPLEMENTED):
                return None
            raise
        # A worker started a moment ago may not have polled yet: give it a few seconds
        # before saying nobody serves the queue (`ratchet worker & ratchet run ...`).
        if hosting.pollers or hosting.current_version or time.monotonic() >= deadline:
            break
        await asyncio.sleep(0.25)
    problem = _problem(hosting, client.namespace, task_queue, agent)
    if problem is not None:
        raise ConfigError(problem)
    return hosting
