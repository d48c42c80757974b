"""The agent snapshot: the agent's definition, taken once when a run starts."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from .._protocol import SNAPSHOT_ACTIVITY, AgentSpec, RunInput, SnapshotRequest
    from ..errors import RunErrorType

from ._failures import failure_of
from ._patches import patched
from ._status import Status

__all__ = ["LOCAL_SNAPSHOT_PATCH", "take_snapshot"]

LOCAL_SNAPSHOT_PATCH = "ratchet.local-snapshot"
"""Runs started before this patch took the agent snapshot in a regular activity."""

_NOT_RETRIED: list[RunErrorType] = ["UnknownAgent", "ConfigError"]


async def take_snapshot(inp: RunInput, *, store_prompt: bool, status: Status) -> AgentSpec:
    """The agent named by ``inp``, from the worker's registry; fails the run if it has none.

    With ``store_prompt`` the activity also writes the opening messages to the
    transcript store.
    """
    request = SnapshotRequest(
        agent=inp.agent, model=inp.model, prompt=inp.prompt if store_prompt else None
    )
    retry = RetryPolicy(maximum_attempts=5, non_retryable_error_types=_NOT_RETRIED)
    try:
        # A local activity since the patch: the snapshot is a fast lookup in the worker's
        # registry, so it skips the task-queue round trip (about 45 ms less per run).
        # Runs recorded before the patch replay the regular activity.
        execute: Any = (
            workflow.execute_local_activity
            if patched(LOCAL_SNAPSHOT_PATCH, inp.version)
            else workflow.execute_activity
        )
        spec: AgentSpec = await execute(
            SNAPSHOT_ACTIVITY,
            request,
            result_type=AgentSpec,
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=retry,
            summary=f"snapshot agent {inp.agent}",
        )
        return spec
    except ActivityError as e:
        status.fail_from(failure_of(e))
